"""InternVL image preprocessing (dynamic tiling, as the official ``load_image``), without torchvision.

Runs inside a stage environment: Pillow, numpy and torch only. An image is cut
into ``image_size`` square tiles on the grid whose aspect ratio is closest to the
image's (at most ``max_tiles`` tiles), plus a thumbnail of the whole image when
there is more than one tile; each tile is normalised with the ImageNet mean/std.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def closest_grid(width: int, height: int, image_size: int, max_tiles: int) -> tuple[int, int]:
    """The (columns, rows) grid of at most ``max_tiles`` tiles that best fits the aspect ratio."""
    aspect = width / height
    grids = sorted({(i, j) for n in range(1, max_tiles + 1) for i in range(1, n + 1)
                    for j in range(1, n + 1) if i * j <= max_tiles}, key=lambda g: g[0] * g[1])
    best, best_diff = (1, 1), float("inf")
    for grid in grids:
        diff = abs(aspect - grid[0] / grid[1])
        if diff < best_diff:
            best, best_diff = grid, diff
        elif diff == best_diff and width * height > 0.5 * image_size * image_size * grid[0] * grid[1]:
            best = grid
    return best


def tiles(image: Image.Image, image_size: int, max_tiles: int, thumbnail: bool) -> list[Image.Image]:
    """The image cut into square tiles (plus a thumbnail when there are several)."""
    cols, rows = closest_grid(image.width, image.height, image_size, max_tiles)
    resized = image.resize((image_size * cols, image_size * rows))
    out = [resized.crop((c * image_size, r * image_size, (c + 1) * image_size, (r + 1) * image_size))
           for r in range(rows) for c in range(cols)]
    if thumbnail and len(out) != 1:
        out.append(image.resize((image_size, image_size)))
    return out


def to_tensor(tile: Image.Image, image_size: int) -> torch.Tensor:
    """One tile as a normalised CHW float tensor (bicubic resize, like torchvision's transform)."""
    tile = tile.resize((image_size, image_size), Image.BICUBIC)
    array = np.asarray(tile, dtype=np.float32) / 255.0
    array = (array - np.array(IMAGENET_MEAN, dtype=np.float32)) / np.array(IMAGENET_STD, dtype=np.float32)
    return torch.from_numpy(array.transpose(2, 0, 1).copy())


def load_image(path: Path, image_size: int, max_tiles: int, thumbnail: bool) -> torch.Tensor:
    """``pixel_values`` of one image: a (tiles, 3, image_size, image_size) tensor."""
    with Image.open(path) as img:
        image = img.convert("RGB")
    return torch.stack([to_tensor(t, image_size) for t in tiles(image, image_size, max_tiles, thumbnail)])
