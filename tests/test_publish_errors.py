"""Publish errors: one line, non-zero exit, before any byte is sent; one failing target does not stop the others."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import make_model, tree_digest
from servers.git_lfs import GitLfsServer

TOKEN = "canary-errors-5a1d"
REPO = "org/InternVL2-err"


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "srv", token=TOKEN) as server:
        yield server


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("Error:")]


@pytest.mark.parametrize("target, words", [
    ("hf:not a name", "not a valid repository name"),
    ("hf:org/na--me", "not a valid repository name"),
    ("modelscope:org/name/extra", "not a valid repository name"),
    ("openxlab:-org/name", "not a valid repository name"),
    ("git:https://user:secret-in-url@example.invalid/o/n.git", "contains a password or token"),
    ("nohub:org/name", "no publisher named 'nohub'"),
    ("hf", "is not NAME:TARGET"),
])
def test_bad_targets(tmp_path: Path, target: str, words: str) -> None:
    model = make_model(tmp_path / "model")
    proc = run_vlhub("publish", str(model), "--to", target)
    assert proc.returncode == 2, proc.stderr
    assert len(error_lines(proc.stderr)) == 1 and words in proc.stderr
    assert "secret-in-url" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_empty_or_incomplete_folder(srv: GitLfsServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {"VLHUB_GIT_TOKEN": TOKEN}
    proc = run_vlhub("publish", str(empty), "--to", f"git:{srv.repo_url(REPO)}", env=env)
    assert proc.returncode == 2 and "is empty: nothing to publish" in proc.stderr
    model = make_model(tmp_path / "model")
    (model / "tokenizer_config.json").write_text("{}")
    proc = run_vlhub("publish", str(model), "--to", f"git:{srv.repo_url(REPO)}", env=env)
    assert proc.returncode == 2 and "no chat template" in proc.stderr and len(error_lines(proc.stderr)) == 1
    assert not [r for r in srv.requests if r.kind in ("lfs-upload", "receive-pack")]


def test_require_keyword(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    proc = run_vlhub("publish", str(model), "--to", f"git:{srv.repo_url('org/plain-model')}", "--dry-run",
                     "--require-keyword", "InternVL", env={"VLHUB_GIT_TOKEN": TOKEN})
    assert proc.returncode == 2 and "does not contain 'InternVL'" in proc.stderr


def test_rejected_token_is_one_line_and_redacted(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    wrong = "wrong-token-77aa11"
    proc = run_vlhub("publish", str(model), "--to", f"git:{srv.repo_url(REPO)}", env={"VLHUB_GIT_TOKEN": wrong})
    assert proc.returncode == 2  # the input (the token) is at fault
    assert len(error_lines(proc.stderr)) == 1 and "rejected the credentials" in proc.stderr
    assert wrong not in proc.stderr + proc.stdout


def test_remote_refusing_the_push(srv: GitLfsServer, tmp_path: Path) -> None:
    srv.max_blob_bytes = 100  # the server's pre-receive hook now refuses our small JSON files
    model = make_model(tmp_path / "model")
    proc = run_vlhub("publish", str(model), "--to", f"git:{srv.repo_url(REPO)}", env={"VLHUB_GIT_TOKEN": TOKEN})
    assert proc.returncode == 1 and "refused the push" in proc.stderr, proc.stderr[-600:]
    assert len(error_lines(proc.stderr)) == 1


def test_missing_git_lfs(tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to("/usr/bin/git")
    proc = run_vlhub("publish", str(model), "--to", "git:http://127.0.0.1:9/org/InternVL2-x",
                     env={"PATH": str(bin_dir)})
    assert proc.returncode == 2 and "git-lfs is not installed" in proc.stderr


def test_one_failing_target_does_not_stop_the_others(srv: GitLfsServer, tmp_path: Path) -> None:
    model = make_model(tmp_path / "model")
    before = tree_digest(model)
    proc = run_vlhub("publish", str(model), "--to", "openxlab:org/InternVL2-x", "--to", f"git:{srv.repo_url(REPO)}",
                     "--json", env={"VLHUB_GIT_TOKEN": TOKEN})
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    bad, good = report["targets"]
    assert not bad["ok"] and "no OpenXLab token" in bad["error"]
    assert good["ok"] and good["result"]["changed"]
    assert "config.json" in srv.ls_tree(REPO, "main")
    assert tree_digest(model) == before
    run = json.loads((Path(report["run_dir"]) / "run.json").read_text())
    assert run["status"] == "failed" and len(run["results"]) == 2
    assert TOKEN not in json.dumps(run) and os.environ.get("VLHUB_GIT_TOKEN") is None


SIGNED = ("https://bucket.s3.amazonaws.com/repos/ab/cd/obj?X-Amz-Algorithm=AWS4-HMAC-SHA256"
          "&X-Amz-Credential=AKIAEXAMPLE%2F20261201%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20261201T000000Z"
          "&X-Amz-Expires=86400&X-Amz-Security-Token=FwoGZXIvYXdzEXAMPLE&X-Amz-SignedHeaders=host"
          "&X-Amz-Signature=0f1e2d3c4b5a69788796a5b4c3d2e1f0")


@pytest.mark.parametrize("text, secrets", [
    (f"Retrying in 1s [Retry 1/5]. 'Connection reset' thrown while requesting PUT {SIGNED}",
     ["AKIAEXAMPLE", "FwoGZXIvYXdzEXAMPLE", "0f1e2d3c4b5a69788796a5b4c3d2e1f0"]),
    ("upload failed: https://cdn.example/x?Expires=1&Signature=sEcReTsIg&Key-Pair-Id=K1", ["sEcReTsIg"]),
    ("GET https://hub.example/lfs-objects/ab?sig=abcdef123456 (403)", ["abcdef123456"]),
    ("https://ms.example/api?token=tok-xyz-987&x=1;access_token=at-555 and ?api_key=ak-1&key=k-2",
     ["tok-xyz-987", "at-555", "ak-1", "k-2"]),
    ("<a href=\"https://h/x?a=1&amp;token=amp-secret-1\">", ["amp-secret-1"]),
])
def test_signed_url_parameters_are_redacted(text: str, secrets: list[str]) -> None:
    from vlhub.core.secrets import redact

    out = redact(text)
    for secret in secrets:
        assert secret not in out, out
    assert "***" in out
    assert "X-Amz-Date=20261201T000000Z" in redact(SIGNED)  # parameters that are no secret stay
    assert redact("a primary key=value in prose, monkey=1") == "a primary key=value in prose, monkey=1"


def test_sdk_log_handlers_redact_signed_urls(capsys: pytest.CaptureFixture[str]) -> None:
    """An SDK's own handler (huggingface_hub and modelscope attach one) prints retry warnings redacted."""
    import logging
    import sys

    from vlhub.plugins.publishers.common import redact_sdk_logging

    logger = logging.getLogger("vlhub-test-sdk")
    handler = logging.StreamHandler(sys.stderr)
    logger.addHandler(handler)
    logger.propagate = False
    try:
        redact_sdk_logging("vlhub-test-sdk")
        redact_sdk_logging("vlhub-test-sdk")  # idempotent
        logging.getLogger("vlhub-test-sdk.http").warning("Retrying PUT %s", SIGNED)
        logger.warning("thrown while requesting %s", SIGNED)
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert err.count("Retrying PUT") == 1 and "0f1e2d3c4b5a69788796a5b4c3d2e1f0" not in err and "AKIAEXAMPLE" not in err
    assert "X-Amz-Signature=***" in err and len(handler.filters) == 1
