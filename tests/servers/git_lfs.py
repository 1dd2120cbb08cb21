"""A real git smart-HTTP + Git LFS server on 127.0.0.1 for publisher tests.

Git traffic goes through ``git http-backend`` (CGI); the LFS API is giftless
(local storage) mounted at ``/<org>/<name>.git/info/lfs/`` so git-lfs finds it
with no extra config. Everything is served by one threaded werkzeug server.

    with GitLfsServer(tmp_path / "srv", token="secret") as srv:
        env = srv.client_env()                    # GIT_ASKPASS etc.
        subprocess.run(["git", "push", srv.repo_url("org/model"), "main"], env=env)
        assert srv.lfs_bytes_uploaded == 12 * 2**20
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs

import giftless.app  # noqa: F401  (first: giftless.storage alone hits a circular import)
from giftless.auth.identity import Identity
from giftless.storage.local_storage import LocalStorage
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

LFS_POINTER_PREFIX = b"version https://git-lfs.github.com/spec/v1\n"
HF_MAX_BLOB_BYTES = 10 * 1024 * 1024
CHUNK = 1024 * 1024
_ENV_LFS_ROOT = "vlhub.lfs_root"
_DEFAULT: Any = object()  # "use the server's own token/user"
_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PATH_RE = re.compile(rf"^/({_NAME})/({_NAME}?)(?:\.git)?(/.*)?$")
_REPO_RE = re.compile(rf"^({_NAME})/({_NAME}?)(?:\.git)?$")
_OID_RE = re.compile(r"^[0-9a-f]{64}$")

StartResponse = Callable[..., Any]


@dataclass
class RequestRecord:
    """One request as the server saw it (never headers, never credentials)."""

    method: str
    path: str
    query: str
    kind: str  # info-refs, upload-pack, receive-pack, lfs-batch, lfs-upload, lfs-download, lfs-verify, lfs-other, other
    repo: str | None  # "org/name"
    user: str | None  # Basic-auth username, if any
    status: int = 0  # 0: not answered (yet), or dropped on purpose (detail "dropped")
    bytes_in: int = 0  # request body bytes read (after de-chunking)
    bytes_out: int = 0  # response body bytes sent
    detail: str = ""  # e.g. the LFS batch operation ("upload"/"download")


# --------------------------------------------------------------------------- giftless


class _ChunkedFile:
    """A file served in 1 MiB chunks (giftless iterates files line by line)."""

    def __init__(self, path: Path) -> None:
        self._f = path.open("rb")

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self._f.read(CHUNK):
            yield chunk

    def read(self, size: int = -1) -> bytes:
        return self._f.read(size)

    def close(self) -> None:
        self._f.close()


class RequestRootedStorage(LocalStorage):  # type: ignore[misc]
    """giftless LocalStorage whose root comes from the request (one app, many servers).

    Uploads are written to a temp file, checked against their sha256 oid and renamed,
    so an interrupted upload never leaves a partial object behind.
    """

    def __init__(self, **_: Any) -> None:  # no "lfs-storage" dir in the cwd
        self.path = ""

    def _get_path(self, prefix: str, oid: str) -> Path:
        from flask import request

        if not _OID_RE.match(oid):
            from giftless.exc import InvalidPayload

            raise InvalidPayload("invalid oid")
        return Path(request.environ[_ENV_LFS_ROOT]) / prefix / oid

    def get(self, prefix: str, oid: str) -> BinaryIO:
        path = self._get_path(prefix, oid)
        if not path.is_file():
            from giftless.storage.exc import ObjectNotFoundError

            raise ObjectNotFoundError("object not found")
        return _ChunkedFile(path)  # type: ignore[return-value]

    def put(self, prefix: str, oid: str, data_stream: BinaryIO) -> int:
        from giftless.exc import InvalidPayload

        path = self._get_path(prefix, oid)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{oid}.{uuid.uuid4().hex}.part")
        digest, size = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                while chunk := data_stream.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            if digest.hexdigest() != oid:
                raise InvalidPayload(f"content does not match oid {oid}")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return size


class _TrustedIdentity(Identity):
    """Everything allowed: the outer server has already checked Basic auth.

    (giftless's own ``allow_anon:read_write`` denies per-object checks: its
    ``DefaultIdentity.is_authorized`` looks up ``[None][None][oid]``.)
    """

    def is_authorized(self, organization: str, repo: str, permission: Any, oid: str | None = None) -> bool:
        return True


def trusted_identity(_request: Any) -> Identity:
    """giftless auth provider returning `_TrustedIdentity`."""
    return _TrustedIdentity(name="vlhub-test")


_giftless_lock = threading.Lock()
_giftless: Any = None


def _giftless_app() -> Any:
    """The process-wide giftless Flask app (giftless keeps adapters in module globals)."""
    global _giftless
    with _giftless_lock:
        if _giftless is None:
            from giftless.app import init_app

            config = {
                "LEGACY_ENDPOINTS": False,
                "AUTH_PROVIDERS": [f"{__name__}:trusted_identity"],  # auth is ours
                "PRE_AUTHORIZED_ACTION_PROVIDER": None,  # no JWTs: git-lfs reuses Basic auth
                "TRANSFER_ADAPTERS": {
                    "basic": {"options": {"storage_class": f"{__name__}:RequestRootedStorage"}}
                },
            }
            root = logging.getLogger()
            guard = logging.NullHandler()
            root.addHandler(guard)  # keeps init_app's logging.basicConfig a no-op
            try:
                _giftless = init_app(additional_config=config)
            finally:
                root.removeHandler(guard)
        return _giftless


# --------------------------------------------------------------------------- plumbing


class _CountingInput:
    """Wraps wsgi.input, counting the bytes read; optionally stops at `limit`."""

    def __init__(self, stream: Any, limit: int | None = None) -> None:
        self._stream, self._limit, self.count = stream, limit, 0

    def _room(self, size: int) -> int:
        if self._limit is None:
            return size
        left = self._limit - self.count
        return left if size is None or size < 0 else min(size, left)

    def read(self, size: int = -1) -> bytes:
        size = self._room(size)
        if size == 0:
            return b""
        data = self._stream.read(size) if size is not None and size >= 0 else self._stream.read()
        self.count += len(data)
        return data

    def readline(self, size: int = -1) -> bytes:
        size = self._room(size)
        if size == 0:
            return b""
        data = self._stream.readline(size) if size is not None and size >= 0 else self._stream.readline()
        self.count += len(data)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _QuietHandler(WSGIRequestHandler):
    """werkzeug's handler without the per-request access log."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def connection_dropped(self, error: BaseException, environ: Any = None) -> None:
        self.close_connection = True  # don't parse the rest of a dropped upload as a request


