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
never as a link. Before the commit the server is asked (Git LFS batch API) whether it
holds every LFS object (:func:`vlhub.core.publishing.lfs.missing_objects`) and the tree is
compared with the plan; the remote branch is compared with the commit after ``git push``.
A refused push is reported by its cause (:func:`git_error`).

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
import json
import os
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from vlhub.core.errors import BadInput, MissingDependency, VlhubError
from vlhub.core.home import vlhub_home
from vlhub.core.net import with_git_config
from vlhub.core.secrets import looks_like_token, redact, remember, strip_userinfo

from . import folder as fld
from .hashing import HashCache, Hasher, parse_pointer
from .plan import RemoteFile

if TYPE_CHECKING:
    import git

_HELPER = ('!f() { test "$1" = get || exit 0; echo "username=${VLHUB_GIT_USERNAME}"; '
           'echo "password=${VLHUB_GIT_PASSWORD}"; }; f')
_STALE_LOCKS = ("index.lock", "config.lock", "HEAD.lock", "packed-refs.lock", "shallow.lock")
#: The staging's settings (``git config``); ``lfs.concurrenttransfers``: PUTs one ``git lfs push`` runs at once.
_CONFIG = (("lfs.locksverify", "false"), ("core.autocrlf", "false"), ("gc.auto", "0"),
           ("lfs.concurrenttransfers", "4"))


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
    its plan: it is set up once (:meth:`setup`), and the hashing its preflight starts
    (:meth:`start_hashing`) is what its publish consumes (``hasher``). Every method that runs git raises
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
        self._local: tuple[Path | None] | None = None
        self._endpoint: tuple[str, dict[str, str]] | None = None
        self._asking: threading.Thread | None = None
        self._trees: dict[str, dict[str, tuple[str, str, str]]] = {}
        self.hasher: Hasher | None = None

    def start_hashing(self, files: list[fld.LocalFile]) -> Hasher:
        """Start hashing, on background threads, the LFS files (``LocalFile.lfs``) the hash cache lacks.

        A preflight calls this first, so that the weights are hashed while it reads the
        remote; :func:`vlhub.core.publishing.lfs.send` takes the results (``self.hasher``).
        Calling it again (an earlier step of the preflight started it) adds to the same hashing.

        Args:
            files: the scanned files.

        Returns:
            The started :class:`~vlhub.core.publishing.hashing.Hasher` (also ``self.hasher``).
        """
        cache = HashCache(self.dir / "hashes.json")
        todo = [f for f in files if f.lfs and cache.get(f) is None]
        if self.hasher is None or self.hasher.cancelled:
            self.hasher = Hasher(self.folder)
        self.hasher.add(todo)  # a second call (an earlier step started it) keeps what is under way
        return self.hasher

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
        # the settings and ``origin`` are written once per staging, in this process (a marker records them).
        # No `git lfs install`: nothing here runs the LFS filters (blobs are written with --no-filters, the
        # push skips the hooks) and `git lfs push --object-id` needs neither.
        marker, wanted = self.git_dir / "vlhub-setup.json", json.dumps([self.remote.url, _CONFIG])
        if not marker.is_file() or marker.read_text(errors="replace") != wanted:
            from git.config import GitConfigParser

            with GitConfigParser(str(self.git_dir / "config"), read_only=False) as config:
                for key, value in _CONFIG:
                    config.set_value(*key.rsplit(".", 1), value)
                config.set_value('remote "origin"', "url", self.remote.url)
                config.set_value('remote "origin"', "fetch", "+refs/heads/*:refs/remotes/origin/*")
            marker.write_text(wanted)
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
            if not self._has_commit(state.head):  # a re-publish has it already (pushed from here, or fetched)
                self.run("fetch", "-q", "--no-tags", "origin", f"+refs/heads/{branch}:refs/remotes/origin/{branch}",
                         what="fetching the remote")
            state.entries = self._tree_entries(state.head, state.links, state.sizes)
        return state

    def _has_commit(self, sha: str) -> bool:
        """The staging holds commit ``sha`` (and so its trees and blobs: fetch and commit write them first)."""
        try:
            self.run("cat-file", "-e", f"{sha}^{{commit}}")
        except VlhubError:
            return False
        return True

    def tree(self, treeish: str) -> dict[str, tuple[str, str]]:
        """Every blob of a tree or commit: ``path -> (mode, sha)``."""
        return {path: (mode, sha) for path, (mode, sha, _size) in self._listing(treeish).items()}

    def _listing(self, treeish: str) -> dict[str, tuple[str, str, str]]:
        """``path -> (mode, sha, size)`` of every blob (``ls-tree -r -l``; one run per tree: git objects never change)."""
        if treeish not in self._trees:
            found = {}
            for line in self.run("ls-tree", "-r", "-l", "-z", treeish).split("\0"):
                meta, _, path = line.partition("\t")
                fields = meta.split()
                if len(fields) == 4 and fields[1] == "blob":
                    found[path] = (fields[0], fields[2], fields[3])
            self._trees[treeish] = found
        return self._trees[treeish]

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
    def lfs_paths(self, files: list[fld.LocalFile], remote: bytes | None = None) -> tuple[set[str], bytes]:
        """Which files git-lfs tracks (our rules plus the user's and the remote's .gitattributes) and the
        .gitattributes to commit.

        Every ``.gitattributes`` is handled as bytes, as git reads it (a comment in GBK or any
        other encoding is kept as it is).

        Args:
            files: the scanned files (their ``lfs`` flag: our size rule).
            remote: the remote branch's ``.gitattributes`` (a hub puts one in every new
                repository), merged with the others instead of replaced.

        Returns:
            ``(paths whose filter is lfs, the .gitattributes content to commit)``: the
            remote's file, then the lines of the folder's that it lacks, then vlhub's rules
            (:data:`~vlhub.core.publishing.folder.LFS_PATTERNS` and one line per other file
            over 10 MB, its path quoted as gitattributes(5) wants: :func:`attr_pattern`) that
            are not there yet (:func:`merge_attributes`).
        """
        ours = [f"{p} filter=lfs diff=lfs merge=lfs -text" for p in fld.LFS_PATTERNS]
        ours += [f"{attr_pattern(f.path)} filter=lfs diff=lfs merge=lfs -text"
                 for f in files if f.lfs and not fld.is_lfs(f.path, 0)]
        user = next((f for f in files if f.path == ".gitattributes"), None)
        committed = merge_attributes(remote or b"", user.source(self.folder).read_bytes() if user else b"",
                                     "\n".join(ours).encode())
        # check-attr must see what is committed, also when the folder's .gitattributes is a link
        (self.git_dir / "info" / "attributes").write_bytes(committed)
        out = self.run("check-attr", "--stdin", "-z", "filter", stdin="".join(f"{f.path}\0" for f in files).encode())
        parts = out.split("\0")
        lfs = {parts[i] for i in range(0, len(parts) - 2, 3) if parts[i + 2] == "lfs"}
        return lfs, committed

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
        for path, (_mode, _sha, size) in self._listing(tree).items():
            if size.isdigit() and int(size) > fld.BIG_FILE:
                raise VlhubError(f"{path} would be committed as a plain git blob ({size} bytes), not through LFS",
                                 "report this bug; nothing was pushed")

    def commit(self, state: RemoteState, tree: str, message: str) -> str | None:
        """A new commit on top of the remote head, or ``None`` when the tree is unchanged."""
        if state.head and self.run("rev-parse", f"{state.head}^{{tree}}").strip() == tree:
            return None
        args = ["commit-tree", tree, "-m", message]
        if state.head:
            args += ["-p", state.head]
        commit = self.run(*args, what="git commit").strip()
        if tree in self._trees:  # the commit's tree, listed already
            self._trees[commit] = self._trees[tree]
        self.run("update-ref", f"refs/heads/{state.branch}", commit)
        self.run("symbolic-ref", "HEAD", f"refs/heads/{state.branch}")
        return commit

    def push(self, state: RemoteState, commit: str) -> None:
        """Push the commit (its LFS objects were checked on the server before: :func:`.lfs.send`).

        git-lfs's pre-push hook is skipped (``--no-verify``): it would send objects again
        (through a hard link for a local remote) and it passes when the server rejects or
        loses them; the batch API check before the commit replaces it.
        """
        self.run("push", "-q", "--no-verify", "origin", f"{commit}:refs/heads/{state.branch}", what="git push")
        self.run("update-ref", f"refs/remotes/origin/{state.branch}", commit)

    def check_pushed(self, state: RemoteState, commit: str, expected: dict[str, str]) -> None:
        """After the push: the remote branch is at ``commit`` and its tree holds exactly the plan."""
        out = self.run("ls-remote", "origin", f"refs/heads/{state.branch}", what="reading the remote after the push")
        head = out.split("\t", 1)[0].strip() if out.strip() else ""
        if head != commit:
            raise VlhubError(f"{MOVED} (after the push, {state.branch} on {redact(self.remote.url)} is at "
                             f"{head[:12] or 'nothing'}, not at the pushed commit {commit[:12]})",
                             "rerun the publish (it plans against the branch as it is now)")
        self.verify(commit, expected, state)

    def changed_paths(self, state: RemoteState, commit: str) -> list[str]:
        """The paths ``commit`` adds or changes against the remote head."""
        if not state.head:
            return list(self._listing(commit))
        return [p for p in self.run("diff-tree", "-r", "--name-only", "-z", state.head, commit).split("\0") if p]

    def commit_author(self) -> dict[str, str]:
        """Author and committer for the staging's commits: the user's git identity, else ``vlhub``."""
        try:  # one run for both (exit 1 when neither is set)
            out = self.run("config", "--get-regexp", r"^user\.(name|email)$")
        except VlhubError:
            out = ""
        found = dict(line.partition(" ")[::2] for line in out.splitlines())
        env = {}
        for var, key in (("NAME", "user.name"), ("EMAIL", "user.email")):
            value = found.get(key, "").strip() or ("vlhub" if var == "NAME" else "vlhub@localhost")
            env[f"GIT_AUTHOR_{var}"] = env[f"GIT_COMMITTER_{var}"] = value
        return env

    # ------------------------------------------------------------ LFS server
    def local_remote(self) -> Path | None:
        """The git directory of a local remote (``file://`` URL or a path), else ``None`` (asked once).

        Its LFS objects live in ``GIT_DIR/lfs/objects`` (where git-lfs's local transfer puts them).
        """
        if self._local is None:
            parts = urlsplit(self.remote.url)
            path = unquote(parts.path) if parts.scheme == "file" else self.remote.url if not parts.scheme \
                and self.remote.url.startswith("/") else ""
            self._local = (_git_dir_of(Path(path)),) if path else (None,)
        return self._local[0]

    def lfs_endpoint(self) -> tuple[str, dict[str, str]]:
        """The Git LFS API git-lfs uses for ``origin`` (``git lfs env``) and the headers to reach it.

        http(s): the credential helper's user and token as Basic auth. ssh: the ``href`` and
        ``header`` that ``ssh HOST git-lfs-authenticate PATH download`` answers (the Git LFS
        SSH authentication of the server-discovery spec). Asked once per staging object
        (:meth:`ask_lfs_endpoint` may have asked already, on a thread).
        """
        if self._asking is not None:
            self._asking.join()
            self._asking = None
        if self._endpoint is None:
            self._endpoint = self._ask_endpoint()
        return self._endpoint

    def ask_lfs_endpoint(self) -> None:
        """Start asking for :meth:`lfs_endpoint` on a thread (it is needed after the upload; a failure is
        raised by :meth:`lfs_endpoint`, which asks again). Nothing to ask for a local remote."""
        if self._endpoint is not None or self._asking is not None or self.local_remote() is not None:
            return

        def ask() -> None:
            try:
                self._endpoint = self._ask_endpoint()
            except Exception:  # asked again by lfs_endpoint, which raises it to the publish
                pass

        self._asking = threading.Thread(target=ask, name="vlhub-lfs-env", daemon=True)
        self._asking.start()

    def _ask_endpoint(self) -> tuple[str, dict[str, str]]:
        from .lfs import basic_auth

        env = self.run("lfs", "env", what="git lfs env")
        endpoint = next((line[9:].split(" (auth=", 1)[0] for line in env.splitlines()
                         if line.startswith("Endpoint=")), "")
        if not endpoint:
            raise VlhubError(f"git lfs env names no LFS endpoint for {redact(self.remote.url)}",
                             "check the remote URL (and any lfs.url setting in the folder's .lfsconfig)")
        if urlsplit(self.remote.url).scheme in ("http", "https") or not _ssh_target(self.remote.url):
            return endpoint, basic_auth(self.remote.username, self.remote.token)
        return _ssh_authenticate(self.remote.url, lfs_env(self))

    def cleanup(self) -> None:
        """Drop the links into the model folder once the objects are on the server."""
        shutil.rmtree(self.git_dir / "lfs" / "objects", ignore_errors=True)
        shutil.rmtree(self.dir / "blobs", ignore_errors=True)
        for log in self.dir.glob("lfs-push-*.err"):
            log.unlink(missing_ok=True)


