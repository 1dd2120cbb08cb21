"""Dataset statistics: records, images, turns, answer lengths, categories, duplicate images."""
from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

from .images import ImageInfo
from .records import record_images
from .validate import Item

LENGTH_BINS = (16, 32, 64, 128, 256, 512)
#: a meta field is counted as a category when it has at most this many distinct values
MAX_CATEGORIES = 50


def compute(splits: Mapping[str, Sequence[Item]], images: Mapping[str, ImageInfo]) -> dict[str, Any]:
    """Statistics of the usable records of each split (``images`` from validation)."""
    items = [item for split in splits.values() for item in split]
    used = {ref for item in items for ref in record_images(item.record)}
    turns = [len(item.record["conversations"]) for item in items]
    answers = sorted(len(t["value"]) for item in items for t in item.record["conversations"] if t["from"] == "gpt")
    return {
        "records": {name: len(split) for name, split in splits.items()},
        "records_total": len(items),
        "images": len(used),
        "image_bytes": sum(images[ref].size for ref in used if ref in images),
        "image_formats": dict(Counter(images[ref].format for ref in used if ref in images)),
        "multi_image_records": sum(len(record_images(item.record)) > 1 for item in items),
        "text_only_records": sum(not record_images(item.record) for item in items),
        "turns": {"total": sum(turns), "max_per_record": max(turns, default=0),
                  "mean_per_record": round(sum(turns) / len(turns), 2) if turns else 0},
        "answer_length": _lengths(answers),
        "categories": categories([item.meta for item in items]),
        "duplicate_images": _duplicates(used, images),
    }


def _lengths(values: Sequence[int]) -> dict[str, Any]:
    """min / median / p90 / max / mean of sorted character counts, and a histogram."""
    if not values:
        return {"count": 0}
    histogram: dict[str, int] = {}
    low = 0
    for edge in LENGTH_BINS:
        histogram[f"{low + 1}-{edge}" if low else f"<={edge}"] = sum(low < v <= edge for v in values)
        low = edge
    histogram[f">{low}"] = sum(v > low for v in values)
    return {"count": len(values), "min": values[0], "median": values[len(values) // 2],
            "p90": values[min(len(values) - 1, int(len(values) * 0.9))], "max": values[-1],
            "mean": round(sum(values) / len(values), 1), "histogram": histogram}


def categories(metas: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per value for meta fields that look categorical (short strings, few distinct values)."""
    keys = {key for meta in metas for key in meta if not _identifier(key)}
    values: dict[str, Counter] = {}
    for key in sorted(keys):
        column = [meta[key] for meta in metas if meta.get(key) is not None]
        if all(isinstance(v, (str, bool, int)) and len(str(v)) <= 40 for v in column):
            values[key] = Counter(map(str, column))
    limit = min(MAX_CATEGORIES, max(2, len(metas) // 2))
    return {key: dict(counter.most_common()) for key, counter in values.items()
            if len(counter) <= limit and sum(counter.values()) >= len(metas) // 2}


def _identifier(key: str) -> bool:
    return key in ("id", "uid", "index") or key.endswith(("_id", "_file", "_path", "_url"))


def _duplicates(used: set[str], images: Mapping[str, ImageInfo]) -> dict[str, Any]:
    by_hash: dict[str, set[str]] = defaultdict(set)
    for ref in used:
        info = images.get(ref)
        if info and info.sha:
            by_hash[info.sha].add(info.real)
    refs_by_real: dict[str, list[str]] = defaultdict(list)
    for ref in sorted(used):
        if ref in images:
            refs_by_real[images[ref].real].append(ref)
    groups = sorted(sorted(refs_by_real[p][0] for p in reals) for reals in by_hash.values() if len(reals) > 1)
    return {"groups": len(groups), "images": sum(len(g) for g in groups), "examples": groups[:10]}
