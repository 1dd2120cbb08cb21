"""`vlhub data download`: hub refusals become one clear line (local HTTP server, no internet); zip extraction."""
from __future__ import annotations

import http.server
import threading
import zipfile
from pathlib import Path
from typing import Iterator

import httpx2
import pytest
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError
from huggingface_hub.utils import hf_raise_for_status

from conftest import run_vlhub
from fixtures.datasets import make_foodieqa
from vlhub.core.errors import BadInput
from vlhub.plugins.datasets.hub import extract_zip, hub_error

REPO = "lyan62/FoodieQA"
URL = f"https://huggingface.co/api/datasets/{REPO}/revision/main"


def raised(status: int, headers: dict[str, str] | None = None, url: str = URL) -> Exception:
    """The exception huggingface_hub itself raises for this response."""
    response = httpx2.Response(status, headers=headers or {}, request=httpx2.Request("GET", url))
    with pytest.raises(HfHubHTTPError) as info:
        hf_raise_for_status(response)
    return info.value


def test_gated_and_unauthorised_errors_say_how_to_get_access() -> None:
    gated = raised(403, {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to dataset is restricted."})
    unauthorised = raised(401)
    forbidden = raised(403)
    assert isinstance(gated, GatedRepoError) and isinstance(unauthorised, RepositoryNotFoundError)
    for exc, status in ((gated, 403), (unauthorised, 401), (forbidden, 403)):
        error = hub_error(exc, REPO)
        assert error.exit_code == 1
        assert f"refused access to the gated dataset {REPO} (HTTP {status})" in error.one_line()
        assert "request access on the dataset page" in error.one_line() and "`hf auth login`" in error.one_line()
    missing = hub_error(raised(404, {"X-Error-Code": "RepoNotFound"}), REPO)
    assert isinstance(missing, BadInput) and "was not found" in missing.message


class _Refuse(http.server.BaseHTTPRequestHandler):
    status = 403
    headers_out = {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to dataset lyan62/FoodieQA is restricted."}

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        body = b'{"error": "Access to this dataset is restricted."}'
        self.send_response(self.status)
        for key, value in self.headers_out.items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hub() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_of_a_gated_dataset_is_one_line(tmp_path: Path, hub: str) -> None:
    proc = run_vlhub("data", "download", "foodieqa", "--out", str(tmp_path / "dl"),
                     env={"HF_ENDPOINT": hub, "HF_TOKEN": "hf_" + "x" * 30, "HF_HUB_DISABLE_TELEMETRY": "1"},
                     timeout=120)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: the Hub refused access to the gated dataset lyan62/FoodieQA (HTTP 403)")
    assert "request access on the dataset page" in lines[-1] and "hf auth login" in lines[-1]
    assert "Traceback" not in proc.stderr and "hf_xxxx" not in proc.stderr
    assert proc.stdout == ""


def test_download_needs_a_downloadable_dataset(tmp_path: Path) -> None:
    proc = run_vlhub("data", "download", "clot", "--out", str(tmp_path / "dl"))
    assert proc.returncode == 2 and "cannot be downloaded by vlhub (downloadable: foodieqa)" in proc.stderr


def test_extract_zip_restores_the_hub_layout_and_refuses_escapes(tmp_path: Path) -> None:
    root = make_foodieqa(tmp_path / "src")
    archive = tmp_path / "FoodieQA.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(root.rglob("*")):
            zf.write(path, f"FoodieQA/{path.relative_to(root)}")
        zf.writestr("__MACOSX/FoodieQA/._sivqa_tidy.json", b"junk")
    extract_zip(archive, tmp_path / "dl")
    assert (tmp_path / "dl/FoodieQA/sivqa_tidy.json").read_bytes() == (root / "sivqa_tidy.json").read_bytes()
    assert not (tmp_path / "dl/__MACOSX").exists()
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../escaped.txt", b"x")
    with pytest.raises(BadInput, match="outside the folder"):
        extract_zip(evil, tmp_path / "dl2")
    assert not (tmp_path / "escaped.txt").exists()
