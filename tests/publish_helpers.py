"""Helpers for the publish tests: a small model folder, tree hashes, a secret scan."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any, Iterator

MB = 1024 * 1024
TEMPLATE = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"


def make_model(folder: Path, shards: dict[str, int] | None = None, seed: int = 0) -> Path:
    """A model folder: config, tokenizer files with a chat template, and random safetensors shards."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"architectures": ["InternVLChatModel"], "model_type": "internvl_chat"}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE, "model_max_length": 4096}))
    (folder / "tokenizer.model").write_bytes(os.urandom(2048))
    (folder / "generation_config.json").write_text("{}\n")
    rng = __import__("random").Random(seed)
    for name, size in (shards or {"model.safetensors": 2 * MB}).items():
        write_random(folder / name, size, rng)
    return folder


def write_safetensors(path: Path, size: int, rng: object = None) -> None:
    """A valid safetensors file of about ``size`` bytes: one U8 tensor ``w`` of random bytes."""
    header = b""
    n = size
    for _ in range(3):  # the header's length depends on n's digits
        header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
        n = max(size - 8 - len(header), 1)
    header = json.dumps({"w": {"dtype": "U8", "shape": [n], "data_offsets": [0, n]}}).encode()
    with open(path, "wb") as out:
        out.write(len(header).to_bytes(8, "little") + header)
    rand = rng or __import__("random").Random()
    with open(path, "ab") as out:
        left = n
        while left:
            k = min(left, MB)
            out.write(rand.randbytes(k))  # type: ignore[attr-defined]
            left -= k


def write_random(path: Path, size: int, rng: object = None) -> None:
    """``size`` pseudo-random bytes, written in 1 MiB pieces (a valid safetensors file of that size for
    a ``*.safetensors`` name: the publish preflight checks its header)."""
    if str(path).endswith(".safetensors") and size >= 128:
        write_safetensors(path, size, rng)
        return
    rand = rng or __import__("random").Random()
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(left, MB)
            out.write(rand.randbytes(n))  # type: ignore[attr-defined]
            left -= n


def publish_git(folder: Path, url: str, token: str, *args: str) -> subprocess.CompletedProcess:
    """``vlhub publish FOLDER --to git:URL ARGS`` with ``token`` as ``VLHUB_GIT_TOKEN`` (user ``user``)."""
    from conftest import run_vlhub

    return run_vlhub("publish", str(folder), "--to", f"git:{url}", *args,
                     env={"VLHUB_GIT_TOKEN": token, "VLHUB_GIT_USER": "user"})


def tree_digest(folder: Path) -> dict[str, str]:
    """Path -> sha256 (and mtime) of every file, to prove a folder was not modified."""
    result = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() or path.is_symlink():
            st = path.lstat()
            result[path.relative_to(folder).as_posix()] = f"{hashlib.sha256(path.read_bytes()).hexdigest()}:{st.st_mtime_ns}"
    return result


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(MB):
            digest.update(chunk)
    return digest.hexdigest()


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under ``root`` whose bytes contain ``needle`` (symlinks not followed)."""
    raw = needle.encode()
    hits = []
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            with open(path, "rb") as handle:
                if raw in handle.read():
                    hits.append(path)
    return hits


def hub_server_class() -> type:
    """The tests' HF/ModelScope API server plus ``POST /api/validate-yaml``.

    huggingface_hub calls it whenever a commit carries a README.md; the shared server
    (tests/servers/hub_api.py) lacks it, so it is added here without editing that file.
    """
    from servers.hub_api import HubApiServer, _json

    class HubServer(HubApiServer):
        def _hf_api(self, req, s):  # type: ignore[no-untyped-def]
            if s == ["validate-yaml"] and req.method == "POST":
                return _json({"errors": [], "warnings": []})
            return super()._hf_api(req, s)

    return HubServer


@contextlib.contextmanager
def git_and_hub(root: Path, token: str, monkeypatch: Any) -> Iterator[tuple[Any, Any]]:
    """A git + LFS server and the HF/ModelScope API server (user ``tester``), their token and endpoints in
    this process's environment (for in-process publishes and page tests)."""
    from servers.git_lfs import GitLfsServer

    with GitLfsServer(root / "git-srv", token=token) as git, hub_server_class()(root / "hub", token=token,
                                                                               user="tester") as hub:
        for key, value in {**hub.env(), "VLHUB_GIT_TOKEN": token, "VLHUB_GIT_USER": "user"}.items():
            monkeypatch.setenv(key, value)
        yield git, hub


class SlowProxy:
    """A TCP proxy on 127.0.0.1 that forwards client->server at most ``rate`` bytes/s (to catch an upload mid-way)."""

    def __init__(self, port: int, rate: int) -> None:
        import socket
        import threading

        self.target, self.rate = port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pipe, args=(client, server, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(server, client, False), daemon=True).start()

    def _pipe(self, src: "object", dst: "object", slow: bool) -> None:
        import time

        try:
            while data := src.recv(64 * 1024):  # type: ignore[attr-defined]
                dst.sendall(data)  # type: ignore[attr-defined]
                if slow:
                    time.sleep(len(data) / self.rate)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()  # type: ignore[attr-defined]
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
