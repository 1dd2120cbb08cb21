"""InternVL's dynamic tiling grid, images sent no larger than that tiling uses, and the images of a turn
prepared concurrently and once per session (Pillow and the standard library only).

InternVL cuts an image into ``image_size`` square tiles on the grid (``cols`` x ``rows``, between
``min_tiles`` and ``max_tiles`` tiles) whose aspect ratio is closest to the image's, after resizing the
whole image to exactly ``cols * image_size`` x ``rows * image_size`` (plus a thumbnail of the whole image
when there are several tiles). The grid rule is ``find_closest_aspect_ratio`` / ``dynamic_preprocess`` of
the InternVL-Chat-V1-5 model code (huggingface.co/OpenGVLab/InternVL-Chat-V1-5), which LMDeploy copies
(``lmdeploy/vl/model/internvl.py``, with the model's ``min_dynamic_patch`` / ``max_dynamic_patch`` /
``use_thumbnail``). Pixels beyond that resize are thrown away, so a photo can be made smaller before it
is decoded, encoded or sent (:func:`fitted_size`) as long as the grid the rule picks stays the same.

Used by the chat workers (imported as a sibling script module) and, for the upload, by the launcher's
openai / lmdeploy backends (``vlhub.plugins.workers.chat_tiling``). Pillow releases the GIL while it
decodes, resizes and encodes, so :class:`Prepared` runs the images of one turn on threads.
"""
from __future__ import annotations

import base64
import io
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, BinaryIO, Callable, Generic, Mapping, Sequence, TypeVar

from PIL import Image

#: JPEG quality of a photo made smaller before it is sent (its source is lossy already).
JPEG_QUALITY = 95
#: A file is made smaller before it is sent only when that leaves at most this share of its pixels: for a
#: smaller gain, decoding and encoding it again here costs about what the server saves.
SHRINK_BELOW = 0.5
#: Threads preparing the images of one turn (decoding releases the GIL; more threads than images idle).
WORKERS = 8

T = TypeVar("T")


@dataclass(frozen=True)
class Tiling:
    """How a model tiles an image: tile side in pixels, fewest and most tiles, thumbnail or not."""

    image_size: int = 448
    min_tiles: int = 1
    max_tiles: int = 12
    thumbnail: bool = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Tiling | None:
        """The tiling an InternVL ``config.json`` asks for, as LMDeploy reads it
        (``force_image_size`` or ``vision_config.image_size``, ``min_dynamic_patch``,
        ``max_dynamic_patch``, ``use_thumbnail``); ``None`` when the config turns dynamic tiling off
        (``dynamic_image_size`` false: the model resizes images its own way) or is not InternVL's."""
        vision = config.get("vision_config") if isinstance(config.get("vision_config"), Mapping) else {}
        size = config.get("force_image_size") or vision.get("image_size")
        if not config.get("dynamic_image_size") or not isinstance(size, int):
            return None
        return cls(size, int(config.get("min_dynamic_patch") or 1), int(config.get("max_dynamic_patch") or 12),
                   bool(config.get("use_thumbnail", True)))


@lru_cache(maxsize=64)
def _grids(min_tiles: int, max_tiles: int) -> tuple[tuple[int, int], ...]:
    """The candidate (cols, rows) grids in the reference order: sorted by tile count (``sorted`` is stable)."""
    found = {(i, j) for n in range(min_tiles, max_tiles + 1) for i in range(1, n + 1) for j in range(1, n + 1)
             if min_tiles <= i * j <= max_tiles}
    return tuple(sorted(found, key=lambda g: g[0] * g[1]))


