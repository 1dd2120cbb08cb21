"""The model folder as every publisher sees it: one scan, the files it sends, which go through LFS.

:func:`scan` walks the folder once per target (``lstat``/``stat`` only, nothing opened) and
decides, with one rule for every publisher, what is sent and what refuses the folder (links
out of it, loops, broken links, special files). Its :class:`LocalFile` records (size, mtime,
inode, resolved path) travel in the :class:`~vlhub.core.types.PublishPlan` to the publish,
which checks them again with :func:`check_unchanged` instead of scanning again.
:func:`check_contents` says whether the folder is a usable model (config, weights,
tokenizer, chat template). Nothing here writes into the model folder.
"""
from __future__ import annotations

import errno
import fnmatch
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from vlhub.core.errors import BadInput, VlhubError

#: Weights go through LFS by name; any other file over BIG_FILE does too.
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pth", "*.pt", "*.model", "*.onnx", "*.gguf")
BIG_FILE = 10 * 1024 * 1024
#: Never published: VCS data, caches, resume trackers, editor and notebook litter.
SKIP_DIRS = frozenset({".git", ".cache", ".ms_upload_cache", "__pycache__", ".ipynb_checkpoints"})
SKIP_FILES = frozenset({".DS_Store", ".msc", ".mdl", ".mv"})
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json", "vocab.json")


@dataclass(frozen=True)
class LocalFile:
    """One file of the model folder (``path`` is relative, with ``/``; ``real`` is where its bytes are read).

    ``real`` is the file's resolved absolute path: for a file reached through symbolic
    links, the regular file at the end of the chain. Every publisher reads and sends the
    content found there, never a link.
    """

    path: str
    size: int
    mtime_ns: int
    inode: int
    lfs: bool
    real: str = ""

    @property
    def stamp(self) -> list[int]:
        """What must not change for a cached hash to stay valid."""
        return [self.size, self.mtime_ns, self.inode]

    def source(self, folder: Path) -> Path:
        """The path to read this file's content from."""
        return Path(self.real) if self.real else Path(folder) / self.path


@dataclass
class FolderScan:
    """What :func:`scan` found: the files to send and what refuses the folder.

    ``outside`` names every link (``path -> target``) that leads out of the folder and was
    followed (``--follow-symlinks``); ``links`` counts the entries reached through a
    symbolic link (all sent as their content).
    """

    files: list[LocalFile]
    problems: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)
    links: int = 0
    refused: set[str] = field(default_factory=set)


def is_lfs(path: str, size: int) -> bool:
    """Whether a file goes through LFS: a weight pattern or over 10 MB."""
    name = path.rsplit("/", 1)[-1]
    return size > BIG_FILE or any(fnmatch.fnmatch(name, p) for p in LFS_PATTERNS)


#: The fix for a link that leads out of the folder (shown in the preflight and in docs/publishing.md).
OUTSIDE_FIX = "remove the link, copy the files in, or rerun with --follow-symlinks to send them"
_KINDS = ((stat.S_ISFIFO, "named pipe"), (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "character device"),
          (stat.S_ISBLK, "block device"))


