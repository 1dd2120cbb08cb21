"""A local stand-in for the Hugging Face Hub and ModelScope HTTP APIs, for driving their REAL SDKs in tests.

    with HubApiServer(tmp_path / "hub", token="secret", user="tester") as srv:
        env = srv.env()                      # the variables below, ready for a subprocess
        ...                                  # HfApi().upload_folder(...) / HubApi().upload_folder(...)
        srv.files("tester/m")                # {path: bytes}, LFS pointers resolved
        srv.is_lfs("tester/m", "model.safetensors"), srv.commits("tester/m"), srv.lfs_bytes_uploaded

One werkzeug WSGI app on 127.0.0.1:<free port>, in a background thread. Every repo is a bare git repo
(``root/<org>/<name>.git``; datasets under ``root/datasets/``, spaces under ``root/spaces/``); every commit
request becomes a real git commit made with plumbing (hash-object, update-index on a temp index,
write-tree, commit-tree, update-ref). LFS files are pointer blobs in the tree; their content lives in
``root/lfs/<oid[0:2]>/<oid[2:4]>/<oid>`` (one store shared by all repos, so identical content is
never uploaded twice). The bare repos are also served over git smart HTTP (``git http-backend``) with
the LFS batch API, so ``git clone`` + ``git lfs pull`` (and push) work against the same URLs.

Environment for the SDKs (``srv.env()`` returns all of them):

Hugging Face -- huggingface_hub 2.x:
  HF_ENDPOINT=srv.url        read ONCE at import (``constants.ENDPOINT``); ``HfApi(endpoint=srv.url)`` overrides it.
  HF_HUB_DISABLE_XET=1       read ONCE at import. Required whenever ``hf_xet`` is installed: otherwise
                             ``upload_folder`` takes the Xet-only pipeline (``_upload_pipeline``), which this
                             server does not speak. It cannot be passed per call.
  HF_TOKEN=token             read per call (``get_token()``); or ``HfApi(token=...)``.
  HF_HUB_DISABLE_TELEMETRY=1, HF_HUB_DISABLE_PROGRESS_BARS=1   quieter, optional; HF_HUB_OFFLINE=0 in case
                             the caller's environment has it on.
  So: set them before ``import huggingface_hub`` -- the robust way is to run the SDK in a subprocess
  with ``env={**os.environ, **srv.env()}``. In-process works only if the process imported
  huggingface_hub after setting HF_HUB_DISABLE_XET=1 (and then pass ``HfApi(endpoint=srv.url)``).

ModelScope -- modelscope 1.40 (``modelscope.hub.api.HubApi`` is a shim over ``modelscope_hub``):
  MODELSCOPE_ENDPOINT=srv.url     read when the process-wide ``HubConfig`` is first built (first
                                  ``HubApi()``); ``HubApi(endpoint=..., token=...)`` overrides per instance.
                                  (MODELSCOPE_DOMAIN is the deprecated form; it forces https:// on bare hosts.)
  MODELSCOPE_API_TOKEN=token      same life cycle. The token travels as ``Authorization: Bearer`` AND as
                                  cookie ``m_session_id`` (both accepted here).
  MODELSCOPE_UPLOAD_CACHE_ENABLED=0   read at import; otherwise ``upload_folder`` writes a resume cache
                                  ``.ms_upload_cache`` INTO the uploaded folder and skips files it
                                  remembers as committed (``use_cache=False`` per call does the same).
  MODELSCOPE_CACHE / MODELSCOPE_HOME  point them into a temp dir to keep ~/.cache and ~/.modelscope clean.
  In-process use works with ``HubApi(endpoint=srv.url, token=...)``; env-only configuration is reliable
  only in a fresh process.
Both: NO_PROXY/no_proxy=127.0.0.1,localhost so an outer HTTP(S)_PROXY cannot swallow the requests.

Also served: HF ``/api/{models,datasets,spaces}/{id}[/revision/{rev}]``, ``/tree/``, ``/paths-info/``,
``/api/repos/delete``, ``/api/validate-yaml`` (the SDK posts README.md front matter there before any
commit that carries one; bad YAML -> 400 -> the SDK's ValueError), ``create_pr`` commits (``refs/pr/N``), ``/{id}/resolve/{rev}/{path}`` (so
``snapshot_download``/``hf_hub_download`` work); ModelScope ``/api/v1/login``, ``/openapi/v1/users/me``
(whoami), ``GET /api/v1/models/{id}``, ``/repo/files`` (list_repo_files), ``/revisions``, dataset creation.
Not served: Xet (``hf_xet``) uploads, ModelScope downloads, Spaces runtimes, discussions.

Hub rules mimicked: HF repos start with an "initial commit" holding the Hub's default ``.gitattributes``
on ``main`` (ModelScope: same, on ``master``). HF preupload answers ``lfs`` for paths matched by a
``filter=lfs`` rule of the revision's ``.gitattributes``, for files over 10 MiB and for binary samples
(a NUL byte), ``regular`` otherwise, with ``oid`` of the existing file (sha256 for LFS, git sha1 else) so
the SDK can drop unchanged files, and ``shouldIgnore`` from ``gitIgnore``/the repo's ``.gitignore``.
ModelScope clients decide LFS themselves. A committed LFS path not matched by ``.gitattributes`` gets its
own ``filter=lfs`` line added in the same commit. An invalid token gets 401 everywhere (HF: body and
``X-Error-Message`` "Invalid credentials in Authorization header", as the Hub sends; ModelScope: the
legacy ``{"Code", "Message", "Success": false}`` envelope); a missing token is allowed for reads only.

Who may write where, as the hubs answer it. The token's user may write to its own namespace and to each
of ``orgs`` (a list: role "write" in each; or ``{org: roleInOrg}``, HF's roles ``admin``/``write``/
``contributor``/``read``; a ``read`` member may not write). ``token_role`` is the role HF's ``whoami-v2``
reports in ``auth.accessToken.role``: ``write`` (default), ``read`` (every write answers 403), or
``fineGrained`` with ``token_scopes={entity: [permissions]}`` (an entity is a user or org name, or a repo id
``org/name``; writing needs ``repo.write`` on the namespace or the repo), reported as
``auth.accessToken.fineGrained.scoped[{"entity": {"_id", "type", "name"}, "permissions"}]``. A refused write
is 403 with the Hub's "You don't have the rights to ..." message (ModelScope: its ``Code``/``Message``
envelope, which the SDK raises as ``PermissionDeniedError``). ModelScope's ``/openapi/v1/users/me`` reports
the user only (as the SDK's ``UserInfo`` reads it: no organisations).

Visibility: a repo created with HF ``private``/``visibility: "private"`` or ModelScope ``Visibility: 1``
is private (``srv.set_private(repo_id, True)`` for a test's existing repo); HF ``/api/models/{id}``
reports ``private``, ModelScope ``/api/v1/models/{id}`` its ``Visibility`` (1 private, 5 public); HF
``PUT /api/{type}s/{id}/settings`` (``update_repo_settings``) changes it. A private repo answers an
anonymous read 401 "Repository not found" (``X-Error-Code: RepoNotFound``), as the Hub does.

Failure switches (attributes, may be changed while running): ``reject_token`` (every request 401),
``fail_commit_once`` (next commit answers 500), ``drop_lfs_upload_after=N`` (the next LFS PUT is cut off
after N body bytes, once), ``srv.fail(status, path_regex, times=1, method=None)`` (the next matching
requests answer ``status`` in the hub's error format: 401/403/404/5xx for the SDKs' error paths).
``srv.requests`` records ``(method, path, status)`` without query strings, so tokens and URL signatures
never land in it.
"""
from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable
from urllib.parse import quote, unquote

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