def closest_grid(width: int, height: int, tiling: Tiling) -> tuple[int, int]:
    """The (cols, rows) grid InternVL's ``dynamic_preprocess`` picks for a ``width`` x ``height`` image.

    The grid whose cols/rows is nearest the image's aspect ratio; among grids of the same ratio a later
    (larger) one wins while the image's area exceeds half of that grid's pixels (the reference's
    ``area > 0.5 * image_size * image_size * cols * rows``).
    """
    aspect = width / height
    area = width * height
    best, best_diff = (1, 1), float("inf")
    for grid in _grids(tiling.min_tiles, tiling.max_tiles):
        diff = abs(aspect - grid[0] / grid[1])
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and area > 0.5 * tiling.image_size * tiling.image_size * grid[0] * grid[1]:
            best = grid
    return best


def tile_count(width: int, height: int, tiling: Tiling) -> int:
    """Tiles InternVL makes of a ``width`` x ``height`` image, the thumbnail included."""
    cols, rows = closest_grid(width, height, tiling)
    return cols * rows + (1 if tiling.thumbnail and cols * rows > 1 else 0)


def pixels_needed(width: int, height: int, tiling: Tiling) -> tuple[int, int]:
    """The size InternVL resizes a ``width`` x ``height`` image to before cutting it
    (``cols * image_size`` x ``rows * image_size``): a decoder may stop at it (:func:`decode`)."""
    cols, rows = closest_grid(width, height, tiling)
    return tiling.image_size * cols, tiling.image_size * rows


def fitted_size(width: int, height: int, tiling: Tiling) -> tuple[int, int]:
    """The smallest size, aspect ratio kept, that still covers the resize InternVL makes of the image
    (``cols * image_size`` x ``rows * image_size``) and on which :func:`closest_grid` picks the same grid
    as on the original; the original size when no smaller one does (the image is small already, or
    rounding to whole pixels would move it to another grid).
    """
    grid = closest_grid(width, height, tiling)
    need_w, need_h = pixels_needed(width, height, tiling)
    scale = max(need_w / width, need_h / height)
    if scale >= 1:
        return width, height
    base_w, base_h = max(need_w, round(width * scale)), max(need_h, round(height * scale))
    for dw, dh in ((0, 0), (1, 0), (0, 1), (1, 1), (2, 0), (0, 2), (2, 1), (1, 2), (2, 2)):
        w, h = base_w + dw, base_h + dh
        if w * h < width * height and w <= width and h <= height and closest_grid(w, h, tiling) == grid:
            return w, h
    return width, height


def image_size_of(source: str | Path | BinaryIO) -> tuple[int, int]:
    """(width, height) from the file's header, without decoding it."""
    with Image.open(source) as img:
        return img.size


def decode(source: str | Path | BinaryIO, size: tuple[int, int] | None = None) -> Image.Image:
    """The image as RGB. A JPEG larger than twice ``size`` is decoded at 1/2, 1/4 or 1/8 scale (libjpeg's
    DCT scaling, Pillow's ``Image.draft``), never below ``size`` in either dimension; other formats
    decode at full size."""
    with Image.open(source) as img:
        if size is not None:
            img.draft("RGB", size)
        return img.convert("RGB")


