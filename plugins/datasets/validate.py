"""Validation shared by every dataset plugin: structure first, then each distinct image once."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlhub.core.errors import VlhubError
from vlhub.core.types import Problem, ProgressCallback

from .images import Checks, ImageInfo, check_images
from .records import record_images, structure_problem

#: problems kept in reports (the count is always complete)
MAX_PROBLEMS = 200


@dataclass
class Item:
    """A converted LLaVA record and what a plugin knows about it.

    ``source``/``index`` locate it in the input, ``groups`` are the keys that must
    stay in one split (dish, images), ``follower`` marks items placed after the split
    (see :mod:`.split`), ``mc`` the multiple-choice answer kept for evaluation,
    ``meta`` categorical fields counted in the stats.
    """

    record: dict[str, Any]
    index: int
    source: str
    groups: list[str] = field(default_factory=list)
    follower: bool = False
    mc: dict[str, Any] | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Validation:
    """Usable items, problems (index, reason) and what was learnt about each image."""

    items: list[Item]
    problems: list[Problem]
    dropped: int
    images: dict[str, ImageInfo]

    def summary(self) -> dict[str, Any]:
        return {"checked": len(self.items) + self.dropped, "usable": len(self.items), "dropped": self.dropped,
                "problems": [_public(p) for p in self.problems[:MAX_PROBLEMS]]}


class ValidationFailed(VlhubError):
    """``--strict`` and at least one record failed validation (exit code 1)."""

    def __init__(self, validation: Validation) -> None:
        self.validation = validation
        first = validation.problems[0]
        super().__init__(f"{validation.dropped} of {len(validation.items) + validation.dropped} records failed "
                         f"validation (first: {describe(first)})",
                         "fix the records listed, or run without --strict to drop them")


def _public(problem: Problem) -> dict[str, Any]:
    return {"index": problem.index, "field": problem.field, "reason": problem.reason}


def describe(problem: Problem) -> str:
    """``record 3 (sivqa_tidy.json: image): reason`` on one line."""
    where = f" ({problem.field})" if problem.field else ""
    return f"record {problem.index}{where}: {problem.reason}"


def problem(item: Item, fld: str, reason: str) -> Problem:
    """A :class:`Problem` for ``item`` naming its source file and field."""
    return Problem(item.index, reason, f"{item.source}: {fld}" if item.source else fld)


def validate(items: Sequence[Item], root: Path, progress: ProgressCallback | None = None,
             rejected: Sequence[Problem] = (), checks: Checks | None = None) -> Validation:
    """Check ``items`` against the image root; ``rejected`` are problems found while converting.

    ``checks`` are image checks the caller started early (on the source's references).
    """
    problems = list(rejected)
    shaped: list[tuple[Item, list[Any]]] = []
    for item in items:
        found = structure_problem(item.record)
        if found:
            problems.append(problem(item, *found))
        else:
            shaped.append((item, record_images(item.record)))
    refs = (ref for _, item_refs in shaped for ref in item_refs)
    if checks is None:
        images = check_images(str(root), refs, progress)
    else:
        images = checks.result(refs, progress)
    good: list[Item] = []
    for item, item_refs in shaped:
        bad = next((images[ref] for ref in item_refs if images[ref].error), None)
        if bad:
            problems.append(problem(item, "image", bad.error))
        else:
            good.append(item)
    problems.sort(key=lambda p: (p.field.partition(": ")[0] if ": " in p.field else "", p.index))
    return Validation(good, problems, len(problems), images)
