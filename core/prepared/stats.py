"""Dataset statistics: records, images, turns, answer lengths, categories, duplicate images."""
from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

from .images import ImageInfo
from .records import record_images
from .records import Item

LENGTH_BINS = (16, 32, 64, 128, 256, 512)
#: a meta field is counted as a category when it has at most this many distinct values
MAX_CATEGORIES = 50


def compute(splits: Mapping[str, Sequence[Item]], images: Mapping[str, ImageInfo]) -> dict[str, Any]:
    """Statistics of the usable records of each split, in one pass (the content of ``stats.json``).

    Args:
        splits: split name -> its items.
        images: what validation found for each image reference (:attr:`Validation.images`).
    Returns:
        ``{"records": {split: int}, "records_total": int, "images": int (distinct references),
        "image_bytes": int, "image_formats": {format: int}, "multi_image_records": int,
        "text_only_records": int, "turns": {"total", "max_per_record", "mean_per_record"},
        "answer_length": {"count", "min", "median", "p90", "max", "mean", "histogram": {bin: int}}
        (characters of gpt turns; only ``count`` when there is none), "categories": {field: {value:
        int}} (:func:`categories`), "duplicate_images": {"groups", "images": int, "examples":
        [[ref, ...]] (the first 10 groups of references to equal content)}}``.
    """
    items = [item for split in splits.values() for item in split]
    used: set[str] = set()
    turns: list[int] = []
    answers: list[int] = []
    multi = text_only = 0
    for item in items:
        refs = record_images(item.record)
        used.update(refs)
        multi += len(refs) > 1
        text_only += not refs
        conversations = item.record["conversations"]
        turns.append(len(conversations))
        answers += [len(t["value"]) for t in conversations if t["from"] == "gpt"]
    answers.sort()
    known = [images[ref] for ref in used if ref in images]
    return {
        "records": {name: len(split) for name, split in splits.items()},
        "records_total": len(items),
        "images": len(used),
        "image_bytes": sum(info.size for info in known),
        "image_formats": dict(Counter(info.format for info in known)),
        "multi_image_records": multi,
        "text_only_records": text_only,
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
        histogram[f"{low + 1}-{edge}" if low else f"<={edge}"] = bisect_right(values, edge) - bisect_right(values, low)
        low = edge
    histogram[f">{low}"] = len(values) - bisect_right(values, low)
    return {"count": len(values), "min": values[0], "median": values[len(values) // 2],
            "p90": values[min(len(values) - 1, int(len(values) * 0.9))], "max": values[-1],
            "mean": round(sum(values) / len(values), 1), "histogram": histogram}


def categories(metas: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Counts per value for meta fields that look categorical.

    Args:
        metas: each item's ``meta``.
    Returns:
        ``{field: {value (as text): count}}`` for fields that are not identifiers (``id``,
        ``*_file``, ...), hold short scalars (40 characters at most), have at most
        :data:`MAX_CATEGORIES` distinct values (and at most half as many as records) and are
        set in at least half of the records.
    """
    keys = {key for key in set().union(*metas) if not _identifier(key)}
    values: dict[str, Counter] = {}
    for key in sorted(keys):
        column = [value for meta in metas if (value := meta.get(key)) is not None]
        if {type(v) for v in column} <= {str, bool, int} or all(isinstance(v, (str, bool, int)) for v in column):
            texts = list(map(str, column))
            if max(map(len, texts), default=0) <= 40:
                values[key] = Counter(texts)
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
