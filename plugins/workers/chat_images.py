"""InternVL image preprocessing (dynamic tiling, as the official ``load_image``), without torchvision.

Runs inside a stage environment: Pillow, numpy and torch only. An image is cut into ``image_size``
square tiles on the grid :mod:`chat_tiling` picks (at most ``max_tiles`` tiles), plus a thumbnail of the
whole image when there is more than one tile; each tile is normalised with the ImageNet mean/std.

The official code (the model card's ``build_transform`` / ``dynamic_preprocess``) resizes the image to
the grid's size (bicubic), crops each tile, and runs torchvision's ``Resize`` (a no-op at that size),
``ToTensor`` and ``Normalize`` on each. :func:`pixel_values` does the same arithmetic on the whole resized
image at once with numpy and cuts the tiles out of the array. A JPEG is decoded no larger than the
resize needs (:func:`chat_tiling.decode`); the grid is always chosen from the file's own size.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

import chat_tiling
from chat_tiling import Tiling

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_SCALE = 1.0 / (255.0 * np.array(IMAGENET_STD, dtype=np.float32))
_SHIFT = np.array(IMAGENET_MEAN, dtype=np.float32) / np.array(IMAGENET_STD, dtype=np.float32)
#: Tiles kept per worker for images sent again in later turns (float32 tensors).
CACHE_BYTES = 512 * 1024 * 1024


def tiles(image: Image.Image, image_size: int, max_tiles: int, thumbnail: bool) -> list[Image.Image]:
    """The image cut into square tiles (plus a thumbnail when there are several), as PIL images."""
    cols, rows = chat_tiling.closest_grid(image.width, image.height, Tiling(image_size, 1, max_tiles, thumbnail))
    resized = image.resize((image_size * cols, image_size * rows))
    out = [resized.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
           for r in range(rows) for c in range(cols)]
    if thumbnail and len(out) != 1:
        out.append(image.resize((image_size, image_size)))
    return out


def to_tensor(tile: Image.Image, image_size: int) -> torch.Tensor:
    """One tile as a normalised CHW float tensor (bicubic resize, like torchvision's transform)."""
    tile = tile.resize((image_size, image_size), Image.BICUBIC)
    return torch.from_numpy(_normalised(tile).transpose(2, 0, 1).copy())


def _normalised(image: Image.Image) -> np.ndarray:
    """HWC float32: ``(pixel / 255 - mean) / std`` per channel."""
    array = np.asarray(image, dtype=np.float32)
    array *= _SCALE
    array -= _SHIFT
    return array


def pixel_values(image: Image.Image, grid: tuple[int, int], tiling: Tiling) -> torch.Tensor:
    """The (tiles, 3, S, S) tensor of ``image`` on ``grid`` (cols, rows), row by row, then the thumbnail."""
    size, (cols, rows) = tiling.image_size, grid
    array = _normalised(image.resize((size * cols, size * rows), Image.BICUBIC))
    thumbnail = tiling.thumbnail and cols * rows != 1
    out = np.empty((rows * cols + thumbnail, 3, size, size), dtype=np.float32)
    out[:rows * cols].reshape(rows, cols, 3, size, size)[...] = array.reshape(rows, size, cols, size, 3).transpose(
        0, 2, 4, 1, 3)  # tile (r, c) = rows r*S.. and columns c*S.. of the resized image, channels first
    if thumbnail:
        out[-1] = _normalised(image.resize((size, size), Image.BICUBIC)).transpose(2, 0, 1)
    return torch.from_numpy(out)


def load_image(path: Path, tiling: Tiling) -> torch.Tensor:
    """``pixel_values`` of one image file: a (tiles, 3, image_size, image_size) float32 tensor."""
    width, height = chat_tiling.image_size_of(path)
    grid = chat_tiling.closest_grid(width, height, tiling)
    image = chat_tiling.decode(path, chat_tiling.pixels_needed(width, height, tiling))
    return pixel_values(image, grid, tiling)


def tile_cache(tiling: Tiling, max_bytes: int = CACHE_BYTES) -> chat_tiling.Prepared[torch.Tensor]:
    """Every image's tiles for one loaded model: the images of a turn tiled on threads at once, each file
    once while unchanged (:class:`chat_tiling.Prepared`)."""
    return chat_tiling.Prepared(lambda path: load_image(path, tiling), lambda t: t.element_size() * t.nelement(),
                                max_bytes)
