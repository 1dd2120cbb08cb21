"""Benchmark: prepare + validate a synthetic 20,000-record / 5,000-image FoodieQA-layout set.

Compares ``vlhub.core.data.prepare("foodieqa", ...)`` with the plain loop a user
would write (``json.load`` + ``PIL.Image.open(path).verify()`` over every distinct
image). Both run on a warm page cache; the best of ``--repeat`` runs is reported.

    .venv/bin/python bench/data.py [--dir DIR] [--records 20000] [--images 5000]
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from PIL import Image


def build(root: Path, records: int, images: int) -> Path:
    """A FoodieQA-layout folder: ``images`` JPEG photos, two per dish, ``records`` sivqa questions."""
    marker = root / f".built-{records}-{images}"
    if marker.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / "images").mkdir(parents=True)
    rng = random.Random(0)
    base = Image.linear_gradient("L").resize((320, 240)).convert("RGB")
    for n in range(images):
        noise = Image.frombytes("L", (80, 60), rng.randbytes(80 * 60)).resize((320, 240)).convert("RGB")
        Image.blend(base, noise, 0.3).save(root / f"images/{n:05d}.jpg", quality=85)
    questions = []
    for k in range(records):
        n = k % images
        questions.append({"question": f"图片中的食物是哪个地区的特色美食？({k})", "choices": ["川", "粤", "湘", "浙"],
                          "answer": str(k % 4), "food_meta": {"food_name": f"dish-{n // 2}", "food_type": "meat",
                                                              "main_region": "川粤湘浙"[n % 4],
                                                              "food_file": f"images/{n:05d}.jpg"}})
    (root / "sivqa_tidy.json").write_text(json.dumps(questions, ensure_ascii=False), encoding="utf-8")
    marker.touch()
    return root


def baseline(root: Path) -> float:
    """The plain loop: json.load, then open + verify each distinct image."""
    start = time.perf_counter()
    with open(root / "sivqa_tidy.json", encoding="utf-8") as handle:
        questions = json.load(handle)
    for path in dict.fromkeys(q["food_meta"]["food_file"] for q in questions):
        with Image.open(root / path) as image:
            image.verify()
    return time.perf_counter() - start


def vlhub_prepare(root: Path, out: Path) -> float:
    from vlhub.core import data

    start = time.perf_counter()
    data.prepare("foodieqa", root, out, {"val_fraction": 0.1}, force=True)
    return time.perf_counter() - start


def vlhub_validate(out: Path, root: Path) -> float:
    from vlhub.core import data

    start = time.perf_counter()
    data.validate(out / "train.json", root)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "vlhub-bench-data")
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--images", type=int, default=5_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    root = build(args.dir / "FoodieQA", args.records, args.images)
    out = args.dir / "prepared"
    baseline(root)  # warm the page cache for both
    plain = min(baseline(root) for _ in range(args.repeat))
    prep = min(vlhub_prepare(root, out) for _ in range(args.repeat))
    check = min(vlhub_validate(out, root) for _ in range(args.repeat))
    from vlhub.core.prepared.images import default_workers

    print(f"set: {args.records} records, {args.images} images, {default_workers()} worker processes")
    print(f"plain json.load + Image.verify loop: {plain:.3f} s ({args.records / plain:,.0f} records/s)")
    print(f"vlhub data prepare foodieqa:         {prep:.3f} s ({args.records / prep:,.0f} records/s), "
          f"ratio {prep / plain:.2f}x")
    print(f"vlhub data validate train.json:      {check:.3f} s, ratio {check / plain:.2f}x")


if __name__ == "__main__":
    main()
