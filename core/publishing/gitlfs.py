"""The git + Git LFS engine: a staging repository that pushes a model folder to any git remote.

Public API for every git-based publisher (the built-in ``git:``, ``openxlab:`` and ``--via
git`` of ``hf:``/``modelscope:``, and third-party publishers for other git hosts); the
preflight/publish flow on top of it is :mod:`vlhub.core.publishing.gitpush`, the LFS
upload :mod:`vlhub.core.publishing.lfs`.

The model folder is staged in place: a separate ``GIT_DIR`` under ``$VLHUB_HOME/publish/``
(one per folder + remote) has the model folder as its work tree, so nothing is copied and
nothing is written into the folder; the staging's index and hash cache make a re-publish
incremental. Weights never enter git as blobs: each LFS file is hashed once (streamed),
linked into the staging's LFS store and sent by ``git lfs push``; its pointer goes into
the index. Small files are written as blobs from their content (``git hash-object`` of the
resolved file, mode 100644), so a symlinked file is committed as the file it points to,
never as a link. The tree is compared with the plan before the commit, and the remote
branch with the commit after ``git push``, whose git-lfs pre-push hook checks once more
that every object is on the server.

Specs followed: git's plumbing (``ls-remote --symref``, ``fetch``, ``ls-tree -r -l -z``,
``cat-file --batch``, ``read-tree``, ``hash-object -w --no-filters --stdin-paths``,
``update-index -z --index-info``, ``write-tree``, ``commit-tree``, ``push``; git-scm.com/docs),
``gitattributes`` (``check-attr filter``; a path is LFS when its ``filter`` is ``lfs``), the
Git LFS pointer format and batch API as implemented by ``git lfs push --object-id``
(github.com/git-lfs/git-lfs/tree/main/docs), and the credential helper protocol
(``gitcredentials``: ``get`` answers ``username=``/``password=``).

Credentials reach git and git-lfs only through a credential helper that reads them from
the child's environment: never in a URL, argv, the staging's config, or an error message.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from vlhub.core.errors import BadInput, MissingDependency, VlhubError
from vlhub.core.home import vlhub_home
from vlhub.core.net import with_git_config
from vlhub.core.secrets import looks_like_token, redact, remember, strip_userinfo

from . import folder as fld
from .hashing import parse_pointer
from .plan import RemoteFile

if TYPE_CHECKING:
    import git

_HELPER = ('!f() { test "$1" = get || exit 0; echo "username=${VLHUB_GIT_USERNAME}"; '
           'echo "password=${VLHUB_GIT_PASSWORD}"; }; f')
_STALE_LOCKS = ("index.lock", "config.lock", "HEAD.lock", "packed-refs.lock", "shallow.lock")


@dataclass(frozen=True)
class Remote:
    """A git remote: ``url`` holds no credentials; ``token`` is passed through the environment only.

    ``username`` and ``token`` are what the credential helper answers (http(s) remotes);
    ``default_branch`` is pushed to when the remote has no branch yet.
    """

    url: str
    username: str = ""
    token: str = field(default="", repr=False)
    default_branch: str = "main"


def check_url(url: str) -> str:
    """A remote URL without credentials in it, or a clear error.

    Args:
        url: ``http(s)://HOST/PATH``, ``ssh://...``, ``file://...``, a local path or ``user@host:path``.

    Returns:
        ``url`` unchanged.

    Raises:
        BadInput: not a git remote URL, or it carries a password or a token (exit code 2).
    """
    parts = urlsplit(url)
    if parts.scheme in ("http", "https"):
        if not parts.hostname:
            raise BadInput(f"{url!r} is not a git remote URL", "use https://HOST/OWNER/NAME.git")
        _, user, password = strip_userinfo(url)
        if password or looks_like_token(user):
            raise BadInput("the remote URL contains a password or token",
                           "remove it from the URL and set VLHUB_GIT_TOKEN (or the hub's token variable) instead")
        return url
    if parts.scheme in ("file", "ssh") or (not parts.scheme and (url.startswith("/") or "@" in url)):
        return url
    raise BadInput(f"{url!r} is not a git remote URL", "use https://HOST/OWNER/NAME.git, ssh:// or file://")


def require_tools() -> None:
    """git and git-lfs must be installed.

    Raises:
        MissingDependency: naming the missing tool and how to install it (exit code 2).
    """
    for tool, fix in (("git", "install git (apt-get install git)"),
                      ("git-lfs", "install Git LFS (apt-get install git-lfs), then run `git lfs install`")):
        if not shutil.which(tool):
            raise MissingDependency(f"{tool} is not installed", fix)


@dataclass
class RemoteState:
    """What the remote branch holds: its head commit and tree entries ``path -> (blob sha, lfs oid)``.

    ``links`` are the paths the remote stores as symbolic links (mode 120000): never "the
    same" as a local file, so that a publish replaces them with the file's content.
    ``sizes`` are the file sizes (an LFS pointer's object size for LFS files).
    """

    branch: str
    head: str | None = None
    entries: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    links: set[str] = field(default_factory=set)
    sizes: dict[str, int] = field(default_factory=dict)

    @property
    def oids(self) -> set[str]:
        """The LFS objects the remote's tree points to (not offered again)."""
        return {oid for _, oid in self.entries.values() if oid}

    def files(self) -> dict[str, RemoteFile]:
        """The tree as :func:`~vlhub.core.publishing.plan.plan_files` compares it."""
        return {path: RemoteFile(sha, oid, self.sizes.get(path), path in self.links)
                for path, (sha, oid) in self.entries.items()}


class Stage:
    """A staging ``GIT_DIR`` for one model folder and one remote.

    ``dir`` is ``$VLHUB_HOME/publish/<sha256(folder, url)[:16]>`` (the lock, the hash cache,
    logs); ``git_dir`` its ``git`` folder. One object serves a preflight and the publish of
    its plan: it is set up once (:meth:`setup`). Every method that runs git raises
    :class:`~vlhub.core.errors.VlhubError` with one redacted line (:func:`git_error`) on failure.

    Raises:
        MissingDependency: git or git-lfs is not installed.
        BadInput: the remote URL is not acceptable (:func:`check_url`).
    """

    def __init__(self, folder: Path, remote: Remote) -> None:
        require_tools()
        self.folder = Path(folder).resolve()
        self.remote = replace(remote, url=check_url(remote.url))
        remember(remote.token)
        key = hashlib.sha256(f"{self.folder}\n{self.remote.url}".encode()).hexdigest()[:16]
        self.dir = vlhub_home() / "publish" / key
        self.git_dir = self.dir / "git"
        self.dir.mkdir(parents=True, exist_ok=True)
        self._git: git.Git | None = None
        self._ready = False

    # ------------------------------------------------------------ plumbing
    def env(self) -> dict[str, str]:
        """The environment of every git and git-lfs child (credentials only as variables)."""
        env = {"GIT_DIR": str(self.git_dir), "GIT_WORK_TREE": str(self.folder), "GIT_TERMINAL_PROMPT": "0",
               "GIT_LFS_SKIP_SMUDGE": "1", "GIT_LITERAL_PATHSPECS": "1", "GCM_INTERACTIVE": "never",
               "GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "credential.helper", "GIT_CONFIG_VALUE_0": ""}
        if self.remote.token:
            env.update({"GIT_CONFIG_COUNT": "2", "GIT_CONFIG_KEY_1": "credential.helper",
                        "GIT_CONFIG_VALUE_1": _HELPER, "VLHUB_GIT_USERNAME": self.remote.username or "vlhub",
                        "VLHUB_GIT_PASSWORD": self.remote.token})
        return with_git_config(env)  # connect and read limits for git and git-lfs (vlhub.core.net)

    @property
    def git(self) -> "git.Git":
        if self._git is None:
            import git

            self._git = git.Git(str(self.dir))
            self._git.update_environment(**self.env())
            for name in ("GIT_ASKPASS", "SSH_ASKPASS", "GIT_TRACE", "GIT_CURL_VERBOSE", "GIT_TRACE_CURL"):
                self._git.update_environment(**{name: None})
        return self._git

    def run(self, *args: str, stdin: bytes | None = None, what: str = "") -> str:
        """Run ``git ARGS`` in the staging; failures become one redacted line."""
        import git

        try:
            if stdin is None:
                return self.git.execute(["git", *args], strip_newline_in_stdout=False)
            with tempfile.TemporaryFile() as handle:
                handle.write(stdin)
                handle.seek(0)
                return self.git.execute(["git", *args], istream=handle, strip_newline_in_stdout=False)
        except git.GitCommandError as exc:
            raise git_error(what or f"git {args[0]}", exc.stderr or str(exc), self.remote.url) from None

    def setup(self) -> None:
        """Create (or repair) the staging repository; remove locks a killed run left (once per object)."""
        if self._ready:
            return
        if not (self.git_dir / "HEAD").is_file():  # none yet, or a killed run's half-made one
            import git

            for stale in [self.git_dir, *self.dir.glob(".git-partial-*")]:
                shutil.rmtree(stale, ignore_errors=True)
            partial = Path(tempfile.mkdtemp(prefix=".git-partial-", dir=self.dir))
            git.Repo.init(partial, bare=True).config_writer().set_value("core", "bare", "false").release()
            os.replace(partial, self.git_dir)
        for name in _STALE_LOCKS:
            (self.git_dir / name).unlink(missing_ok=True)
        self.run("lfs", "install", "--local", "--skip-smudge")
        for key, value in (("lfs.locksverify", "false"), ("core.autocrlf", "false"), ("gc.auto", "0"),
                           ("lfs.concurrenttransfers", "4")):
            self.run("config", key, value)
        remotes = self.run("remote").split()
        self.run("remote", "set-url" if "origin" in remotes else "add", "origin", self.remote.url)
        info = self.git_dir / "info"
        info.mkdir(exist_ok=True)
        (info / "exclude").write_text("".join(f"/{d}/\n" for d in sorted(fld.SKIP_DIRS)) +
                                      "".join(f"{n}\n" for n in sorted(fld.SKIP_FILES)))
        shutil.rmtree(self.git_dir / "lfs" / "objects", ignore_errors=True)
        self._ready = True

    # ------------------------------------------------------------ remote
    def remote_state(self) -> RemoteState:
        """Ask the remote for its branches (checks URL and token), fetch the branch, read its tree.

        Returns:
            The branch to push (the remote's HEAD, else ``Remote.default_branch`` or its first
            branch), its head commit (``None`` for an empty remote) and its tree.
        """
        out = self.run("ls-remote", "--symref", "origin", "HEAD", "refs/heads/*", what="reading the remote")
        refs: dict[str, str] = {}
        branch = None
        for line in out.splitlines():
            left, _, name = line.partition("\t")
            if left.startswith("ref: ") and name == "HEAD":
                branch = left[5:].removeprefix("refs/heads/")
            else:
                refs[name] = left
        if branch is None or f"refs/heads/{branch}" not in refs:
            branch = self.remote.default_branch if f"refs/heads/{self.remote.default_branch}" in refs or not refs \
                else sorted(refs)[0].removeprefix("refs/heads/")
        state = RemoteState(branch, refs.get(f"refs/heads/{branch}"))
        if state.head:
            self.run("fetch", "-q", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
                     what="fetching the remote")
            state.entries = self._tree_entries(state.head, state.links, state.sizes)
        return state

    def tree(self, treeish: str) -> dict[str, tuple[str, str]]:
        """Every blob of a tree or commit: ``path -> (mode, sha)``."""
        found = {}
        for line in self.run("ls-tree", "-r", "-z", treeish).split("\0"):
            meta, _, path = line.partition("\t")
            fields = meta.split()
            if len(fields) == 3 and fields[1] == "blob":
                found[path] = (fields[0], fields[2])
        return found

    def _tree_entries(self, commit: str, links: set[str], sizes: dict[str, int]) -> dict[str, tuple[str, str | None]]:
        entries: dict[str, tuple[str, str | None]] = {}
        small: list[tuple[str, str]] = []
        for line in self.run("ls-tree", "-r", "-l", "-z", commit).split("\0"):
            if not line:
                continue
            meta, _, path = line.partition("\t")
            mode, kind, sha, size = meta.split()
            if kind == "blob":
                entries[path] = (sha, None)
                if size.isdigit():
                    sizes[path] = int(size)
                if mode == "120000":
                    links.add(path)
                    continue
                if size.isdigit() and int(size) < 1024:
                    small.append((path, sha))
        if small:
            data = self._cat_blobs([sha for _, sha in small])
            for path, sha in small:
                pointer = parse_pointer(data[sha])
                if pointer:
                    entries[path] = (sha, pointer[0])
                    sizes[path] = pointer[1]
        return entries

    def _cat_blobs(self, shas: list[str]) -> dict[str, bytes]:
        """Contents of small blobs, in one ``git cat-file --batch``."""
        import subprocess

        proc = subprocess.run(["git", "cat-file", "--batch"], input="".join(f"{s}\n" for s in shas).encode(),
                              capture_output=True, env={**os.environ, **self.env()}, check=True)
        out, pos, result = proc.stdout, 0, {}
        for sha in shas:
            header_end = out.index(b"\n", pos)
            size = int(out[pos:header_end].split()[2])
            result[sha] = out[header_end + 1:header_end + 1 + size]
            pos = header_end + 1 + size + 1
        return result

    def read_remote(self, state: RemoteState, path: str) -> bytes | None:
        """A small file of the remote branch, or ``None``."""
        entry = state.entries.get(path)
        return self._cat_blobs([entry[0]])[entry[0]] if entry and not entry[1] else None

    # ------------------------------------------------------------ attributes
    def lfs_paths(self, files: list[fld.LocalFile]) -> tuple[set[str], bytes]:
        """Which files git-lfs tracks (our rules plus the user's .gitattributes) and the .gitattributes to commit.

        Args:
            files: the scanned files (their ``lfs`` flag: our size rule).

        Returns:
            ``(paths whose filter is lfs, the .gitattributes content to commit)``: the user's
            lines first, then vlhub's patterns (:data:`~vlhub.core.publishing.folder.LFS_PATTERNS`
            and one line per big file) that are not there yet.
        """
        ours = [f"{p} filter=lfs diff=lfs merge=lfs -text" for p in fld.LFS_PATTERNS]
        ours += [f"/{_attr_path(f.path)} filter=lfs diff=lfs merge=lfs -text"
                 for f in files if f.lfs and not fld.is_lfs(f.path, 0)]
        user = next((f for f in files if f.path == ".gitattributes"), None)
        lines = user.source(self.folder).read_text(encoding="utf-8").splitlines() if user else []
        committed = "\n".join(lines + [line for line in ours if line not in lines]) + "\n"
        # check-attr must see what is committed, also when the folder's .gitattributes is a link
        (self.git_dir / "info" / "attributes").write_text(committed)
        out = self.run("check-attr", "--stdin", "-z", "filter", stdin="".join(f"{f.path}\0" for f in files).encode())
        parts = out.split("\0")
        lfs = {parts[i] for i in range(0, len(parts) - 2, 3) if parts[i + 2] == "lfs"}
        return lfs, committed.encode()

    # ------------------------------------------------------------ commit
    def build_tree(self, state: RemoteState, regular: dict[str, Path], pointers: dict[str, bytes],
                   extras: dict[str, bytes]) -> str:
        """The index = remote tree + the folder's files + generated files; returns the tree id.

        ``regular`` maps each small file's path in the repository to the file its content
        is read from (the resolved target of a link): every entry is a blob of that content
        with mode 100644, never a symbolic link (``git add`` would commit a link as a link).
        """
        self.run("symbolic-ref", "HEAD", f"refs/heads/{state.branch}")
        if state.head:  # read-tree, not reset: a refresh would run the LFS clean filter over the weights
            self.run("update-ref", f"refs/heads/{state.branch}", state.head)
            self.run("read-tree", state.head)
        else:
            self.run("read-tree", "--empty")
        blobs = {**pointers, **extras}
        sources = [(path, str(source)) for path, source in regular.items() if path not in blobs]
        sources += self._blob_files(blobs)
        if sources:
            ids = self.run("hash-object", "-w", "--no-filters", "--stdin-paths",
                           stdin="".join(f"{source}\n" for _, source in sources).encode(),
                           what="git hash-object").split()
            if len(ids) != len(sources):
                raise VlhubError(f"git hash-object returned {len(ids)} ids for {len(sources)} files",
                                 "report this bug; nothing was pushed")
            # --index-info replaces an entry the remote holds as a link (or a conflicting folder)
            records = "".join(f"100644 {sha}\t{path}\0" for (path, _), sha in zip(sources, ids))
            self.run("update-index", "-z", "--index-info", stdin=records.encode())
        tree = self.run("write-tree").strip()
        self._refuse_big_blobs(tree)
        return tree

    def _blob_files(self, blobs: dict[str, bytes]) -> list[tuple[str, str]]:
        """Write generated contents to temp files for ``hash-object --stdin-paths``: ``(path, temp file)``."""
        tmp = self.dir / "blobs"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        paths = []
        for i, (path, data) in enumerate(blobs.items()):
            (tmp / str(i)).write_bytes(data)
            paths.append((path, str(tmp / str(i))))
        return paths

    def verify(self, treeish: str, expected: dict[str, str], state: RemoteState) -> None:
        """The tree holds exactly the plan: each planned path a regular blob with the planned content,
        and nothing else but what the remote already held (a publish never deletes)."""
        tree = self.tree(treeish)
        wrong = []
        for path, sha in sorted(expected.items()):
            got = tree.get(path)
            if got is None:
                wrong.append(f"{path} missing")
            elif got[0] not in ("100644", "100755"):
                wrong.append(f"{path} has mode {got[0]}")
            elif got[1] != sha:
                wrong.append(f"{path} differs")
        for path, (_mode, sha) in sorted(tree.items()):
            if path not in expected and state.entries.get(path, (None,))[0] != sha:
                wrong.append(f"{path} was not planned")
        if wrong:
            shown = ", ".join(wrong[:8]) + (f" and {len(wrong) - 8} more" if len(wrong) > 8 else "")
            raise VlhubError(f"what {treeish[:12]} holds differs from what the preflight planned to send: {shown}",
                             "rerun the publish (a file may have changed during it); report this bug if it repeats")

    def _refuse_big_blobs(self, tree: str) -> None:
        for line in self.run("ls-tree", "-r", "-l", "-z", tree).split("\0"):
            meta, _, path = line.partition("\t")
            fields = meta.split()
            if len(fields) == 4 and fields[3].isdigit() and int(fields[3]) > fld.BIG_FILE:
                raise VlhubError(f"{path} would be committed as a plain git blob ({fields[3]} bytes), not through LFS",
                                 "report this bug; nothing was pushed")

    def commit(self, state: RemoteState, tree: str, message: str) -> str | None:
        """A new commit on top of the remote head, or ``None`` when the tree is unchanged."""
        if state.head and self.run("rev-parse", f"{state.head}^{{tree}}").strip() == tree:
            return None
        args = ["commit-tree", tree, "-m", message]
        if state.head:
            args += ["-p", state.head]
        commit = self.run(*args, what="git commit").strip()
        self.run("update-ref", f"refs/heads/{state.branch}", commit)
        self.run("symbolic-ref", "HEAD", f"refs/heads/{state.branch}")
        return commit

    def push(self, state: RemoteState, commit: str) -> None:
        """Push the commit; git-lfs's pre-push hook makes sure every LFS object is on the server."""
        self.run("push", "-q", "origin", f"{commit}:refs/heads/{state.branch}", what="git push")
        self.run("update-ref", f"refs/remotes/origin/{state.branch}", commit)

    def check_pushed(self, state: RemoteState, commit: str, expected: dict[str, str]) -> None:
        """After the push: the remote branch is at ``commit`` and its tree holds exactly the plan."""
        out = self.run("ls-remote", "origin", f"refs/heads/{state.branch}", what="reading the remote after the push")
        head = out.split("\t", 1)[0].strip() if out.strip() else ""
        if head != commit:
            raise VlhubError(f"after the push the remote branch {state.branch} is at {head[:12] or 'nothing'}, "
                             f"not at the pushed commit {commit[:12]}",
                             "someone pushed at the same time, or the server rewrote the push; rerun the publish")
        self.verify(commit, expected, state)

    def changed_paths(self, state: RemoteState, commit: str) -> list[str]:
        """The paths ``commit`` adds or changes against the remote head."""
        if not state.head:
            return [p for p in self.run("ls-tree", "-r", "--name-only", "-z", commit).split("\0") if p]
        return [p for p in self.run("diff-tree", "-r", "--name-only", "-z", state.head, commit).split("\0") if p]

    def commit_author(self) -> dict[str, str]:
        """Author and committer for the staging's commits: the user's git identity, else ``vlhub``."""
        env = {}
        for var, key in (("NAME", "user.name"), ("EMAIL", "user.email")):
            try:
                value = self.run("config", key).strip()
            except VlhubError:
                value = ""
            value = value or ("vlhub" if var == "NAME" else "vlhub@localhost")
            env[f"GIT_AUTHOR_{var}"] = env[f"GIT_COMMITTER_{var}"] = value
        return env

    def cleanup(self) -> None:
        """Drop the links into the model folder once the objects are on the server."""
        shutil.rmtree(self.git_dir / "lfs" / "objects", ignore_errors=True)
        shutil.rmtree(self.dir / "blobs", ignore_errors=True)
        for log in self.dir.glob("lfs-progress-*.log"):
            log.unlink(missing_ok=True)


def _attr_path(path: str) -> str:
    """A path as a .gitattributes pattern (spaces and specials escaped)."""
    return "".join(f"[{c}]" if c in " *?[]\\#!" else c for c in path)


def git_error(what: str, stderr: str, url: str) -> VlhubError:
    """One clear, redacted line for a failed git command.

    Args:
        what: the step (``git push``, ``reading the remote``).
        stderr: git's output (redacted here; its end is kept).
        url: the remote (redacted).

    Returns:
        The error to raise: a refused push, rejected credentials, no repository, or else the
        command's failure with ``--debug`` as the fix.
    """
    import re

    text = redact(" ".join(str(stderr).split()))
    low = text.lower()
    where = redact(url)
    if re.search(r"operation too slow|timed out|timeout was reached|low speed", low):
        return VlhubError("net.read_timeout", place=f"{where} ({what})")
    if re.search(r"failed to connect|connection refused|could not resolve host|couldn't connect", low):
        return VlhubError("net.unreachable", place=f"{where} ({what})")
    if "pre-receive hook declined" in low or "[remote rejected]" in low or "push refused" in low:
        return VlhubError(f"{what}: {where} refused the push ({text[-300:]})",
                          "read the server's message; a size limit means a file bypassed LFS")
    if re.search(r"authentication failed|\b40[13]\b|could not read (username|password)|invalid credentials"
                 r"|unauthorized|forbidden", low):
        return VlhubError(f"{what}: {where} rejected the credentials ({text[-200:]})",
                          "check the token variable (`vlhub doctor` shows which one is found) and its write access")
    if re.search(r"not found|\b404\b|does not appear to be a git repository", low):
        return VlhubError(f"{what}: no repository at {where} ({text[-200:]})",
                          "create the repository on the server first, or check the URL")
    return VlhubError(f"{what} failed for {where}: {text[-300:]}", "rerun with --debug; rerunning resumes")


def lfs_env(stage: Stage) -> dict[str, Any]:
    """The full environment for a git or git-lfs child started outside GitPython (credentials as variables)."""
    env = {**os.environ, **stage.env()}
    for name in ("GIT_ASKPASS", "SSH_ASKPASS", "GIT_TRACE", "GIT_CURL_VERBOSE", "GIT_TRACE_CURL"):
        env.pop(name, None)
    return env
