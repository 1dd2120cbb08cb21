"""Copy the Chromium end-to-end test's screenshots into docs/images/ for docs/launcher.md, trimmed and small.

Run the test first (it walks every page in English and in 中文 and saves
``tests/_artifacts/screenshots/LANG-NN-PAGE.png``)::

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/test_browser_e2e.py
    .venv/bin/python scripts/docs_screenshots.py

Each chosen screenshot is cut below the last row that shows anything in the page's main area, scaled to
``WIDTH`` pixels and saved as an optimized 256-colour PNG: ``docs/images/launcher-LANG-PAGE.png``.
"""
from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "tests" / "_artifacts" / "screenshots"
OUT = ROOT / "docs" / "images"
#: (language, the test's screenshot name, the name in docs/images)
CHOSEN = [(lang, shot, page) for lang in ("en", "zh") for shot, page in (
    ("08-home-done", "home"), ("02-data", "data"), ("03-train", "train"), ("04-convert", "convert"),
    ("05-chat", "chat"), ("06-publish", "publish"), ("07-environment", "environment"))]
WIDTH = 1000          # px of the saved image (the test's window is 1400 px wide)
SIDEBAR = 0.25        # the share of the width the sidebar takes: the rest decides where the page ends
MARGIN = 32           # px kept below the last row that shows something


def trimmed(image: Image.Image) -> Image.Image:
    """``image`` without the empty part below the page's content (the sidebar runs to the bottom)."""
    rgb = image.convert("RGB")
    main = rgb.crop((int(rgb.width * SIDEBAR), 0, rgb.width, rgb.height))
    blank = Image.new("RGB", main.size, main.getpixel((main.width - 1, main.height - 1)))
    box = ImageChops.difference(main, blank).point(lambda v: 255 if v > 8 else 0).getbbox()
    bottom = min(rgb.height, (box[3] if box else rgb.height) + MARGIN)
    return rgb.crop((0, 0, rgb.width, bottom))


def small(image: Image.Image) -> Image.Image:
    """``image`` scaled to :data:`WIDTH` and reduced to 256 colours."""
    height = round(image.height * WIDTH / image.width)
    return image.resize((WIDTH, height), Image.LANCZOS).quantize(colors=256, method=Image.Quantize.MEDIANCUT)


def main() -> int:
    """Write every chosen screenshot; returns 1 (naming them) when some are missing."""
    OUT.mkdir(parents=True, exist_ok=True)
    missing = []
    for lang, shot, page in CHOSEN:
        source = SHOTS / f"{lang}-{shot}.png"
        if not source.is_file():
            missing.append(str(source))
            continue
        target = OUT / f"launcher-{lang}-{page}.png"
        small(trimmed(Image.open(source))).save(target, optimize=True)
        print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KiB")
    if missing:
        print("missing (run tests/test_browser_e2e.py first): " + ", ".join(missing), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