#: Characters wildmatch treats as glob syntax: escaped with a backslash in a path pattern.
_GLOB = frozenset("*?[]\\")
#: C-style escapes for a quoted gitattributes pattern (gitattributes(5): "Patterns that begin with a
#: double quote are quoted in C style"): each character of the first string is written as a backslash
#: and the character at the same place in the second; other control characters as octal.
_C_SPECIAL, _C_LETTERS = '\\"\a\b\f\n\r\t\v', '\\"abfnrtv'


def _c_escape(c: str) -> str:
    i = _C_SPECIAL.find(c)
    return f"\\{_C_LETTERS[i]}" if i >= 0 else f"\\{ord(c):03o}" if ord(c) < 32 or ord(c) == 127 else c


def attr_pattern(path: str) -> str:
    """The gitattributes pattern that matches exactly one path of the repository.

    Anchored with a leading ``/``; glob specials (``* ? [ ] \\``) escaped with a backslash so
    that wildmatch takes them literally; when the pattern holds a space, a double quote or a
    control character, it is written C-style quoted, which git unquotes before matching
    (``training log.txt`` gives ``"/training log.txt"``, ``a[1].dat`` gives ``/a\\[1\\].dat``).
    ``#``, ``!`` and a leading ``"`` only matter at the start of a line, where the ``/`` is. Non-ASCII names are written
    as their UTF-8 bytes (git compares bytes).
    """
    escaped = "/" + "".join(f"\\{c}" if c in _GLOB else c for c in path)
    if not any(c.isspace() or c == '"' or ord(c) < 32 or ord(c) == 127 for c in escaped):
        return escaped
    return '"' + "".join(_c_escape(c) for c in escaped) + '"'