_HOOK = '''#!{python}
"""pre-receive: reject blobs over VLHUB_MAX_BLOB_BYTES that are not LFS pointers."""
import os, subprocess, sys

LIMIT = int(os.environ.get("VLHUB_MAX_BLOB_BYTES") or {default})
PREFIX = {prefix!r}


def human(n):
    return f"{{n // 1048576}} MB" if n % 1048576 == 0 else f"{{n}} bytes"


def is_pointer(oid, size):
    if size >= 1024:
        return False
    blob = subprocess.run(["git", "cat-file", "blob", oid], capture_output=True, check=True).stdout
    return blob.startswith(PREFIX)


bad = []
for line in sys.stdin:
    old, new, ref = line.split()
    if set(new) == {{"0"}}:
        continue
    objs = subprocess.run(["git", "rev-list", "--objects", new, "--not", "--all"],
                          capture_output=True, check=True).stdout
    rows = subprocess.run(["git", "cat-file", "--batch-check=%(objectname) %(objecttype) %(objectsize) %(rest)"],
                          input=objs, capture_output=True, check=True).stdout.decode("utf-8", "replace")
    for row in rows.splitlines():
        oid, kind, size, *rest = row.split(" ", 3)
        if kind == "blob" and int(size) > LIMIT and not is_pointer(oid, int(size)):
            bad.append((rest[0] if rest else oid, int(size)))
for path, size in bad:
    print(f"error: file {{path}} ({{size}} bytes) is larger than {{human(LIMIT)}}; "
          f"track it with Git LFS: git lfs track \\"{{path}}\\"", file=sys.stderr)
if bad:
    print(f"error: push rejected: files larger than {{human(LIMIT)}} must be stored with Git LFS",
          file=sys.stderr)
    sys.exit(1)
'''

