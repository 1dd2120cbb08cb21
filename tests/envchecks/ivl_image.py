"""InternVL2 image preprocessing with Pillow + numpy + torch only (no torchvision).

Mirrors the official recipe: dynamic tiling into ``image_size`` squares (plus a thumbnail),
bicubic resize, ImageNet mean/std normalisation.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def _closest_ratio(aspect: float, ratios: list[tuple[int, int]], w: int, h: int, size: int) -> tuple[int, int]:
    best, best_diff = (1, 1), float("inf")
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best, best_diff = r, diff
        elif diff == best_diff and w * h > 0.5 * size * size * r[0] * r[1]:
            best = r
    return best


def dynamic_preprocess(image: Image.Image, min_num: int = 1, max_num: int = 12, image_size: int = 448,
                       use_thumbnail: bool = False) -> list[Image.Image]:
    """Split ``image`` into the tile grid closest to its aspect ratio."""
    w, h = image.size
    ratios = sorted({(i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                     for j in range(1, n + 1) if min_num <= i * j <= max_num}, key=lambda r: r[0] * r[1])
    cols, rows = _closest_ratio(w / h, ratios, w, h, image_size)
    resized = image.resize((image_size * cols, image_size * rows), Image.BICUBIC)
    tiles = [resized.crop(((i % cols) * image_size, (i // cols) * image_size,
                           (i % cols + 1) * image_size, (i // cols + 1) * image_size)) for i in range(cols * rows)]
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size), Image.BICUBIC))
    return tiles


def to_tensor(tile: Image.Image, image_size: int) -> torch.Tensor:
    """One tile → normalised (3, S, S) float tensor."""
    arr = np.asarray(tile.convert("RGB").resize((image_size, image_size), Image.BICUBIC), dtype=np.float32) / 255.0
    return torch.from_numpy(((arr - MEAN) / STD).transpose(2, 0, 1).copy())


def load_image(image: Image.Image, config: object) -> torch.Tensor:
    """All tiles of ``image`` as a (tiles, 3, S, S) tensor, using the model config's tiling settings."""
    size = config.force_image_size or config.vision_config.image_size
    tiles = dynamic_preprocess(image.convert("RGB"), config.min_dynamic_patch, config.max_dynamic_patch, size,
                               config.use_thumbnail)
    return torch.stack([to_tensor(t, size) for t in tiles])


def sample_image(width: int = 320, height: int = 200) -> Image.Image:
    """A deterministic colourful test picture."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, 255 - (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")
