"""InternVL2 image preprocessing for the env checks: vlhub's own worker code (no torchvision),
driven by a model config, plus a deterministic test picture."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "plugins" / "workers"))
from chat_images import tiles, to_tensor  # noqa: E402  (the worker the transformers backend runs)


def load_image(image: Image.Image, config: object) -> torch.Tensor:
    """All tiles of ``image`` as a (tiles, 3, S, S) tensor, using the model config's tiling settings."""
    size = config.force_image_size or config.vision_config.image_size
    cut = tiles(image.convert("RGB"), size, config.max_dynamic_patch, config.use_thumbnail)
    return torch.stack([to_tensor(t, size) for t in cut])


def sample_image(width: int = 320, height: int = 200) -> Image.Image:
    """A deterministic colourful test picture."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    rgb = np.stack([x, y, 255 - (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb, "RGB")