@dataclass(frozen=True)
class Upload:
    """An image as it is sent: its bytes and MIME type, with its size and the original's."""

    data: bytes
    mime: str
    size: tuple[int, int]
    original_size: tuple[int, int]
    original_bytes: int

    def data_url(self) -> str:
        """A ``data:MIME;base64,...`` URL (an OpenAI ``image_url`` part)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def upload(path: str | Path, tiling: Tiling | None) -> Upload:
    """The file as it should be sent to a server that tiles it with ``tiling``.

    With a tiling and a file whose :func:`fitted_size` keeps at most :data:`SHRINK_BELOW` of its pixels,
    the image is decoded (:func:`decode`), resized to the fitted size (bicubic) and encoded again: JPEG
    (quality :data:`JPEG_QUALITY`) for a JPEG, PNG otherwise; the original bytes are kept when that is not
    smaller. Without a tiling (an endpoint whose model is unknown) or for an image that is small already,
    the file's own bytes go as they are.
    """
    raw = Path(path).read_bytes()
    with Image.open(io.BytesIO(raw)) as img:
        kind, size = (img.format or "png").upper(), img.size
    original = Upload(raw, f"image/{kind.lower()}", size, size, len(raw))
    fit = fitted_size(*size, tiling) if tiling is not None else size
    if fit[0] * fit[1] > SHRINK_BELOW * size[0] * size[1]:
        return original
    image = decode(io.BytesIO(raw), fit)
    if image.size != fit:
        image = image.resize(fit, Image.BICUBIC)
    out = io.BytesIO()
    photo = kind in ("JPEG", "MPO")
    if photo:
        image.save(out, "JPEG", quality=JPEG_QUALITY)
    else:
        image.save(out, "PNG", compress_level=1)
    if out.tell() >= len(raw):
        return original
    return Upload(out.getvalue(), "image/jpeg" if photo else "image/png", fit, size, len(raw))


class ImageFailed(Exception):
    """An image of a turn could not be prepared: ``path`` and the ``reason`` (one line)."""

    def __init__(self, path: Path, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}")


class Prepared(Generic[T]):
    """What ``prepare`` makes of image files, for one session: the images of a turn are prepared on
    threads at once, each file once while it is unchanged (same path, size, mtime and inode), the
    results kept least-recently-used first up to ``max_bytes`` (``size_of`` measures one).

    :meth:`submit` starts files in the background (an image attached before its question is asked);
    :meth:`get_all` waits for them.
    """

    def __init__(self, prepare: Callable[[Path], T], size_of: Callable[[T], int], max_bytes: int,
                 workers: int = WORKERS) -> None:
        self.prepare, self.size_of, self.max_bytes = prepare, size_of, max_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vlhub-image")
        self._entries: OrderedDict[tuple[Any, ...], Future[T]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def key(path: Path) -> tuple[Any, ...]:
        """The file's identity: resolved path, size, modification time (ns) and inode."""
        resolved = Path(path).resolve()
        st = os.stat(resolved)
        return str(resolved), st.st_size, st.st_mtime_ns, st.st_ino

    def _future(self, path: Path) -> Future[T]:
        key = self.key(path)
        with self._lock:
            found = self._entries.get(key)
            if found is None or (found.done() and found.exception() is not None):
                found = self._entries[key] = self._pool.submit(self.prepare, Path(path))
            self._entries.move_to_end(key)
            return found

    def submit(self, paths: Sequence[str | Path]) -> None:
        """Start preparing ``paths`` in the background; a file that cannot be read now is left to
        :meth:`get_all`, which reports it."""
        for path in paths:
            try:
                self._future(Path(path))
            except OSError:
                pass

    def get_all(self, paths: Sequence[str | Path]) -> list[T]:
        """The prepared values of ``paths``, in order (cached, already in flight, or prepared now, all
        at once).

        Raises:
            ImageFailed: the first file, in order, that cannot be read or prepared (what ``prepare`` raised).
        """
        futures = []
        for path in map(Path, paths):
            try:
                futures.append((path, self._future(path)))
            except OSError as exc:
                raise ImageFailed(path, exc.strerror or str(exc)) from exc
        values = []
        for path, future in futures:
            try:
                values.append(future.result())
            except Exception as exc:  # noqa: BLE001 - named with its file, whatever the decoder raised
                raise ImageFailed(path, " ".join(str(exc).split()) or type(exc).__name__) from exc
        self._trim()
        return values

    def _trim(self) -> None:
        with self._lock:
            done = [(k, f) for k, f in self._entries.items() if f.done()]
            total = sum(self.size_of(f.result()) for _, f in done if f.exception() is None)
            for key, future in done:
                if total <= self.max_bytes:
                    break
                if future.exception() is None:
                    total -= self.size_of(future.result())
                del self._entries[key]

    def close(self) -> None:
        """Stop the threads (work in flight finishes) and forget every value."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._entries.clear()