__all__ = ["HubApiServer", "GitRepo", "HF_DEFAULT_GITATTRIBUTES", "LFS_SPEC", "lfs_pointer", "parse_lfs_pointer"]

LFS_SPEC = "https://git-lfs.github.com/spec/v1"
ZERO_OID = "0" * 40
LFS_SIZE_THRESHOLD = 10 * 1024 * 1024
_LFS_RULE = " filter=lfs diff=lfs merge=lfs -text"
_HF_LFS_GLOBS = (
    "*.7z *.arrow *.bin *.bz2 *.ckpt *.ftz *.gz *.h5 *.joblib *.lfs.* *.mlmodel *.model *.msgpack *.npy *.npz "
    "*.onnx *.ot *.parquet *.pb *.pickle *.pkl *.pt *.pth *.rar *.safetensors saved_model/**/* *.tar.* *.tar "
    "*.tflite *.tgz *.wasm *.xz *.zip *.zst *tfevents*"
).split()
#: The ``.gitattributes`` the Hugging Face Hub puts in the initial commit of a new model repo.
HF_DEFAULT_GITATTRIBUTES = "".join(f"{glob}{_LFS_RULE}\n" for glob in _HF_LFS_GLOBS)
_REPO_TYPE_DIRS = {"model": "", "dataset": "datasets", "space": "spaces"}
_PLURAL = {"models": "model", "datasets": "dataset", "spaces": "space"}
_JSON = "application/json"
_LFS_JSON = "application/vnd.git-lfs+json"


