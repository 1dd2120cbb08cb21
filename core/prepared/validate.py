"""Validation shared by every dataset plugin: structure first, then each distinct image once.

Good records are rewritten to the image paths as found on disk (:attr:`ImageInfo.path`:
``images\\a.jpg`` -> ``images/a.jpg``, the file system's Unicode spelling), and their ``img:PATH``
split groups to the resolved file, so two spellings of one image are one group. When fewer
records than asked are kept, :func:`check_kept` fails with what the dropped records have in common.
"""
from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vlhub.core.errors import VlhubError
from vlhub.core.types import ProgressCallback

from .format import Problem
from .images import MISSING, Checks, ImageInfo, check_images
from .records import Item, record_images, structure_problem

#: problems kept in reports (the count is always complete)
MAX_PROBLEMS = 200
#: folders looked at when guessing the image root of images that are not found
SEARCH_FOLDERS = 2000


@dataclass
class Validation:
    """Usable items, problems (index, reason) and what was learnt about each image.

    ``image_problems`` pairs each record dropped for an image with that image's
    :class:`ImageInfo` (its ``code`` says why: missing, outside the root, ...).
    """

    items: list[Item]
    problems: list[Problem]
    dropped: int
    images: dict[str, ImageInfo]
    image_problems: list[tuple[Problem, ImageInfo]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The ``report.json`` counts: ``{"checked", "usable", "dropped": int, "problems": [{"index",
        "field", "reason"}] (the first :data:`MAX_PROBLEMS`)}``."""
        return {"checked": len(self.items) + self.dropped, "usable": len(self.items), "dropped": self.dropped,
                "problems": [_public(p) for p in self.problems[:MAX_PROBLEMS]]}


class ValidationFailed(VlhubError):
    """``--strict`` and at least one record failed validation (exit code 1)."""

    def __init__(self, validation: Validation, message: str = "", hint: str = "") -> None:
        self.validation = validation
        if not message:
            first = validation.problems[0]
            message = (f"{validation.dropped} of {len(validation.items) + validation.dropped} records failed "
                       f"validation (first: {describe(first)})")
            hint = "fix the records listed, or run without --strict to drop them"
        super().__init__(message, hint)


class TooFewRecords(ValidationFailed):
    """Fewer records than ``min_kept`` (default 1) survived validation: nothing is written (exit code 1)."""


def _public(problem: Problem) -> dict[str, Any]:
    return {"index": problem.index, "field": problem.field, "reason": problem.reason}


def describe(problem: Problem) -> str:
    """``problem`` on one line: ``record 3 (sivqa_tidy.json: image): reason``."""
    where = f" ({problem.field})" if problem.field else ""
    return f"record {problem.index}{where}: {problem.reason}"


def problem(item: Item, fld: str, reason: str) -> Problem:
    """A :class:`Problem` for ``item``, its field ``"SOURCE: FIELD"`` (e.g. ``"ex_cn.json: image"``)."""
    return Problem(item.index, reason, f"{item.source}: {fld}" if item.source else fld)


def validate(items: Sequence[Item], root: Path, progress: ProgressCallback | None = None,
             rejected: Sequence[Problem] = (), checks: Checks | None = None) -> Validation:
    """Check each item's structure, then its images against ``root``; keep the good ones.

    A good item's image paths are rewritten as found on disk (``record["image"]``, and ``mc["image"]``
    when it holds the same references), and its ``img:PATH`` groups become ``img:`` + the resolved
    file, so that spellings of one file (``a.jpg``, ``./a.jpg``, ``a\\b.jpg``/``a/b.jpg``, NFC/NFD)
    stay in one split.

    Args:
        items: the converted records.
        root: the image root their image paths are relative to.
        progress: receives ``check images`` events (done / total distinct images).
        rejected: problems the plugin found while converting (records that never became items).
        checks: image checks the caller started early (fed the source's references); they are
            collected here. Without it the images are checked now.
    Returns:
        :class:`Validation`: the usable items in input order, every problem (``rejected`` included)
        sorted by source file and index, the count dropped, and each distinct image's
        :class:`~vlhub.core.prepared.images.ImageInfo` (by reference as written, and by the path
        as found on disk).
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
    image_problems: list[tuple[Problem, ImageInfo]] = []
    for item, item_refs in shaped:
        bad = next((images[ref] for ref in item_refs if images[ref].error), None)
        if bad:
            problems.append(problem(item, "image", bad.error))
            image_problems.append((problems[-1], bad))
        else:
            _as_found(item, item_refs, images)
            good.append(item)
    for info in list(images.values()):
        if not info.error and info.path and info.path != info.ref:
            images.setdefault(info.path, info)
    problems.sort(key=lambda p: (p.field.partition(": ")[0] if ": " in p.field else "", p.index))
    return Validation(good, problems, len(problems), images, image_problems)


def _as_found(item: Item, refs: list[Any], images: dict[str, ImageInfo]) -> None:
    """Rewrite ``item``'s image paths as found on disk and its ``img:`` groups to the resolved files."""
    paths = [images[ref].path or ref for ref in refs]
    if paths != refs:
        old = item.record["image"]
        new: Any = paths if isinstance(old, list) else paths[0]
        item.record["image"] = new
        if item.mc is not None and item.mc.get("image") == old:
            item.mc["image"] = new
    groups = []
    for key in item.groups:
        info = images.get(key[4:]) if key.startswith("img:") else None
        groups.append(f"img:{info.real}" if info is not None and not info.error and info.real else key)
    item.groups = list(dict.fromkeys(groups))


def check_kept(validation: Validation, kept: int, min_kept: int = 1, *, image_root: Path | str = "",
               root_fix: str = "", source: str = "") -> None:
    """Fail when fewer than ``min_kept`` records are kept (written), saying what the dropped ones share.

    Args:
        validation: what :func:`validate` returned.
        kept: the records that would be written (after sampling and the split).
        min_kept: the fewest acceptable (``vlhub data prepare --min-kept``); 0 accepts an empty result.
        image_root: the folder the image paths were looked for in (named in the message).
        root_fix: how the user points the plugin at another image root, with ``{root}`` where the
            folder goes (e.g. ``"pass the folder the image paths are relative to: --opt image_root={root}"``).
        source: the source file or folder (named when it holds no records at all).
    Raises:
        TooFewRecords: fewer than ``min_kept`` records kept; the message names the image root and one
            missing path when images were not found, else the first problem, and the fix.
    """
    if kept >= min_kept:
        return
    total = len(validation.items) + validation.dropped
    if total == 0:
        raise TooFewRecords(validation, f"{source or 'the source'}: holds no records",
                            "give the file (or folder) that holds the records: a JSON list or JSON Lines of records")
    if kept == 0 and validation.dropped == total:
        head = f"all {total} records were dropped"
    else:
        head = f"only {kept} of {total} records {'is' if kept == 1 else 'are'} kept (fewer than --min-kept {min_kept})"
        if len(validation.items) > kept:
            head += f"; {len(validation.items) - kept} usable records were left out by the sample or the split"
    misses = [(p, info) for p, info in validation.image_problems if info.code == MISSING]
    root = str(Path(image_root).resolve()) if image_root else ""
    lower = ", or lower --min-kept" if kept else ""
    if misses and root:
        first, info = misses[0]
        dropped, missing = validation.dropped, len(misses)
        if missing == dropped:
            share = "every one names" if kept == 0 else f"the {dropped} dropped name{'s' if dropped == 1 else ''}"
        else:
            share = f"{missing} of the {dropped} dropped name{'s' if missing == 1 else ''}"
        common = f"{share} an image not found under the image root {root} (e.g. {describe_ref(first, info)})"
        guess = suggest_root(root, info.path or info.ref)
        if guess or not any(not i.error for i in validation.images.values()):
            # no image at all was found there (or they are elsewhere): the image root is the likely fault
            template = root_fix or "give the folder the image paths are relative to as the image root"
            fix = template.replace("{root}", "DIR")
            if guess:
                flag = re.search(r"--[\w-]+(?: [\w-]+=)?[ =]?\{root\}", template)
                fix += f" ({info.path} is under {guess}" + (f": {flag[0].replace('{root}', guess)})" if flag else ")")
        else:
            fix = "add the missing images, or fix their paths in the records"
        if missing == dropped:
            raise TooFewRecords(validation, f"{head}: {common}", fix + lower)
        others = next(p for p in validation.problems if all(p is not m for m, _ in misses))
        raise TooFewRecords(validation, f"{head}; first: {describe(others)}; {common}",
                            f"fix the records listed above; for the missing images: {fix}{lower}")
    first = validation.problems[0] if validation.problems else None
    tail = ""
    if first:
        alike = all(p.reason.split(":")[0] == first.reason.split(":")[0] for p in validation.problems)
        tail = f"; first: {describe(first)}" + (f" (all {len(validation.problems)} alike)"
                                                if alike and len(validation.problems) > 1 else "")
    fix = f"fix the records listed above{lower}" if first else "give more records, or lower --min-kept"
    raise TooFewRecords(validation, f"{head}{tail}", fix)


def describe_ref(problem: Problem, info: ImageInfo) -> str:
    """``record 0 (chat.json: image) names 'images\\x.png', looked for /data/images/x.png``."""
    where = f" ({problem.field})" if problem.field else ""
    return f"record {problem.index}{where} names {info.ref!r}, looked for {info.real or info.ref}"


def suggest_root(root: str, rel: str) -> str:
    """A folder near ``root`` under which ``rel`` exists (the image root the user probably meant), or "".

    Looks at ``root``'s parents (the paths are relative to a folder above), then breadth-first
    through ``root`` and its parent (a subfolder, a sibling), at most :data:`SEARCH_FOLDERS`
    folders, without following symlinked folders or entering hidden and system folders.
    """
    if not rel:
        return ""
    start = Path(root)
    for folder in list(start.parents)[:3]:
        if _is_file(folder / rel):
            return str(folder)
    queue = [start, start.parent] if start.parent != start else [start]
    visited: set[Path] = set()
    while queue and len(visited) < SEARCH_FOLDERS:
        folder = queue.pop(0)
        if folder in visited or str(folder) in _SYSTEM:
            continue
        visited.add(folder)
        if folder != start and _is_file(folder / rel):
            return str(folder)
        try:
            with os.scandir(folder) as entries:
                queue += sorted(Path(e.path) for e in entries if not e.name.startswith(".")
                                and e.is_dir(follow_symlinks=False))
        except OSError:
            continue
    return ""


_SYSTEM = {"/proc", "/sys", "/dev", "/run"}


def _is_file(path: Path) -> bool:
    """A regular file (stat, never opened); False on any error."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