def merge_attributes(*parts: bytes) -> bytes:
    """Several ``.gitattributes`` merged as bytes: the first whole, then each later line not already there.

    Lines are compared without trailing whitespace (CRLF files merge with LF ones); blank
    lines of later parts are dropped. A later line wins in gitattributes, so the order is
    the remote's file, the folder's, then vlhub's rules. Merging a merge again changes
    nothing (a republish commits the same file).
    """
    lines: list[bytes] = []
    seen: set[bytes] = set()
    for i, part in enumerate(parts):
        for line in part.splitlines():
            key = line.rstrip()
            if i == 0 or (key and key not in seen):
                lines.append(line.rstrip(b"\r"))
                seen.add(key)
    while lines and not lines[-1].strip():
        lines.pop()
    return b"\n".join(lines) + b"\n" if lines else b""


def _git_dir_of(path: Path) -> Path:
    """The git directory of a local repository (bare: itself; else its ``.git``), as git-lfs finds it."""
    if (path / "HEAD").is_file() and (path / "objects").is_dir():
        return path
    dot = path / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree or submodule: "gitdir: PATH"
        text = dot.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            target = Path(text[7:].strip())
            return target if target.is_absolute() else (path / target).resolve()
    return path


def _ssh_target(url: str) -> tuple[str, str, str] | None:
    """``(user@host, port, path)`` of an ssh remote (``ssh://`` or ``user@host:path``), else ``None``."""
    parts = urlsplit(url)
    if parts.scheme in ("ssh", "git+ssh"):
        host = f"{parts.username}@{parts.hostname}" if parts.username else (parts.hostname or "")
        return host, str(parts.port or ""), unquote(parts.path)
    if not parts.scheme and "@" in url and ":" in url and not url.startswith("/"):
        host, _, path = url.partition(":")
        return host, "", path
    return None