class HubError(Exception):
    """An HTTP error answer: status, message and optional extra headers/body fields."""

    def __init__(self, status: int, message: str, *, code: str | None = None, extra: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.code, self.extra = status, message, code, extra or {}


@dataclass
class TreeEntry:
    """One file of a commit's tree."""

    path: str
    mode: str
    sha: str
    size: int


# --------------------------------------------------------------------------------------------- git storage
def _git(args: list[str], cwd: Path, *, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    """Run git in ``cwd`` (a bare repo) and return stdout; raise on failure."""
    full_env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    proc = subprocess.run(["git", *args], cwd=cwd, input=input, capture_output=True, env=full_env)
    if proc.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
    return proc.stdout


def lfs_pointer(oid: str, size: int) -> bytes:
    """The git-lfs pointer text for an object."""
    return f"version {LFS_SPEC}\noid sha256:{oid}\nsize {size}\n".encode()


def parse_lfs_pointer(data: bytes) -> tuple[str, int] | None:
    """``(oid, size)`` when ``data`` is an LFS pointer, else None."""
    if len(data) > 1024 or not data.startswith(b"version https://git-lfs"):
        return None
    fields = dict(line.split(" ", 1) for line in data.decode(errors="replace").splitlines() if " " in line)
    oid = fields.get("oid", "")
    if not oid.startswith("sha256:") or not fields.get("size", "").isdigit():
        return None
    return oid[len("sha256:"):], int(fields["size"])


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """Translate a gitattributes/gitignore glob (with ``**``) into a regex over full paths."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("/**", i):
            out, i = out + "/.*", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def glob_match(pattern: str, path: str) -> bool:
    """gitattributes-style match: a pattern without '/' matches the basename, else the whole path."""
    pattern = pattern.replace("[[:space:]]", " ")
    if pattern.endswith("/"):
        return path.startswith(pattern.lstrip("/"))
    if "/" not in pattern:
        return fnmatch.fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    return bool(_glob_regex(pattern.lstrip("/")).match(path))


def lfs_patterns(gitattributes: str) -> list[str]:
    """Patterns that carry ``filter=lfs`` in a ``.gitattributes`` text."""
    out = []
    for line in gitattributes.splitlines():
        parts = line.split()
        if parts and not parts[0].startswith("#") and "filter=lfs" in parts[1:]:
            out.append(parts[0])
    return out


def ignore_match(gitignore: str, path: str) -> bool:
    """Whether ``path`` is ignored by a ``.gitignore`` text (last matching rule wins; '!' negates)."""
    ignored = False
    for line in gitignore.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pat = line[1:] if negate else line
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        hit = any(glob_match(pat, p) for p in prefixes)
        if hit:
            ignored = not negate
    return ignored


class GitRepo:
    """A bare repository on disk, written only through plumbing."""

    def __init__(self, path: Path):
        self.path = path
        self.lock = threading.Lock()

    def git(self, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
        """Run one git command in this repository."""
        return _git(list(args), self.path, input=input, env=env)

    def default_branch(self) -> str:
        """The branch HEAD points at."""
        return self.git("symbolic-ref", "--short", "HEAD").decode().strip()

    def resolve(self, rev: str | None) -> str | None:
        """Commit sha of a branch, tag, ``refs/...`` name or (abbreviated) sha; None when unknown."""
        rev = rev or self.default_branch()
        for cand in (f"refs/heads/{rev}", f"refs/tags/{rev}", rev):
            try:
                return self.git("rev-parse", "--verify", "--quiet", f"{cand}^{{commit}}").decode().strip()
            except RuntimeError:
                continue
        return None

    def tree(self, commit: str | None) -> dict[str, TreeEntry]:
        """All files of a commit (recursive), by path."""
        if commit is None:
            return {}
        out = self.git("ls-tree", "-r", "-z", "--long", commit)
        entries: dict[str, TreeEntry] = {}
        for rec in out.split(b"\0"):
            if not rec:
                continue
            meta, path = rec.split(b"\t", 1)
            mode, _type, sha, size = meta.split()
            entries[path.decode()] = TreeEntry(path.decode(), mode.decode(), sha.decode(),
                                               int(size) if size != b"-" else 0)
        return entries

    def read_blobs(self, shas: Iterable[str]) -> dict[str, bytes]:
        """Contents of blobs, via one ``git cat-file --batch``."""
        shas = list(dict.fromkeys(shas))
        if not shas:
            return {}
        out = self.git("cat-file", "--batch", input="".join(f"{s}\n" for s in shas).encode())
        result, pos = {}, 0
        for sha in shas:
            header_end = out.index(b"\n", pos)
            _sha, _type, size = out[pos:header_end].split()
            start = header_end + 1
            result[sha] = out[start:start + int(size)]
            pos = start + int(size) + 1
        return result

    def hash_blob(self, data: bytes) -> str:
        """Write a blob object and return its sha."""
        return self.git("hash-object", "-w", "--stdin", input=data).decode().strip()

    def commit(self, branch: str, files: dict[str, tuple[str, str]], message: str, parent: str | None,
               author: str, email: str) -> str:
        """Write ``files`` ({path: (mode, blob sha)}) as the full tree of a new commit on ``branch``."""
        with tempfile.TemporaryDirectory() as tmp:
            env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
            info = "".join(f"{mode} {sha}\t{path}\n" for path, (mode, sha) in sorted(files.items()))
            self.git("update-index", "--add", "--index-info", input=info.encode(), env=env)
            tree = self.git("write-tree", env=env).decode().strip()
        who = {"GIT_AUTHOR_NAME": author, "GIT_AUTHOR_EMAIL": email,
               "GIT_COMMITTER_NAME": author, "GIT_COMMITTER_EMAIL": email}
        args = ["commit-tree", tree] + (["-p", parent] if parent else [])
        sha = self.git(*args, input=message.encode(), env=who).decode().strip()
        ref = branch if branch.startswith("refs/") else f"refs/heads/{branch}"
        self.git("update-ref", ref, sha, parent or ZERO_OID)
        return sha


@dataclass
class Op:
    """One file operation of a commit request."""

    kind: str  # "file" | "lfs" | "delete" | "delete_folder"
    path: str
    data: bytes = b""
    oid: str = ""
    size: int = 0


# --------------------------------------------------------------------------------------------- the server
class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr (``srv.requests`` has it)."""

    def log_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: D102
        pass

    def log(self, type: str, message: str, *args: Any) -> None:  # noqa: A002, D102
        if type == "error" and os.environ.get("HUB_API_SERVER_DEBUG"):
            super().log(type, message, *args)


class HubApiServer:
    """Hugging Face + ModelScope hub APIs over local bare git repos; see the module docstring."""

    def __init__(self, root: Path | str, token: str = "secret", user: str = "tester", *,
                 orgs: Iterable[str] | dict[str, str] = (), email: str | None = None, reject_token: bool = False,
                 fail_commit_once: bool = False, drop_lfs_upload_after: int | None = None,
                 lfs_threshold: int = LFS_SIZE_THRESHOLD, token_role: str = "write",
                 token_scopes: dict[str, Iterable[str]] | None = None):
        self.root = Path(root).resolve()
        self.token, self.user = token, user
        #: organisation -> the user's role in it (HF ``roleInOrg``)
        self.orgs: dict[str, str] = dict(orgs) if isinstance(orgs, dict) else {o: "write" for o in orgs}
        self.token_role = token_role
        self.token_scopes = {k: list(v) for k, v in (token_scopes or {}).items()}
        #: ``[method or None, compiled path regex, status, message, times left]`` (:meth:`fail`)
        self.failures: list[list[Any]] = []
        self.email = email or f"{user}@users.noreply.invalid"
        self.reject_token = reject_token
        self.fail_commit_once = fail_commit_once
        self.drop_lfs_upload_after = drop_lfs_upload_after
        self.lfs_threshold = lfs_threshold
        #: (method, path, status) of every request, in order; no query strings, so no tokens or signatures.
        self.requests: list[tuple[str, str, int]] = []
        #: Body bytes received by the LFS upload endpoint (complete or not).
        self.lfs_bytes_uploaded = 0
        #: Number of LFS objects stored by uploads.
        self.lfs_objects_uploaded = 0
        self._secret = secrets.token_bytes(16)
        self._repos: dict[Path, GitRepo] = {}
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # ---------------------------------------------------------------- life cycle
    def start(self) -> "HubApiServer":
        """Bind 127.0.0.1 on a free port and serve in a daemon thread."""
        (self.root / "lfs").mkdir(parents=True, exist_ok=True)
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="hub-api-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "HubApiServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        """Environment variables that point both SDKs at this server (see the module docstring)."""
        return {
            "HF_ENDPOINT": self.url, "HF_HUB_DISABLE_XET": "1", "HF_TOKEN": self.token,
            "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "HF_HUB_OFFLINE": "0", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
            "MODELSCOPE_ENDPOINT": self.url, "MODELSCOPE_API_TOKEN": self.token,
            "MODELSCOPE_UPLOAD_CACHE_ENABLED": "0",
        }

    # ---------------------------------------------------------------- verification helpers
    def repo_path(self, repo_id: str, repo_type: str = "model") -> Path:
        """Where the bare repository of ``repo_id`` lives."""
        org, name = self._split_id(repo_id)
        sub = _REPO_TYPE_DIRS[repo_type]
        return (self.root / sub / org / f"{name}.git") if sub else (self.root / org / f"{name}.git")

    def repo(self, repo_id: str, repo_type: str = "model") -> GitRepo:
        """The :class:`GitRepo` of an existing repository (KeyError if absent)."""
        path = self.repo_path(repo_id, repo_type)
        with self._lock:
            if path not in self._repos:
                if not (path / "HEAD").exists():
                    raise KeyError(f"no {repo_type} repo {repo_id}")
                self._repos[path] = GitRepo(path)
            return self._repos[path]

    def exists(self, repo_id: str, repo_type: str = "model") -> bool:
        """Whether the repository exists."""
        return (self.repo_path(repo_id, repo_type) / "HEAD").exists()

    def is_private(self, repo_id: str, repo_type: str = "model") -> bool:
        """Whether an existing repository is private (kept as ``hub.private`` in its git config)."""
        try:
            return self.repo(repo_id, repo_type).git("config", "--get", "hub.private").decode().strip() == "true"
        except RuntimeError:  # not set: public
            return False

    def set_private(self, repo_id: str, private: bool, repo_type: str = "model") -> None:
        """Make an existing repository private or public."""
        self.repo(repo_id, repo_type).git("config", "hub.private", "true" if private else "false")

    def fail(self, status: int, path: str, *, times: int = 1, method: str | None = None,
             message: str = "") -> None:
        """Answer the next ``times`` requests whose path matches the regex ``path`` (and ``method``) with
        ``status``, in the hub's error format (a test's 401/403/404/5xx)."""
        text = message or {401: "Invalid credentials in Authorization header", 403: "Forbidden",
                           404: "Repository not found"}.get(status, f"Internal Error - simulated {status}")
        self.failures.append([method, re.compile(path), status, text, times])

    def create_repo(self, repo_id: str, repo_type: str = "model", branch: str = "main",
                    gitattributes: str = HF_DEFAULT_GITATTRIBUTES) -> GitRepo:
        """Create a bare repo with an initial commit holding ``.gitattributes``; raise FileExistsError if it exists."""
        path = self.repo_path(repo_id, repo_type)
        with self._lock:
            if (path / "HEAD").exists():
                raise FileExistsError(repo_id)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
            _git(["init", "--quiet", "--bare", f"--initial-branch={branch}", str(tmp)], path.parent)
            _git(["config", "http.receivepack", "true"], tmp)
            repo = GitRepo(tmp)
            sha = repo.hash_blob(gitattributes.encode())
            repo.commit(branch, {".gitattributes": ("100644", sha)}, "initial commit", None, self.user, self.email)
            tmp.rename(path)
            repo.path = path
            self._repos[path] = repo
            return repo

    def files(self, repo_id: str, rev: str | None = None, repo_type: str = "model") -> dict[str, bytes]:
        """``{path: content}`` at ``rev`` (default branch when None), LFS pointers replaced by their objects."""
        repo = self.repo(repo_id, repo_type)
        tree = repo.tree(self._resolve_or_raise(repo, rev))
        blobs = repo.read_blobs(e.sha for e in tree.values())
        out = {}
        for path, entry in tree.items():
            data = blobs[entry.sha]
            ptr = parse_lfs_pointer(data)
            if ptr is not None and self.lfs_path(ptr[0]).exists():
                data = self.lfs_path(ptr[0]).read_bytes()
            out[path] = data
        return out

    def is_lfs(self, repo_id: str, path: str, rev: str | None = None, repo_type: str = "model") -> bool:
        """Whether ``path`` is stored as an LFS pointer at ``rev``."""
        repo = self.repo(repo_id, repo_type)
        entry = repo.tree(self._resolve_or_raise(repo, rev)).get(path)
        if entry is None:
            raise KeyError(path)
        return parse_lfs_pointer(repo.read_blobs([entry.sha])[entry.sha]) is not None

    def commits(self, repo_id: str, rev: str | None = None, repo_type: str = "model") -> list[dict[str, Any]]:
        """Commits reachable from ``rev``, newest first: ``{"oid", "parents", "title", "message", "author"}``."""
        repo = self.repo(repo_id, repo_type)
        out = repo.git("log", "-z", "--format=%H%x1f%P%x1f%an%x1f%B", self._resolve_or_raise(repo, rev))
        result = []
        for rec in out.decode().split("\0"):
            if not rec.strip():
                continue
            oid, parents, author, message = rec.split("\x1f", 3)
            message = message.strip("\n")
            result.append({"oid": oid, "parents": parents.split(), "author": author,
                           "title": message.split("\n", 1)[0], "message": message})
        return result

    def lfs_path(self, oid: str) -> Path:
        """Where an LFS object is stored."""
        return self.root / "lfs" / oid[0:2] / oid[2:4] / oid

    def git_url(self, repo_id: str, repo_type: str = "model", *, auth: bool = True) -> str:
        """A clone URL, with ``user:token@`` credentials unless ``auth=False``."""
        cred = f"{self.user}:{self.token}@" if auth else ""
        sub = _REPO_TYPE_DIRS[repo_type]
        return f"http://{cred}{self.url[len('http://'):]}/{sub + '/' if sub else ''}{repo_id}.git"

    # ---------------------------------------------------------------- plumbing
    @staticmethod
    def _split_id(repo_id: str) -> tuple[str, str]:
        parts = repo_id.split("/")
        if len(parts) != 2 or not all(parts) or any(p in (".", "..") or p.startswith(".") for p in parts):
            raise HubError(400, f"Invalid repo id {repo_id!r}")
        return parts[0], parts[1]

    def _resolve_or_raise(self, repo: GitRepo, rev: str | None) -> str:
        sha = repo.resolve(rev)
        if sha is None:
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        return sha

    def _sign(self, oid: str) -> str:
        return hmac.new(self._secret, oid.encode(), hashlib.sha256).hexdigest()[:32]

    def _token_from(self, req: Request) -> str | None:
        auth = req.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if auth.lower().startswith("basic "):
            try:
                return base64.b64decode(auth[6:]).decode().split(":", 1)[1]
            except (ValueError, IndexError):
                return ""
        return req.cookies.get("m_session_id")

    def _auth(self, req: Request, *, required: bool) -> str | None:
        """The user name, None when anonymous and allowed; raise 401 for a bad or (when required) missing token."""
        token = self._token_from(req)
        if self.reject_token or (token is not None and not hmac.compare_digest(token, self.token)):
            raise HubError(401, "Invalid credentials in Authorization header", code="_auth")
        if token is None and required:
            raise HubError(401, "You must be authenticated to access this resource.", code="_auth")
        return self.user if token is not None else None

    def _check_namespace(self, org: str, repo_id: str | None = None) -> None:
        """Refuse a write (403) the token may not make: a foreign namespace, a read token or org role, a
        fine-grained token without ``repo.write`` on the namespace or the repo."""
        if org not in {self.user, *self.orgs}:
            raise HubError(403, f"You don't have the rights to write under the namespace {org!r}")
        if self.token_role == "read":
            raise HubError(403, "You don't have the rights to write with a read access token")
        if self.orgs.get(org) == "read":
            raise HubError(403, f"You don't have the rights to write under the namespace {org!r} (role: read)")
        if self.token_role == "fineGrained" and not any(
                "repo.write" in self.token_scopes.get(entity, ()) for entity in (org, repo_id) if entity):
            raise HubError(403, f"This fine-grained token has no write permission (repo.write) on {repo_id or org!r}")

    def _check_read(self, repo_id: str, repo_type: str, user: str | None) -> None:
        """A private repository is not found for an anonymous request (401, as the Hub answers)."""
        if user is None and self.exists(repo_id, repo_type) and self.is_private(repo_id, repo_type):
            raise HubError(401, "Repository not found", code="RepoNotFound")

    def _apply(self, repo: GitRepo, branch: str, ops: list[Op], message: str,
               parent_expected: str | None = None) -> str:
        """Turn ``ops`` into one commit on ``branch``; return its sha."""
        if self.fail_commit_once:
            self.fail_commit_once = False
            raise HubError(500, "Internal Error - simulated commit failure (fail_commit_once)")
        with repo.lock:
            parent = repo.resolve(branch)
            if parent is None:
                raise HubError(404, f"Invalid rev id: {branch}", code="RevisionNotFound")
            if parent_expected and not parent.startswith(parent_expected):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
            files = {p: (e.mode, e.sha) for p, e in repo.tree(parent).items()}
            new_lfs: list[str] = []
            for op in ops:
                if op.kind == "file":
                    files[op.path] = ("100644", repo.hash_blob(op.data))
                elif op.kind == "lfs":
                    obj = self.lfs_path(op.oid)
                    if not obj.exists():
                        raise HubError(400, f"Your push was rejected because an LFS pointer pointed to a file "
                                            f"that does not exist: {op.path} (oid {op.oid})")
                    size = op.size or obj.stat().st_size
                    files[op.path] = ("100644", repo.hash_blob(lfs_pointer(op.oid, size)))
                    new_lfs.append(op.path)
                elif op.kind == "delete":
                    if files.pop(op.path, None) is None:
                        raise HubError(404, f"A file with this name doesn't exist: {op.path}", code="EntryNotFound")
                elif op.kind == "delete_folder":
                    prefix = op.path.rstrip("/") + "/"
                    doomed = [p for p in files if p.startswith(prefix)]
                    if not doomed:
                        raise HubError(404, f"A folder with this name doesn't exist: {op.path}",
                                       code="EntryNotFound")
                    for p in doomed:
                        del files[p]
            if new_lfs:
                attrs = repo.read_blobs([files[".gitattributes"][1]])[files[".gitattributes"][1]].decode() \
                    if ".gitattributes" in files else ""
                pats = lfs_patterns(attrs)
                missing = [p for p in new_lfs if not any(glob_match(pat, p) for pat in pats)]
                if missing:
                    attrs = (attrs if not attrs or attrs.endswith("\n") else attrs + "\n") + "".join(
                        f"{p.replace(' ', '[[:space:]]')}{_LFS_RULE}\n" for p in missing)
                    files[".gitattributes"] = ("100644", repo.hash_blob(attrs.encode()))
            return repo.commit(branch, files, message, parent, self.user, self.email)

    # ---------------------------------------------------------------- WSGI entry
    def _wsgi(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        req = Request(environ)
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or quote(environ.get("PATH_INFO", ""))
        raw_path = raw.split("?", 1)[0]
        segs = [unquote(s) for s in raw_path.split("/") if s]
        try:
            self._injected(req.method, raw_path)
            resp = self._route(req, segs, environ)
        except HubError as err:
            resp = self._error(req, segs, err)
        except _Dropped:
            self.requests.append((req.method, raw_path, 0))
            start_response("500 Connection dropped", [("Content-Length", "0")])
            return []
        except Exception as err:  # noqa: BLE001 - a server bug becomes a 500 the SDK can show
            resp = Response(json.dumps({"error": f"server error: {err!r}"}), 500, content_type=_JSON)
        self.requests.append((req.method, raw_path, resp.status_code))
        return resp(environ, start_response)

    def _injected(self, method: str, path: str) -> None:
        """Raise the failure a test asked for with :meth:`fail`, when this request matches one."""
        for failure in self.failures:
            wanted, pattern, status, message, left = failure
            if left > 0 and (wanted is None or wanted == method) and pattern.search(path):
                failure[4] -= 1
                raise HubError(status, message, code="RepoNotFound" if status == 404 else None)

    def _error(self, req: Request, segs: list[str], err: HubError) -> Response:
        if segs[:2] == ["api", "v1"] or segs[:2] == ["openapi", "v1"]:
            body = {"Code": err.extra.get("Code", err.status), "Message": err.message, "Success": False,
                    "RequestId": uuid.uuid4().hex, "success": False, "message": err.message}
            return Response(json.dumps(body), err.status, content_type=_JSON)
        headers = {"X-Error-Message": err.message}
        if err.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="hub"'
        if err.code and not err.code.startswith("_"):
            headers["X-Error-Code"] = err.code
        body = {"error": err.message, **err.extra}
        ctype = _LFS_JSON if "info" in segs and "lfs" in segs else _JSON
        return Response(json.dumps(body), err.status, headers=headers, content_type=ctype)

    def _route(self, req: Request, s: list[str], environ: dict) -> Response:
        m = req.method
        # ---- shared LFS object endpoints (signed URLs, no token needed)
        if len(s) == 2 and s[0] in ("lfs-upload", "lfs-verify", "lfs-objects"):
            return self._lfs_object(req, s[0], s[1], environ)
        # ---- ModelScope
        if s[:2] == ["api", "v1"]:
            return self._modelscope(req, s[2:])
        if s[:2] == ["openapi", "v1"]:
            if s[2:] == ["users", "me"] and m == "GET":
                self._auth(req, required=True)
                return self._ms_ok({"username": self.user, "name": self.user, "email": self.email,
                                    "Username": self.user}, openapi=True)
            raise HubError(404, f"no such endpoint: {'/'.join(s)}")
        # ---- Hugging Face API
        if s[:1] == ["api"]:
            return self._hf_api(req, s[1:])
        # ---- git smart HTTP, LFS batch and HF resolve on repo URLs
        repo_type = "model"
        if s and s[0] in ("datasets", "spaces"):
            repo_type, s = _PLURAL[s[0]], s[1:]
        if len(s) >= 3:
            org, name, rest = s[0], s[1], s[2:]
            if name.endswith(".git"):
                name = name[:-4]
            if rest[:4] == ["info", "lfs", "objects", "batch"] and m == "POST":
                return self._lfs_batch(req, f"{org}/{name}", repo_type)
            if rest[:2] == ["info", "refs"] or rest[:1] in (["git-upload-pack"], ["git-receive-pack"]) \
                    or rest == ["HEAD"]:
                return self._git_http(req, f"{org}/{name}", repo_type, "/".join(rest), environ)
            if rest[0] == "resolve" and len(rest) >= 3 and m in ("GET", "HEAD"):
                return self._hf_resolve(req, f"{org}/{name}", repo_type, rest[1], "/".join(rest[2:]))
        raise HubError(404, f"no such endpoint: /{'/'.join(s)}")

    # ---------------------------------------------------------------- Hugging Face
    def _hf_api(self, req: Request, s: list[str]) -> Response:
        m = req.method
        if s == ["whoami-v2"] and m == "GET":
            self._auth(req, required=True)
            return _json({
                "type": "user", "id": hashlib.sha1(self.user.encode()).hexdigest()[:24], "name": self.user,
                "fullname": self.user, "email": self.email, "emailVerified": True, "canPay": False,
                "isPro": False, "periodEnd": None, "avatarUrl": "",
                "orgs": [{"type": "org", "name": o, "fullname": o, "roleInOrg": role} for o, role in self.orgs.items()],
                "auth": {"type": "access_token", "accessToken": self._hf_access_token()},
            })
        if s == ["validate-yaml"] and m == "POST":
            self._auth(req, required=False)
            return self._hf_validate_yaml((req.get_json(force=True, silent=True) or {}).get("content", ""))
        if s == ["repos", "create"] and m == "POST":
            self._auth(req, required=True)
            body = req.get_json(force=True)
            repo_type = body.get("type") or "model"
            org = body.get("organization") or self.user
            repo_id = f"{org}/{body.get('name')}"
            self._split_id(repo_id)
            self._check_namespace(org)
            if repo_type not in _REPO_TYPE_DIRS:
                raise HubError(400, f"Invalid repo type {repo_type!r}")
            url = self._hf_repo_url(repo_id, repo_type)
            try:
                self.create_repo(repo_id, repo_type, "main", HF_DEFAULT_GITATTRIBUTES)
            except FileExistsError:
                raise HubError(409, f"You already created this {repo_type} repo", extra={"url": url}) from None
            if body.get("private") or body.get("visibility") == "private":
                self.set_private(repo_id, True, repo_type)
            return _json({"url": url, "name": repo_id, "id": uuid.uuid4().hex[:24]})
        if s == ["repos", "delete"] and m == "DELETE":
            self._auth(req, required=True)
            body = req.get_json(force=True)
            repo_type = body.get("type") or "model"
            org = body.get("organization") or self.user
            self._check_namespace(org)
            path = self.repo_path(f"{org}/{body.get('name')}", repo_type)
            if not (path / "HEAD").exists():
                raise HubError(404, "Repository not found", code="RepoNotFound")
            with self._lock:
                self._repos.pop(path, None)
                shutil.rmtree(path)
            return Response("OK", 200)
        if len(s) >= 3 and s[0] in _PLURAL:
            repo_type = _PLURAL[s[0]]
            repo_id = f"{s[1]}/{s[2]}"
            rest = s[3:]
            write = m != "GET" and rest[:1] != ["paths-info"]
            user = self._auth(req, required=write)
            if write:
                self._check_namespace(s[1], repo_id)
            self._check_read(repo_id, repo_type, user)
            if not self.exists(repo_id, repo_type):
                raise HubError(404, "Repository not found", code="RepoNotFound")
            repo = self.repo(repo_id, repo_type)
            if not rest and m == "GET":
                return self._hf_info(repo, repo_id, repo_type, None)
            if rest == ["settings"] and m == "PUT":
                body = req.get_json(force=True, silent=True) or {}
                if "private" in body or "visibility" in body:
                    self.set_private(repo_id, bool(body.get("private")) or body.get("visibility") == "private",
                                     repo_type)
                return _json({})
            if len(rest) == 2 and rest[0] == "revision" and m == "GET":
                return self._hf_info(repo, repo_id, repo_type, rest[1])
            if len(rest) == 2 and rest[0] == "preupload" and m == "POST":
                return self._hf_preupload(req, repo, rest[1])
            if len(rest) == 2 and rest[0] == "commit" and m == "POST":
                return self._hf_commit(req, repo, repo_id, repo_type, rest[1])
            if len(rest) == 2 and rest[0] == "paths-info" and m == "POST":
                return self._hf_paths_info(req, repo, rest[1])
            if len(rest) >= 2 and rest[0] == "tree" and m == "GET":
                return self._hf_tree(req, repo, rest[1], "/".join(rest[2:]))
        raise HubError(404, f"no such endpoint: /api/{'/'.join(s)}")

    def _hf_access_token(self) -> dict[str, Any]:
        """``auth.accessToken`` of ``whoami-v2``: its role and, for a fine-grained token, its scopes."""
        token: dict[str, Any] = {"displayName": "vlhub-tests", "role": self.token_role,
                                 "createdAt": "2024-01-01T00:00:00.000Z"}
        if self.token_role == "fineGrained":
            def entity(name: str) -> dict[str, str]:
                kind = "model" if "/" in name else "user" if name == self.user else "org"
                return {"_id": hashlib.sha1(name.encode()).hexdigest()[:24], "type": kind, "name": name}

            token["fineGrained"] = {"canReadGatedRepos": False, "global": [],
                                    "scoped": [{"entity": entity(name), "permissions": perms}
                                               for name, perms in self.token_scopes.items()]}
        return token

    @staticmethod
    def _hf_validate_yaml(content: str) -> Response:
        """``POST /api/validate-yaml`` (called by the SDK before committing a README.md): check the front matter."""
        match = re.match(r"\A---\s*\n(.*?\n)?---\s*(\n|\Z)", content, re.S)
        if not match or not (match.group(1) or "").strip():
            warning = {"message": "Empty or missing yaml metadata in repo card "
                                  "(https://huggingface.co/docs/hub/model-cards#model-card-metadata)"}
            return _json({"errors": [], "warnings": [warning]})
        try:
            import yaml

            meta = yaml.safe_load(match.group(1))
        except ImportError:
            meta = {}
        except yaml.YAMLError as err:
            return _json({"errors": [{"message": f"Invalid YAML in README.md metadata: {err}"}], "warnings": []},
                         400)
        if not isinstance(meta, dict):
            return _json({"errors": [{"message": "README.md metadata must be a YAML mapping"}], "warnings": []}, 400)
        return _json({"errors": [], "warnings": []})

    def _hf_repo_url(self, repo_id: str, repo_type: str) -> str:
        sub = _REPO_TYPE_DIRS[repo_type]
        return f"{self.url}/{sub + '/' if sub else ''}{repo_id}"

    def _entry_json(self, repo: GitRepo, entry: TreeEntry, data: bytes | None) -> dict[str, Any]:
        """A paths-info/tree item: ``{"type", "oid", "size", "path", "lfs"?}``."""
        item: dict[str, Any] = {"type": "file", "oid": entry.sha, "size": entry.size, "path": entry.path}
        ptr = parse_lfs_pointer(data) if data is not None else None
        if ptr:
            item["size"] = ptr[1]
            item["lfs"] = {"oid": ptr[0], "size": ptr[1], "pointerSize": entry.size}
        return item

    def _pointer_blobs(self, repo: GitRepo, entries: Iterable[TreeEntry]) -> dict[str, bytes]:
        """Contents of the blobs small enough to be LFS pointers."""
        return repo.read_blobs(e.sha for e in entries if e.size <= 1024)

    def _hf_info(self, repo: GitRepo, repo_id: str, repo_type: str, rev: str | None) -> Response:
        sha = self._resolve_or_raise(repo, rev)
        tree = repo.tree(sha)
        blobs = self._pointer_blobs(repo, tree.values())
        stamp = int(repo.git("show", "-s", "--format=%ct", sha).decode().strip())
        date = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(stamp))
        siblings = []
        for e in tree.values():
            item = self._entry_json(repo, e, blobs.get(e.sha))
            sib: dict[str, Any] = {"rfilename": e.path, "size": item["size"], "blobId": e.sha}
            if "lfs" in item:
                sib["lfs"] = {"size": item["lfs"]["size"], "sha256": item["lfs"]["oid"],
                              "pointerSize": item["lfs"]["pointerSize"]}
            siblings.append(sib)
        org = repo_id.split("/")[0]
        return _json({"_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24], "id": repo_id, "modelId": repo_id,
                      "author": org, "sha": sha, "lastModified": date, "createdAt": date,
                      "private": self.is_private(repo_id, repo_type),
                      "gated": False, "disabled": False, "downloads": 0, "likes": 0, "tags": [],
                      "siblings": siblings})

    def _hf_preupload(self, req: Request, repo: GitRepo, rev: str) -> Response:
        body = req.get_json(force=True)
        sha = repo.resolve(rev)
        if sha is None and not req.args.get("create_pr"):
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        tree = repo.tree(sha)
        blobs = self._pointer_blobs(repo, tree.values())
        attrs_entry, ignore_entry = tree.get(".gitattributes"), tree.get(".gitignore")
        texts = repo.read_blobs(e.sha for e in (attrs_entry, ignore_entry) if e is not None)
        attrs = texts[attrs_entry.sha].decode(errors="replace") if attrs_entry else ""
        gitignore = body.get("gitIgnore")
        if gitignore is None:
            gitignore = texts[ignore_entry.sha].decode(errors="replace") if ignore_entry else ""
        pats = lfs_patterns(attrs)
        files = []
        for f in body.get("files", []):
            path, size = f["path"], int(f.get("size", 0))
            sample = base64.b64decode(f.get("sample") or "")
            lfs = any(glob_match(p, path) for p in pats) or size > self.lfs_threshold or b"\0" in sample
            item: dict[str, Any] = {"path": path, "uploadMode": "lfs" if lfs else "regular",
                                    "shouldIgnore": bool(gitignore) and ignore_match(gitignore, path)}
            entry = tree.get(path)
            if entry is not None:
                ptr = parse_lfs_pointer(blobs[entry.sha]) if entry.sha in blobs else None
                item["oid"] = ptr[0] if ptr else entry.sha
            files.append(item)
        return _json({"files": files, "commitOid": sha})

    def _hf_commit(self, req: Request, repo: GitRepo, repo_id: str, repo_type: str, rev: str) -> Response:
        lines = [json.loads(line) for line in req.get_data().splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The first line of the payload must be the header")
        header = lines[0]["value"]
        ops = []
        for item in lines[1:]:
            key, v = item.get("key"), item.get("value", {})
            if key == "file":
                data = base64.b64decode(v["content"]) if v.get("encoding") == "base64" else v["content"].encode()
                ops.append(Op("file", v["path"], data=data))
            elif key == "lfsFile":
                ops.append(Op("lfs", v["path"], oid=v["oid"], size=int(v.get("size") or 0)))
            elif key == "deletedFile":
                ops.append(Op("delete", v["path"]))
            elif key == "deletedFolder":
                ops.append(Op("delete_folder", v["path"]))
            else:
                raise HubError(400, f"Unknown commit operation key {key!r}")
        message = header.get("summary", "")
        if header.get("description"):
            message += "\n\n" + header["description"]
        pr_url = None
        branch = rev
        if req.args.get("create_pr"):
            base = self._resolve_or_raise(repo, rev)
            with repo.lock:
                prs = repo.git("for-each-ref", "--format=%(refname)", "refs/pr/").decode().split()
                num = 1 + max([int(r.rsplit("/", 1)[1]) for r in prs] or [0])
                repo.git("update-ref", f"refs/pr/{num}", base, ZERO_OID)
            branch = f"refs/pr/{num}"
            pr_url = f"{self._hf_repo_url(repo_id, repo_type)}/discussions/{num}"
        elif repo.resolve(rev) is None or not _is_branch(repo, rev):
            raise HubError(404, f"Invalid rev id: {rev}", code="RevisionNotFound")
        sha = self._apply(repo, branch, ops, message, header.get("parentCommit"))
        return _json({"success": True, "commitOid": sha, "commitMessage": header.get("summary", ""),
                      "commitUrl": f"{self._hf_repo_url(repo_id, repo_type)}/commit/{sha}",
                      "pullRequestUrl": pr_url, "hookOutput": ""})

    def _hf_paths_info(self, req: Request, repo: GitRepo, rev: str) -> Response:
        paths = req.form.getlist("paths") or (req.get_json(silent=True) or {}).get("paths", [])
        tree = repo.tree(self._resolve_or_raise(repo, rev))
        wanted = [tree[p] for p in paths if p in tree]
        blobs = self._pointer_blobs(repo, wanted)
        out = [self._entry_json(repo, e, blobs.get(e.sha)) for e in wanted]
        folders = {p.rstrip("/") for p in paths if p not in tree}
        for folder in sorted(folders):
            if any(t.startswith(folder + "/") for t in tree):
                out.append({"type": "directory", "oid": ZERO_OID, "size": 0, "path": folder})
        return _json(out)

    def _hf_tree(self, req: Request, repo: GitRepo, rev: str, path: str) -> Response:
        tree = repo.tree(self._resolve_or_raise(repo, rev))
        recursive = req.args.get("recursive", "false").lower() in ("1", "true")
        prefix = path.strip("/") + "/" if path.strip("/") else ""
        if prefix and not any(p.startswith(prefix) for p in tree):
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
        files, folders = [], set()
        for p, e in sorted(tree.items()):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            if "/" in rel:
                parts = rel.split("/")
                for i in range(1, len(parts) if recursive else 2):
                    folders.add(prefix + "/".join(parts[:i]))
                if not recursive:
                    continue
            files.append(e)
        blobs = self._pointer_blobs(repo, files)
        out = [{"type": "directory", "oid": ZERO_OID, "size": 0, "path": f} for f in sorted(folders)]
        out += [self._entry_json(repo, e, blobs.get(e.sha)) for e in files]
        return _json(out)

    def _hf_resolve(self, req: Request, repo_id: str, repo_type: str, rev: str, path: str) -> Response:
        self._check_read(repo_id, repo_type, self._auth(req, required=False))
        if not self.exists(repo_id, repo_type):
            raise HubError(404, "Repository not found", code="RepoNotFound")
        repo = self.repo(repo_id, repo_type)
        sha = self._resolve_or_raise(repo, rev)
        entry = repo.tree(sha).get(path)
        if entry is None:
            raise HubError(404, f"Entry not found: {path}", code="EntryNotFound")
        data = repo.read_blobs([entry.sha])[entry.sha]
        headers = {"X-Repo-Commit": sha, "ETag": f'"{entry.sha}"', "Accept-Ranges": "bytes"}
        ptr = parse_lfs_pointer(data)
        if ptr:
            data = self.lfs_path(ptr[0]).read_bytes()
            headers.update({"ETag": f'"{ptr[0]}"', "X-Linked-Etag": f'"{ptr[0]}"', "X-Linked-Size": str(ptr[1])})
        resp = Response(b"" if req.method == "HEAD" else data, 200, headers=headers,
                        content_type="application/octet-stream")
        resp.content_length = len(data)
        return resp

    # ---------------------------------------------------------------- LFS (both hubs and git-lfs)
    def _lfs_batch(self, req: Request, repo_id: str, repo_type: str) -> Response:
        body = req.get_json(force=True)
        op = body.get("operation")
        self._auth(req, required=op == "upload")
        if op == "upload":
            self._check_namespace(repo_id.split("/")[0], repo_id)
        if not self.exists(repo_id, repo_type):
            raise HubError(404, "Repository not found", code="RepoNotFound")
        return self._lfs_batch_answer(body)

    def _lfs_batch_answer(self, body: dict) -> Response:
        op = body.get("operation")
        objects = []
        for obj in body.get("objects", []):
            oid, size = str(obj.get("oid", "")), int(obj.get("size", 0))
            item: dict[str, Any] = {"oid": oid, "size": size}
            if not re.fullmatch(r"[0-9a-f]{64}", oid):
                item["error"] = {"code": 422, "message": "Invalid object id"}
            elif op == "upload":
                if not self.lfs_path(oid).exists():
                    sig = self._sign(oid)
                    item["authenticated"] = True
                    item["actions"] = {
                        "upload": {"href": f"{self.url}/lfs-upload/{oid}?size={size}&sig={sig}", "header": {},
                                   "expires_in": 3600},
                        "verify": {"href": f"{self.url}/lfs-verify/{oid}?sig={sig}", "header": {},
                                   "expires_in": 3600},
                    }
            elif op == "download":
                if self.lfs_path(oid).exists():
                    item["authenticated"] = True
                    item["actions"] = {"download": {"href": f"{self.url}/lfs-objects/{oid}?sig={self._sign(oid)}",
                                                    "header": {}, "expires_in": 3600}}
                else:
                    item["error"] = {"code": 404, "message": "Object does not exist"}
            else:
                raise HubError(400, f"Unknown LFS operation {op!r}")
            objects.append(item)
        return Response(json.dumps({"transfer": "basic", "objects": objects, "hash_algo": "sha256"}), 200,
                        content_type=_LFS_JSON)

    def _lfs_object(self, req: Request, kind: str, oid: str, environ: dict) -> Response:
        if not re.fullmatch(r"[0-9a-f]{64}", oid) or not hmac.compare_digest(req.args.get("sig", ""),
                                                                           self._sign(oid)):
            raise HubError(403, "Invalid or expired signature")
        target = self.lfs_path(oid)
        if kind == "lfs-objects" and req.method == "GET":
            if not target.exists():
                raise HubError(404, "Object does not exist")
            return Response(target.read_bytes(), 200, content_type="application/octet-stream")
        if kind == "lfs-verify" and req.method == "POST":
            body = req.get_json(force=True, silent=True) or {}
            if not target.exists() or (body.get("size") is not None and target.stat().st_size != int(body["size"])):
                raise HubError(404, "Object does not exist or has the wrong size")
            return Response(json.dumps({"message": "OK"}), 200, content_type=_LFS_JSON)
        if kind == "lfs-upload" and req.method == "PUT":
            return self._lfs_put(req, oid, target, environ)
        raise HubError(405, "Method not allowed")

    def _lfs_put(self, req: Request, oid: str, target: Path, environ: dict) -> Response:
        drop_after = self.drop_lfs_upload_after
        if drop_after is not None:
            self.drop_lfs_upload_after = None
        target.parent.mkdir(parents=True, exist_ok=True)
        digest, received = hashlib.sha256(), 0
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{oid}.")
        try:
            with os.fdopen(fd, "wb") as out:
                stream = req.stream
                while True:
                    chunk = stream.read(1 << 20)
                    if not chunk:
                        break
                    if drop_after is not None and received + len(chunk) > drop_after:
                        keep = max(0, drop_after - received)
                        with self._lock:
                            self.lfs_bytes_uploaded += keep
                        _drop_connection(environ)
                        raise _Dropped()
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    with self._lock:
                        self.lfs_bytes_uploaded += len(chunk)
            expected = req.args.get("size")
            if digest.hexdigest() != oid or (expected is not None and int(expected) != received):
                raise HubError(400, f"Uploaded content does not match oid {oid} ({received} bytes)")
            os.replace(tmp_name, target)
            with self._lock:
                self.lfs_objects_uploaded += 1
        finally:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
        return Response(b"", 200)

    # ---------------------------------------------------------------- git smart HTTP
    def _git_http(self, req: Request, repo_id: str, repo_type: str, rest: str, environ: dict) -> Response:
        service = req.args.get("service", "") if rest == "info/refs" else rest
        write = "receive-pack" in service
        user = self._auth(req, required=write)
        if write:
            self._check_namespace(repo_id.split("/")[0], repo_id)
        self._check_read(repo_id, repo_type, user)
        if not self.exists(repo_id, repo_type):
            raise HubError(404, "Repository not found", code="RepoNotFound")
        rel = self.repo_path(repo_id, repo_type).relative_to(self.root).as_posix()
        cgi_env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(self.root),
            "PATH_INFO": f"/{rel}/{rest}", "REQUEST_METHOD": req.method,
            "QUERY_STRING": environ.get("QUERY_STRING", ""), "CONTENT_TYPE": req.headers.get("Content-Type", ""),
            "REMOTE_ADDR": "127.0.0.1", "REMOTE_USER": user or "", "GIT_HTTP_MAX_REQUEST_BUFFER": "1000M",
        }
        if req.headers.get("Content-Encoding"):
            cgi_env["HTTP_CONTENT_ENCODING"] = req.headers["Content-Encoding"]
        if req.headers.get("Git-Protocol"):
            cgi_env["GIT_PROTOCOL"] = req.headers["Git-Protocol"]
        body = req.get_data() if req.method == "POST" else b""
        cgi_env["CONTENT_LENGTH"] = str(len(body))
        repo = self.repo(repo_id, repo_type)
        with repo.lock if write else contextlib.nullcontext():
            proc = subprocess.run(["git", "http-backend"], input=body, capture_output=True, env=cgi_env)
        head, _, payload = proc.stdout.partition(b"\r\n\r\n")
        if not _:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode(errors="replace").splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                if k.lower() == "status":
                    status = int(v.strip().split()[0])
                else:
                    headers[k.strip()] = v.strip()
        return Response(payload, status, headers=headers)

    # ---------------------------------------------------------------- ModelScope
    def _ms_ok(self, data: Any, *, openapi: bool = False) -> Response:
        if openapi:
            return _json({"success": True, "data": data, "request_id": uuid.uuid4().hex})
        return _json({"Code": 200, "Data": data, "Message": "success", "RequestId": uuid.uuid4().hex,
                      "Success": True})

    def _modelscope(self, req: Request, s: list[str]) -> Response:
        m = req.method
        if s == ["login"] and m == "POST":
            token = (req.get_json(force=True, silent=True) or {}).get("AccessToken")
            if self.reject_token or not token or not hmac.compare_digest(str(token), self.token):
                raise HubError(400, "AccessToken is invalid or expired", extra={"Code": 10010103009})
            resp = self._ms_ok({"AccessToken": self.token, "Username": self.user, "Email": self.email})
            resp.set_cookie("m_session_id", self.token, path="/")
            return resp
        if len(s) == 1 and s[0] in ("models", "datasets") and m == "POST":
            self._auth(req, required=True)
            body = req.get_json(silent=True) if req.is_json else None
            body = body or {k: v for k, v in req.form.items()}
            org = body.get("Path") or body.get("Owner") or ""
            repo_id = f"{org}/{body.get('Name', '')}"
            repo_type = _PLURAL[s[0]]
            try:
                self._split_id(repo_id)
            except HubError:
                raise HubError(400, "path is required", extra={"Code": 400}) from None
            self._check_namespace(org, repo_id)
            try:
                self.create_repo(repo_id, repo_type, "master", HF_DEFAULT_GITATTRIBUTES)
            except FileExistsError:
                raise HubError(400, "该名称已被注册使用，请重新命名", extra={"Code": 10010101001}) from None
            visibility = body.get("Visibility", 5)
            if str(visibility) == "1":
                self.set_private(repo_id, True, repo_type)
            return self._ms_ok({"Path": org, "Name": body.get("Name"),
                                "Visibility": int(visibility) if str(visibility).isdigit() else visibility,
                                "License": body.get("License"), "Id": repo_id})
        if len(s) >= 4 and s[0] == "repos" and s[1] in ("models", "datasets"):
            repo_type, repo_id, rest = _PLURAL[s[1]], f"{s[2]}/{s[3]}", s[4:]
            self._auth(req, required=True)
            self._check_namespace(s[2], repo_id)
            if not self.exists(repo_id, repo_type):
                raise HubError(404, "模型不存在", extra={"Code": 404})
            repo = self.repo(repo_id, repo_type)
            if len(rest) >= 2 and rest[0] == "commit" and m == "POST":
                return self._ms_commit(req, repo, "/".join(rest[1:]))
            if rest == ["info", "lfs", "objects", "batch"] and m == "POST":
                return self._lfs_batch_answer(req.get_json(force=True))
        if len(s) >= 3 and s[0] in ("models", "datasets"):
            repo_type, repo_id, rest = _PLURAL[s[0]], f"{s[1]}/{s[2]}", s[3:]
            self._auth(req, required=m != "GET")
            if not self.exists(repo_id, repo_type):
                raise HubError(404, "模型不存在" if repo_type == "model" else "数据集不存在", extra={"Code": 404})
            repo = self.repo(repo_id, repo_type)
            if not rest and m == "GET":
                sha = self._resolve_or_raise(repo, None)
                return self._ms_ok({"Path": s[1], "Name": s[2], "Id": repo_id,
                                    "Visibility": 1 if self.is_private(repo_id, repo_type) else 5,
                                    "DefaultBranch": repo.default_branch(), "LatestCommit": {"Id": sha}})
            if rest in (["repo", "files"], ["repo", "tree"]) and m == "GET":
                return self._ms_files(req, repo)
            if rest == ["revisions"] and m == "GET":
                branches = repo.git("for-each-ref", "--format=%(refname:short)", "refs/heads/").decode().split()
                return self._ms_ok({"RevisionMap": {"Branches": [{"Revision": b} for b in branches], "Tags": []}})
        raise HubError(404, f"no such endpoint: /api/v1/{'/'.join(s)}")

    def _ms_files(self, req: Request, repo: GitRepo) -> Response:
        rev = req.args.get("Revision") or None
        root = (req.args.get("Root") or "").strip("/")
        recursive = req.args.get("Recursive", "false").lower() == "true"
        tree = repo.tree(self._resolve_or_raise(repo, rev))
        blobs = self._pointer_blobs(repo, tree.values())
        prefix = root + "/" if root else ""
        files, dirs = [], set()
        for p, e in sorted(tree.items()):
            if not p.startswith(prefix):
                continue
            rel = p[len(prefix):]
            if "/" in rel and not recursive:
                dirs.add(prefix + rel.split("/", 1)[0])
                continue
            ptr = parse_lfs_pointer(blobs[e.sha]) if e.sha in blobs else None
            files.append({"Name": p.rsplit("/", 1)[-1], "Path": p, "Type": "blob", "Size": ptr[1] if ptr else e.size,
                          "Sha256": ptr[0] if ptr else "", "IsLFS": bool(ptr), "Id": e.sha, "Revision": rev})
        files += [{"Name": d.rsplit("/", 1)[-1], "Path": d, "Type": "tree", "Size": 0} for d in sorted(dirs)]
        return self._ms_ok({"Files": files})

    def _ms_commit(self, req: Request, repo: GitRepo, rev: str) -> Response:
        body = req.get_json(force=True)
        ops = []
        for a in body.get("actions", []):
            action, path = a.get("action"), a.get("path", "")
            if action == "delete":
                ops.append(Op("delete", path))
            elif action in ("create", "update"):
                if a.get("type") == "lfs":
                    ops.append(Op("lfs", path, oid=a["sha256"], size=int(a.get("size") or 0)))
                else:
                    content = a.get("content") or ""
                    data = base64.b64decode(content) if a.get("encoding") == "base64" else content.encode()
                    ops.append(Op("file", path, data=data))
            else:
                raise HubError(400, f"Unknown action {action!r}")
        if not _is_branch(repo, rev):
            raise HubError(404, f"Revision {rev} not found", extra={"Code": 404})
        message = body.get("commit_message") or "Upload"
        if body.get("commit_description"):
            message += "\n\n" + body["commit_description"]
        sha = self._apply(repo, rev, ops, message)
        return self._ms_ok({"CommitId": sha, "commit_id": sha, "Revision": rev})


class _Dropped(Exception):
    """The connection was cut on purpose; send nothing."""


def _drop_connection(environ: dict) -> None:
    """Close the client socket under the request handler (simulates a network failure mid-upload)."""
    sock = environ.get("werkzeug.socket")
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def _is_branch(repo: GitRepo, rev: str) -> bool:
    try:
        repo.git("show-ref", "--verify", "--quiet", f"refs/heads/{rev}")
        return True
    except RuntimeError:
        return False


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data), status, content_type=_JSON)