def _names(items: list[tuple[str, str]], sep: str, limit: int = 8) -> str:
    """``'path' -> 'target'`` (or ``'path' (kind)``) for each item, quoted so that no name runs into the text."""
    shown = ", ".join(f"{path!r}{sep}{detail!r}" if sep == " -> " else f"{path!r} ({detail})"
                      for path, detail in items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def scan(folder: Path, follow_symlinks: bool = False) -> FolderScan:
    """Every publishable file under ``folder``, sorted, and what stops the folder from being published.

    One rule for every publisher: an entry (file or folder, through any chain of links)
    that resolves outside ``folder`` is refused unless ``follow_symlinks``; a folder that
    contains itself through links (a loop), a broken link and anything that is not a
    regular file or folder (named pipe, socket, device) are refused with the path. Files
    are only ``lstat``/``stat``-ed here, never opened. Linked files are sent as content.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BadInput(f"{folder} is not a folder", "give the model folder written by `vlhub convert`")
    root = os.path.realpath(folder)
    result = FolderScan([])
    outside: list[tuple[str, str]] = []  # (path, where it resolves)
    loops: list[tuple[str, str]] = []  # (path, link target)
    dangling: list[tuple[str, str]] = []  # (path, link target)
    special: list[tuple[str, str]] = []  # (path, kind)
    unreadable: list[tuple[str, str]] = []  # (path, why)

    def inside(real: str) -> bool:
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def refused_outside(relp: str, real: str) -> bool:
        """Record a link that leads out of the folder; True when it is refused (no --follow-symlinks)."""
        outside.append((relp, real))
        if not follow_symlinks:
            result.refused.add(relp)
        return not follow_symlinks

    def walk(path: str, rel: str, real_dir: str, out: bool, ancestors: frozenset[tuple[int, int]]) -> None:
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            unreadable.append((rel or ".", str(exc.strerror or exc)))
            return
        for entry in entries:
            name = entry.name
            relp = f"{rel}/{name}" if rel else name
            try:
                link = entry.is_symlink()
                if link:
                    target = os.readlink(entry.path)
                    try:
                        st = os.stat(entry.path)  # follows the whole chain
                    except FileNotFoundError:
                        if name not in SKIP_FILES and name not in SKIP_DIRS:
                            dangling.append((relp, target))
                        continue
                    except OSError as exc:
                        if exc.errno == errno.ELOOP:
                            loops.append((relp, target))
                        else:
                            unreadable.append((relp, str(exc.strerror or exc)))
                        continue
                    real = os.path.realpath(entry.path)
                    leaves = not inside(real)
                else:
                    st = entry.stat(follow_symlinks=False)
                    real, leaves = os.path.join(real_dir, name), out
            except OSError as exc:
                unreadable.append((relp, str(exc.strerror or exc)))
                continue
            if stat.S_ISDIR(st.st_mode):
                if name in SKIP_DIRS:
                    continue
                if (st.st_dev, st.st_ino) in ancestors:
                    loops.append((relp, target if link else "(bind mount)"))
                    continue
                if link and leaves and not out and refused_outside(relp, real):
                    continue
                walk(entry.path, relp, real, leaves, ancestors | {(st.st_dev, st.st_ino)})
                continue
            if name in SKIP_FILES:
                continue
            if not stat.S_ISREG(st.st_mode):
                kind = next((k for test, k in _KINDS if test(st.st_mode)), "special file")
                special.append((relp, kind))
                result.refused.add(relp)
                continue
            if link and leaves and not out and refused_outside(relp, real):
                continue
            if link or out:
                result.links += 1
            result.files.append(LocalFile(relp, st.st_size, st.st_mtime_ns, st.st_ino, is_lfs(relp, st.st_size), real))

    root_st = os.stat(root)
    walk(str(folder), "", root, False, frozenset({(root_st.st_dev, root_st.st_ino)}))
    result.files.sort(key=lambda f: f.path)
    if outside and not follow_symlinks:
        result.problems.append(f"symbolic links lead outside the model folder: {_names(outside, ' -> ')}; "
                               f"nothing was sent. Fix: {OUTSIDE_FIX}")
    elif outside:
        result.outside = [f"{path} -> {real}" for path, real in outside]
    if loops:
        result.refused.update(path for path, _ in loops)
        result.problems.append(f"symbolic link loop (a folder that contains itself): {_names(loops, ' -> ')}. "
                               "Fix: remove the link")
    if dangling:
        result.refused.update(path for path, _ in dangling)
        result.problems.append(f"broken symbolic links (their target does not exist): {_names(dangling, ' -> ')}. "
                               "Fix: restore the target, copy the file in, or remove the link")
    if special:
        result.problems.append(f"not a regular file (never opened): {_names(special, '')}. "
                               "Fix: remove it from the model folder")
    if unreadable:
        result.problems.append(f"cannot read {_names(unreadable, '')}. Fix: check the permissions")
    return result


def check_unchanged(folder: Path, files: list[LocalFile]) -> None:
    """Refuse a publish whose folder changed since its preflight (before any byte is sent).

    Each planned file must still resolve to the same regular file (``realpath``) with the
    size, mtime and inode the scan saw; a file replaced by a link, a pipe or another file,
    a link pointed elsewhere, or a file written to since, fails here. Nothing is opened.
    Files added since the preflight are not part of the plan and are not sent.

    Args:
        folder: the model folder.
        files: the scanned files the plan sends (``PublishPlan.sources``).

    Raises:
        BadInput: naming up to eight changed files, with the fix (rerun the publish).
    """
    changed = changed_files(folder, files)
    if changed:
        raise BadInput(f"the folder changed since its preflight: {_names(changed, '')}; nothing was sent",
                       "rerun the publish (its preflight plans the folder as it is now)")


def changed_files(folder: Path, files: list[LocalFile]) -> list[tuple[str, str]]:
    """``(path, how)`` for each file that no longer is what the scan saw (``stat`` only, nothing opened).

    A file is changed when it is gone, resolves elsewhere, is no longer a regular file, or its
    size, mtime or inode differ from its :attr:`LocalFile.stamp` (``how`` says which).
    """
    changed = []
    for f in files:
        try:
            real = os.path.realpath(Path(folder) / f.path)
            st = os.stat(real)
        except OSError:
            changed.append((f.path, "gone"))
            continue
        if f.real and real != f.real:
            changed.append((f.path, "points elsewhere"))
        elif not stat.S_ISREG(st.st_mode):
            changed.append((f.path, "no longer a regular file"))
        elif [st.st_size, st.st_mtime_ns, st.st_ino] != f.stamp:
            changed.append((f.path, "modified"))
    return changed


def changed_during_upload(folder: Path, files: list[LocalFile], rerun: str, committed: bool = False) -> None:
    """Stop a publish whose files changed while they were being sent (checked right before and right after).

    Args:
        folder: the model folder.
        files: the files being sent (their scan's size, mtime and inode).
        rerun: the command that publishes again (shown as the fix).
        committed: the hub committed what it received already (ModelScope's ``upload_folder``).

    Raises:
        VlhubError: (exit 1) naming up to eight changed files:
            ``PATH changed during upload; rerun `vlhub publish ...` (nothing was committed)``.
    """
    changed = changed_files(folder, files)
    if changed:
        raise changed_error([path for path, _ in changed], rerun, committed)


def changed_error(paths: list[str], rerun: str, committed: bool = False) -> VlhubError:
    """The error for files that changed while they were sent (see :func:`changed_during_upload`)."""
    names = ", ".join(paths[:8]) + (f" and {len(paths) - 8} more" if len(paths) > 8 else "")
    after = ("the hub may have committed a mix of old and new content" if committed else "nothing was committed")
    return VlhubError(f"{names} changed during upload; rerun `{rerun}` ({after})", "")


def check_contents(folder: Path, files: list[LocalFile],
                   refused: set[str] | frozenset[str] = frozenset()) -> tuple[list[str], dict[str, object]]:
    """Problems that make the folder unusable by others, and what was found.

    ``refused`` (paths the scan already refused, with their own problem line) count as
    present here, so that a refused ``config.json`` link is not reported twice; they are
    never read.
    """
    names = {f.path for f in files}
    present = names | set(refused)
    weights = [p for p in sorted(present) if p.endswith(WEIGHT_SUFFIXES)]
    tokenizer = [n for n in TOKENIZER_FILES if n in present]
    template = chat_template_source(folder, names, {f.path: f for f in files})
    if not template and refused & {"tokenizer_config.json", "chat_template.jinja", "chat_template.json"}:
        template = "(refused)"
    checks: dict[str, object] = {"config": "config.json" in names, "weights": len(weights),
                                 "tokenizer": tokenizer, "chat_template": template}
    problems = []
    if not present:
        return [f"{folder} is empty: nothing to publish. Fix: give the model folder `vlhub convert` wrote"], checks
    if "config.json" not in present:
        problems.append("config.json is missing (is this a model folder?). Fix: give the folder `vlhub convert` wrote")
    if not weights:
        problems.append("no weights (*.safetensors, *.bin, *.pth) in the folder. Fix: copy the weight files in")
    if not tokenizer:
        problems.append("no tokenizer files (tokenizer.model, tokenizer.json or tokenizer_config.json). "
                        "Fix: copy the base model's tokenizer files in")
    if not template:
        problems.append("no chat template (tokenizer_config.json 'chat_template' or chat_template.jinja/.json): "
                        "others would hit 'failed to match chat template'. Fix: convert with `vlhub convert`, "
                        "which writes the template")
    return problems, checks


def chat_template_source(folder: Path, names: set[str], files: dict[str, LocalFile] | None = None) -> str:
    """Which file carries the chat template, or ``""`` (reads only a scanned, regular tokenizer_config.json)."""
    for name in ("chat_template.jinja", "chat_template.json"):
        if name in names:
            return name
    if "tokenizer_config.json" in names:
        entry = (files or {}).get("tokenizer_config.json")
        path = entry.source(folder) if entry else Path(folder) / "tokenizer_config.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return ""
        if isinstance(data, dict) and data.get("chat_template"):
            return "tokenizer_config.json"
    return ""