def _ssh_authenticate(url: str, env: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """``ssh HOST git-lfs-authenticate PATH download``: the LFS API's ``href`` and ``header`` for an ssh remote."""
    import json
    import shlex
    import subprocess

    host, port, path = _ssh_target(url) or ("", "", "")
    ssh = shlex.split(env.get("GIT_SSH_COMMAND") or "") or [env.get("GIT_SSH") or "ssh"]
    argv = [*ssh, *(["-p", port] if port else []), host, f"git-lfs-authenticate {shlex.quote(path)} download"]
    try:
        proc = subprocess.run(argv, env=env, capture_output=True, timeout=120)
        answer = json.loads(proc.stdout.decode("utf-8")) if proc.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        answer, proc = None, None
        detail = str(exc)
    else:
        detail = proc.stderr.decode(errors="replace").strip()[-200:]
    if not isinstance(answer, dict) or not answer.get("href"):
        raise VlhubError(f"cannot ask the LFS server of {redact(url)} which objects it holds: git-lfs-authenticate "
                         f"over ssh failed ({redact(detail)}); nothing was committed",
                         "publish over https (git:https://...) with VLHUB_GIT_TOKEN, or check the ssh access")
    headers = {str(k): str(v) for k, v in (answer.get("header") or {}).items()}
    for value in headers.values():
        remember(value.split(" ", 1)[-1])
    return str(answer["href"]), headers


#: A push that lost a race: another push moved the branch between our read and our push.
MOVED = "the remote branch moved while publishing (someone else pushed)"
_RACE = re.compile(r"non-fast-forward|fetch first|cannot lock ref|reference already exists|stale info"
                   r"|failed to update ref|incorrect old value|failed to lock|is at [0-9a-f]+ but expected")
_CHECKED_OUT = re.compile(r"branch is currently checked out|refusing to update checked out branch")
_TOO_BIG = re.compile(r"larger than|too large|exceeds|size limit|file size|gh001|track it with git lfs|over the limit")
_REFUSED = re.compile(r"pre-receive hook declined|\[remote rejected\]|push refused|! \[rejected\]|\[rejected\]")


def _server_message(stderr: str) -> str:
    """What the server said (its ``remote:`` lines and the refused refs), redacted, on one line."""
    lines = [line.strip() for line in str(stderr).splitlines()]
    said = [line[7:].strip() for line in lines if line.startswith("remote:") and line[7:].strip()]
    said += [line for line in lines if "[rejected]" in line or "[remote rejected]" in line]
    return redact(" ".join(" ".join(said or lines).split()))[-400:]


def git_error(what: str, stderr: str, url: str) -> VlhubError:
    """One clear, redacted line for a failed git command, with the fix that matches the failure.

    Args:
        what: the step (``git push``, ``reading the remote``).
        stderr: git's output (redacted here; its end is kept).
        url: the remote (redacted).

    Returns:
        The error to raise (exit code 1), first match wins: a timeout or an unreachable host;
        a full disk (the staging's, or the server's); a refused push, by its cause: a
        non-bare remote with the branch checked out (push to a bare repository), a race with
        another push (:data:`MOVED`: rerun), a size limit (a file must go through LFS), any
        other refusal (the server's message, "read the server's message above"); rejected
        credentials; no repository; else the command's failure with ``--debug`` as the fix.
    """
    text = redact(" ".join(str(stderr).split()))
    low = text.lower()
    where = redact(url)
    if re.search(r"operation too slow|timed out|timeout was reached|low speed", low):
        return VlhubError("net.read_timeout", place=f"{where} ({what})")
    if re.search(r"failed to connect|connection refused|could not resolve host|couldn't connect", low):
        return VlhubError("net.unreachable", place=f"{where} ({what})")
    if re.search(r"no space left on device|disk quota exceeded", low):
        if re.search(r"remote:[^!]*(no space left|quota)|remote unpack failed", low):
            return VlhubError(f"{what}: the server of {where} is out of disk space ({_server_message(stderr)})",
                              "free space on the server (or ask its admin), then rerun the publish")
        staging = vlhub_home() / "publish"
        return VlhubError("home.full", home=str(vlhub_home()), reason="No space left on device",
                          path=f"{staging}, {what}")
    if _CHECKED_OUT.search(low):
        return VlhubError(f"{what}: the remote {where} is a non-bare repository with the branch checked out, "
                          "and git refuses to update it",
                          "push to a bare repository (`git init --bare NEW.git`, or `git clone --bare` of this one) "
                          "and publish to that")
    if _RACE.search(low):
        return VlhubError(f"{what}: {MOVED}: {where} refused the push ({_server_message(stderr)})",
                          "rerun the publish (it plans against the branch as it is now)")
    if _REFUSED.search(low) or (what == "git push" and re.search(r"\brejected\b|\bdeclined\b", low)):
        if _TOO_BIG.search(low):
            return VlhubError(f"{what}: {where} refused the push: a file is over the server's size limit "
                              f"({_server_message(stderr)})",
                              "files over the limit must go through Git LFS: vlhub sends weights and every file "
                              "over 10 MB through LFS; add a filter=lfs rule for the named file to the folder's "
                              ".gitattributes, then rerun")
        return VlhubError(f"{what}: {where} refused the push: {_server_message(stderr)}",
                          "read the server's message above")
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