_ASKPASS = """#!/bin/sh
case "$1" in
  Username*|username*) printf '%s\\n' "$VLHUB_TEST_GIT_USER" ;;
  *) printf '%s\\n' "$VLHUB_TEST_GIT_PASSWORD" ;;
esac
"""

_CLIENT_GITCONFIG = """[user]
\tname = vlhub test server
\temail = server@vlhub.invalid
[init]
\tdefaultBranch = main
[filter "lfs"]
\tclean = git-lfs clean -- %f
\tsmudge = git-lfs smudge -- %f
\tprocess = git-lfs filter-process
\trequired = true
[lfs]
\tlocksverify = false
[credential]
\thelper =
"""


def _split_repo(repo: str) -> tuple[str, str]:
    m = _REPO_RE.match(repo)
    if not m:
        raise ValueError(f"repo must look like 'org/name', got {repo!r}")
    return m.group(1), m.group(2)


def parse_pointer(blob: bytes) -> tuple[str, int] | None:
    """(oid, size) if `blob` is a Git LFS pointer, else None."""
    if len(blob) >= 1024 or not blob.startswith(LFS_POINTER_PREFIX):
        return None
    fields = dict(line.split(" ", 1) for line in blob.decode().splitlines() if " " in line)
    oid = fields.get("oid", "")
    if not oid.startswith("sha256:") or not fields.get("size", "").isdigit():
        return None
    return oid.removeprefix("sha256:"), int(fields["size"])


# --------------------------------------------------------------------------- server


class GitLfsServer:
    """git smart-HTTP (git http-backend) + Git LFS (giftless) on 127.0.0.1.

    Repos live at ``root/<org>/<name>.git``; LFS objects at ``root/.lfs/<org>/<name>/<oid>``;
    client helpers (askpass, gitconfig) at ``root/.client``. The attributes `token`,
    `read_only`, `max_blob_bytes`, `drop_lfs_upload_after`, `autocreate`,
    `before_lfs_upload` and `discard_lfs_uploads` may be changed while the server runs.

    ``before_lfs_upload(oid)`` is called before the body of each LFS PUT is read (a test
    can rewrite the file being uploaded, or sleep); ``discard_lfs_uploads`` makes the
    server read each LFS PUT, answer 200 and store nothing (an object "lost" by the server).
    """

    def __init__(
        self,
        root: Path,
        token: str | None = "secret",
        user: str = "user",
        *,
        autocreate: bool = True,
        default_branch: str = "main",
        max_blob_bytes: int = HF_MAX_BLOB_BYTES,
        read_only: bool = False,
        drop_lfs_upload_after: int | None = None,
        drop_lfs_upload_count: int = 1,
        before_lfs_upload: Callable[[str], None] | None = None,
        discard_lfs_uploads: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        self.token, self.user = token, user
        self.autocreate, self.default_branch = autocreate, default_branch
        self.max_blob_bytes, self.read_only = max_blob_bytes, read_only
        self.drop_lfs_upload_after, self.drop_lfs_upload_count = drop_lfs_upload_after, drop_lfs_upload_count
        self.before_lfs_upload, self.discard_lfs_uploads = before_lfs_upload, discard_lfs_uploads
        self.lfs_root = self.root / ".lfs"
        self.client_dir = self.root / ".client"
        self.requests: list[RequestRecord] = []
        self._lock = threading.Lock()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> GitLfsServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        for d in (self.root, self.lfs_root, self.client_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._write_client_files()
        _giftless_app()
        self._server = make_server("127.0.0.1", 0, self, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="git-lfs-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> GitLfsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    def repo_url(self, repo: str, *, dot_git: bool = False) -> str:
        """Clone URL of ``org/name`` (hub style, no ``.git`` unless asked)."""
        org, name = _split_repo(repo)
        return f"{self.url}/{org}/{name}{'.git' if dot_git else ''}"

    # ---- repos

    def repo_path(self, repo: str) -> Path:
        """Path of the bare repo ``root/org/name.git``."""
        org, name = _split_repo(repo)
        return self.root / org / f"{name}.git"

    def create_repo(self, repo: str, *, default_branch: str | None = None) -> Path:
        """Create the bare repo (idempotent) with receive-pack enabled and the size hook."""
        path = self.repo_path(repo)
        with self._lock:
            if not (path / "HEAD").exists():
                branch = default_branch or self.default_branch
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
                git = ["git", "-C", str(tmp)]
                env = self._server_env()
                subprocess.run(["git", "init", "-q", "--bare", f"--initial-branch={branch}", str(tmp)],
                               env=env, check=True, capture_output=True)
                subprocess.run([*git, "config", "http.receivepack", "true"], env=env, check=True)
                hook = tmp / "hooks" / "pre-receive"
                hook.write_text(_HOOK.format(python=sys.executable, default=HF_MAX_BLOB_BYTES,
                                             prefix=LFS_POINTER_PREFIX))
                hook.chmod(0o755)
                os.replace(tmp, path)
        return path

    def lfs_objects(self, repo: str) -> dict[str, int]:
        """Stored LFS objects of a repo: {oid: size}."""
        org, name = _split_repo(repo)
        folder = self.lfs_root / org / name
        if not folder.is_dir():
            return {}
        return {p.name: p.stat().st_size for p in folder.iterdir() if _OID_RE.match(p.name)}

    def read_blob(self, repo: str, ref: str, path: str) -> bytes:
        """Raw blob at ``ref:path`` in the server's repo (FileNotFoundError if absent)."""
        proc = subprocess.run(["git", "--git-dir", str(self.repo_path(repo)), "cat-file", "blob", f"{ref}:{path}"],
                              env=self._server_env(), capture_output=True)
        if proc.returncode:
            raise FileNotFoundError(f"{repo}@{ref}:{path}: {proc.stderr.decode().strip()}")
        return proc.stdout

    def is_pointer(self, repo: str, ref: str, path: str) -> bool:
        """Whether the server's tree at `ref` holds an LFS pointer for `path`."""
        return parse_pointer(self.read_blob(repo, ref, path)) is not None

    def ls_tree(self, repo: str, ref: str = "HEAD") -> list[str]:
        """File paths in the server's tree at `ref` ([] if the ref does not exist)."""
        proc = subprocess.run(["git", "--git-dir", str(self.repo_path(repo)), "ls-tree", "-r", "--name-only", "-z", ref],
                              env=self._server_env(), capture_output=True)
        return [p for p in proc.stdout.decode().split("\0") if p] if proc.returncode == 0 else []

    # ---- client helpers

    def client_env(self, token: str | None = _DEFAULT, user: str | None = None,
                   base: dict[str, str] | None = None) -> dict[str, str]:
        """Env for git/git-lfs clients: GIT_ASKPASS answering `user`/`token`, private
        gitconfig with the LFS filter, no system/global config, no prompts."""
        env = dict(os.environ if base is None else base)
        for key in ("GIT_DIR", "GIT_WORK_TREE", "GIT_LFS_SKIP_SMUDGE", "SSH_ASKPASS", "GIT_CONFIG_PARAMETERS"):
            env.pop(key, None)
        env.update(
            GIT_ASKPASS=str(self.client_dir / "askpass.sh"),
            VLHUB_TEST_GIT_USER=user or self.user,
            VLHUB_TEST_GIT_PASSWORD=(self.token if token is _DEFAULT else token) or "",
            GIT_TERMINAL_PROMPT="0",
            GIT_CONFIG_NOSYSTEM="1",
            GIT_CONFIG_GLOBAL=str(self.client_dir / "gitconfig"),
        )
        return env

    def clone(self, repo: str, dest: Path, *, branch: str | None = None, lfs: bool = True,
              token: str | None = _DEFAULT) -> Path:
        """Fresh ``git clone`` (smudge skipped) then ``git lfs pull``; returns `dest`."""
        env = self.client_env(token)
        env["GIT_LFS_SKIP_SMUDGE"] = "1"
        cmd = ["git", "clone", "-q", *(["--branch", branch] if branch else []), self.repo_url(repo), str(dest)]
        _run(cmd, env=env)
        empty = subprocess.run(["git", "rev-parse", "--verify", "-q", "HEAD"], cwd=dest, env=env,
                               capture_output=True).returncode != 0
        if lfs and not empty:  # an empty repository (nothing was pushed) clones to an empty folder
            _run(["git", "lfs", "pull"], cwd=Path(dest), env=env)
        return Path(dest)

    # ---- stats

    @property
    def lfs_bytes_uploaded(self) -> int:
        """LFS object bytes received by PUT (including dropped and rejected uploads)."""
        with self._lock:
            return sum(r.bytes_in for r in self.requests if r.kind == "lfs-upload")

    @property
    def lfs_bytes_downloaded(self) -> int:
        """LFS object bytes sent by successful GETs."""
        with self._lock:
            return sum(r.bytes_out for r in self.requests if r.kind == "lfs-download" and r.status == 200)

    def reset_stats(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests.clear()

    # ---- WSGI

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path, query = environ.get("PATH_INFO", ""), environ.get("QUERY_STRING", "")
        m = _PATH_RE.match(path)
        repo = f"{m.group(1)}/{m.group(2)}" if m else None
        rest = (m.group(3) or "") if m else ""
        rec = RequestRecord(environ["REQUEST_METHOD"], path, query, _kind(environ["REQUEST_METHOD"], rest, query),
                            repo, _basic_user(environ))
        self._record(rec)  # recorded now, updated in place: counts are current when the client sees bytes
        if not m or ".." in path:
            return self._reply(rec, start_response, 404, "not found")
        if self.token is not None and _basic_password(environ) != self.token:
            return self._reply(rec, start_response, 401, "authentication required",
                               [("WWW-Authenticate", 'Basic realm="vlhub test git server"')])
        if not self.repo_path(repo).joinpath("HEAD").exists():
            if not self.autocreate:
                return self._reply(rec, start_response, 404, f"repository {repo} not found")
            self.create_repo(repo)
        if rest.startswith("/info/lfs/"):
            return self._lfs(environ, start_response, rec, rest)
        pushing = rec.kind == "receive-pack" or (
            rec.kind == "info-refs" and "git-receive-pack" in parse_qs(query).get("service", []))
        if self.read_only and pushing:
            return self._reply(rec, start_response, 403, "push refused: repository is read-only")
        return self._git(environ, start_response, rec, rest)

    def _record(self, rec: RequestRecord) -> None:
        with self._lock:
            self.requests.append(rec)

    def _reply(self, rec: RequestRecord, start_response: StartResponse, status: int, message: str,
               headers: list[tuple[str, str]] | None = None) -> list[bytes]:
        body = (json.dumps({"message": message}) if rec.kind.startswith("lfs") else message + "\n").encode()
        ctype = "application/vnd.git-lfs+json" if rec.kind.startswith("lfs") else "text/plain"
        start_response(f"{status} {_REASONS.get(status, 'Error')}",
                       [("Content-Type", ctype), ("Content-Length", str(len(body))), *(headers or [])])
        rec.status, rec.bytes_out = status, len(body)
        return [body]

    def _stream(self, rec: RequestRecord, body: Iterable[bytes], counter: _CountingInput,
                cleanup: Callable[[], None] | None = None) -> Iterator[bytes]:
        """Yield `body`, keeping `rec` current before each chunk reaches the client."""
        try:
            for chunk in body:
                rec.bytes_in, rec.bytes_out = counter.count, rec.bytes_out + len(chunk)
                yield chunk
        finally:
            try:
                close = getattr(body, "close", None)
                if close:
                    close()
                if cleanup:
                    cleanup()
            finally:
                rec.bytes_in = counter.count

    def _git(self, environ: dict[str, Any], start_response: StartResponse, rec: RequestRecord,
             rest: str) -> Iterable[bytes]:
        """Run git http-backend as CGI, streaming both bodies."""
        org, name = _split_repo(rec.repo or "")
        chunked = bool(environ.get("wsgi.input_terminated"))
        length = None if chunked else int(environ.get("CONTENT_LENGTH") or 0)
        cgi = self._server_env()
        cgi.update(
            GIT_PROJECT_ROOT=str(self.root), GIT_HTTP_EXPORT_ALL="1",
            PATH_INFO=f"/{org}/{name}.git{rest}", QUERY_STRING=environ.get("QUERY_STRING", ""),
            REQUEST_METHOD=environ["REQUEST_METHOD"], CONTENT_TYPE=environ.get("CONTENT_TYPE", ""),
            REMOTE_USER=rec.user or "anonymous", REMOTE_ADDR=environ.get("REMOTE_ADDR", "127.0.0.1"),
            SERVER_PROTOCOL=environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            VLHUB_MAX_BLOB_BYTES=str(self.max_blob_bytes),
        )
        if length is not None:
            cgi["CONTENT_LENGTH"] = str(length)
        for key in ("HTTP_CONTENT_ENCODING", "HTTP_GIT_PROTOCOL", "HTTP_ACCEPT"):
            if environ.get(key):
                cgi[key] = environ[key]
        counter = _CountingInput(environ["wsgi.input"], length)
        proc = subprocess.Popen(["git", "http-backend"], env=cgi, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        errors: list[bytes] = []

        def feed() -> None:
            try:
                while chunk := counter.read(64 * 1024):
                    proc.stdin.write(chunk)  # type: ignore[union-attr]
            except (BrokenPipeError, OSError):
                pass
            finally:
                try:
                    proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass

        threads = [threading.Thread(target=feed, daemon=True),
                   threading.Thread(target=lambda: errors.append(proc.stderr.read()), daemon=True)]  # type: ignore[union-attr]
        for t in threads:
            t.start()
        status, headers = "200 OK", []
        while (line := proc.stdout.readline().rstrip(b"\r\n")):  # type: ignore[union-attr]
            key, _, value = line.decode("latin-1").partition(":")
            if key.lower() == "status":
                status = value.strip()
            else:
                headers.append((key.strip(), value.strip()))
        rec.status = int(status.split()[0])
        start_response(status, headers)

        def body() -> Iterator[bytes]:
            while chunk := proc.stdout.read1(CHUNK):  # type: ignore[union-attr]
                yield chunk

        def cleanup() -> None:
            proc.stdout.close()  # type: ignore[union-attr]
            proc.wait()
            for t in threads:
                t.join(timeout=30)
            rec.detail = b"".join(errors).decode("utf-8", "replace").strip()

        return self._stream(rec, body(), counter, cleanup)

    def _lfs(self, environ: dict[str, Any], start_response: StartResponse, rec: RequestRecord,
             rest: str) -> Iterable[bytes]:
        """Hand an LFS request to giftless (after our checks), counting bytes."""
        org, name = _split_repo(rec.repo or "")
        environ = dict(environ)
        environ.pop("HTTP_AUTHORIZATION", None)
        environ["PATH_INFO"] = f"/{org}/{name}.git{rest}"
        environ[_ENV_LFS_ROOT] = str(self.lfs_root)
        length = None if environ.get("wsgi.input_terminated") else int(environ.get("CONTENT_LENGTH") or 0)
        counter = _CountingInput(environ["wsgi.input"], length)
        environ["wsgi.input"] = counter
        if rec.kind == "lfs-batch":
            body = counter.read(64 * 1024 * 1024)
            try:
                rec.detail = str(json.loads(body).get("operation", ""))
            except (ValueError, AttributeError):
                pass
            inner = io.BytesIO(body)
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = inner, str(len(body))
            environ.pop("wsgi.input_terminated", None)
        if self.read_only and (rec.kind == "lfs-upload" or rec.detail == "upload"):
            rec.bytes_in = counter.count
            return self._reply(rec, start_response, 403, "push refused: repository is read-only")
        if rec.kind == "lfs-upload" and self._take_drop():
            return self._drop(environ, rec, counter)
        if rec.kind == "lfs-upload" and self.before_lfs_upload is not None:
            self.before_lfs_upload(rest.rsplit("/", 1)[-1])
        if rec.kind == "lfs-upload" and self.discard_lfs_uploads:
            while counter.read(CHUNK):
                pass
            rec.bytes_in, rec.detail = counter.count, "discarded"
            return self._reply(rec, start_response, 200, "")

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            rec.status = int(status.split()[0])
            if rec.kind == "lfs-download" and rec.status == 200 and not any(
                    k.lower() == "content-length" for k, _ in headers):
                obj = self.lfs_root / org / name / rest.rsplit("/", 1)[-1]
                if obj.is_file():
                    headers = [*headers, ("Content-Length", str(obj.stat().st_size))]
            return start_response(status, headers, exc_info)

        return self._stream(rec, _giftless_app()(environ, start), counter)

    def _take_drop(self) -> bool:
        with self._lock:
            if self.drop_lfs_upload_after is None or self.drop_lfs_upload_count <= 0:
                return False
            self.drop_lfs_upload_count -= 1
            return True

    def _drop(self, environ: dict[str, Any], rec: RequestRecord, counter: _CountingInput) -> list[bytes]:
        """Read `drop_lfs_upload_after` bytes of the upload, then cut the connection."""
        left = int(self.drop_lfs_upload_after or 0)
        while left > 0 and (chunk := counter.read(min(left, CHUNK))):
            left -= len(chunk)
        rec.status, rec.bytes_in, rec.detail = 0, counter.count, "dropped"
        sock: socket.socket | None = environ.get("werkzeug.socket")
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        raise ConnectionAbortedError("test server dropped the LFS upload on purpose")

    # ---- internals

    def _server_env(self) -> dict[str, str]:
        """Environment for server-side git: no user/system config."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.client_dir),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "LANG": "C",
        }

    def _write_client_files(self) -> None:
        askpass = self.client_dir / "askpass.sh"
        askpass.write_text(_ASKPASS)
        askpass.chmod(0o700)
        (self.client_dir / "gitconfig").write_text(_CLIENT_GITCONFIG)


_REASONS = {401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}


def _kind(method: str, rest: str, query: str) -> str:
    if rest == "/info/refs":
        return "info-refs"
    if rest in ("/git-upload-pack", "/git-receive-pack"):
        return rest[5:]
    if rest.startswith("/info/lfs/"):
        tail = rest[len("/info/lfs/"):]
        if tail == "objects/batch":
            return "lfs-batch"
        if tail == "objects/storage/verify":
            return "lfs-verify"
        if tail.startswith("objects/storage/"):
            return {"PUT": "lfs-upload", "GET": "lfs-download"}.get(method, "lfs-other")
        return "lfs-other"
    return "other"


def _basic(environ: dict[str, Any]) -> tuple[str, str] | None:
    header = environ.get("HTTP_AUTHORIZATION", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return user, password


def _basic_user(environ: dict[str, Any]) -> str | None:
    creds = _basic(environ)
    return creds[0] if creds else None


def _basic_password(environ: dict[str, Any]) -> str | None:
    creds = _basic(environ)
    return creds[1] if creds else None


def _run(cmd: list[str], *, env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
    return proc.stdout


__all__ = ["GitLfsServer", "RequestRecord", "parse_pointer", "LFS_POINTER_PREFIX", "HF_MAX_BLOB_BYTES"]
