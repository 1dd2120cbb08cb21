"""Text from files is data, and credentials typed into a URL are never kept.

- The model card: provenance text with Jinja syntax (``{{ ... }}``, ``{% ... %}``, ``{#``) is
  rendered literally by ``publish --dry-run`` and by a real publish; nothing is executed.
- User-info in any slot of a URL (``https://TOKEN@host``, ``https://user:TOKEN@host``,
  percent-encoded) is refused for git remotes and never lands in run files, stdout, stderr or
  ``--json``; ``redact`` and the state writer scrub it wherever it comes from.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_vlhub
from publish_helpers import files_containing, make_model, tree_digest
from servers.git_lfs import GitLfsServer

GIT_TOKEN = "gitsecret-c4n4ry-8812"
URL_TOKEN = "urltoken91x7q2m4p8"
PAYLOADS = [
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{% for x in range(3) %}loop{% endfor %}",
    "## Heading {#custom-id}",
    "{{ 7*7 }} and {{ card_data }} {%- raw %}",
]


def _model_with_samples(folder: Path, marker: Path) -> Path:
    model = make_model(folder)
    samples = [{"question": p.replace("MARKER", str(marker)), "answer": p.replace("MARKER", str(marker))}
               for p in PAYLOADS]
    (model / "vlhub_provenance.json").write_text(json.dumps({"samples": samples, "datasets": ["{{ 1+1 }}"]}))
    return model


@pytest.fixture
def git_server(tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch):
    with GitLfsServer(tmp_path / "srv", token=GIT_TOKEN) as server:
        monkeypatch.setenv("VLHUB_GIT_TOKEN", GIT_TOKEN)
        yield server


def test_card_text_from_provenance_is_never_template_source(tmp_path: Path) -> None:
    from vlhub.plugins.publishers.card import model_card

    marker = tmp_path / "PWNED"
    provenance = json.loads(_model_with_samples(tmp_path / "m", marker).joinpath("vlhub_provenance.json").read_text())
    text = model_card("org/name", provenance, {"params": {"lr": "{{ 6*7 }}"}}, False)
    assert not marker.exists()
    for payload in PAYLOADS:
        assert payload.replace("MARKER", str(marker)) in text  # verbatim, not evaluated
    assert "| lr | {{ 6*7 }} |" in text and "42" not in text and "49" not in text
    from huggingface_hub import ModelCard

    assert ModelCard(text).data.to_dict()["pipeline_tag"] == "image-text-to-text"


def test_publish_renders_jinja_in_provenance_as_text(tmp_path: Path, git_server: GitLfsServer) -> None:
    marker = tmp_path / "PWNED"
    model = _model_with_samples(tmp_path / "model", marker)
    before = tree_digest(model)
    url = git_server.repo_url("org/InternVL2-ssti")
    dry = run_vlhub("publish", str(model), "--to", f"git:{url}", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    real = run_vlhub("publish", str(model), "--to", f"git:{url}")
    assert real.returncode == 0, real.stderr
    assert not marker.exists()
    assert tree_digest(model) == before
    card = git_server.read_blob("org/InternVL2-ssti", "HEAD", "README.md").decode()
    assert "{#custom-id}" in card and "{{ 7*7 }}" in card and "loop{% endfor %}" in card

@pytest.mark.parametrize("slot", ["user", "user-percent", "password"])
def test_token_in_url_userinfo_is_refused_and_never_kept(tmp_path: Path, git_server: GitLfsServer,
                                                          isolated: Path, slot: str) -> None:
    model = make_model(tmp_path / "model")
    url = git_server.repo_url("org/InternVL2-userinfo")
    scheme, rest = url.split("://", 1)
    userinfo = {"user": URL_TOKEN, "user-percent": URL_TOKEN.replace("x", "%78"),
                "password": f"me:{URL_TOKEN}"}[slot]
    target = f"git:{scheme}://{userinfo}@{rest}"
    outputs = []
    for extra in ((), ("--json",), ("--dry-run",)):
        proc = run_vlhub("publish", str(model), "--to", target, *extra)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        outputs.append(proc.stdout + proc.stderr)
    assert all(URL_TOKEN not in text and "%78" not in text for text in outputs)
    assert "VLHUB_GIT_TOKEN" in outputs[0]
    assert files_containing(isolated, URL_TOKEN) == []
    assert git_server.ls_tree("org/InternVL2-userinfo") == []  # nothing was pushed


def test_plain_user_name_in_url_is_accepted_but_not_stored(tmp_path: Path, git_server: GitLfsServer,
                                                           isolated: Path) -> None:
    model = make_model(tmp_path / "model")
    url = git_server.repo_url("org/InternVL2-user")
    scheme, rest = url.split("://", 1)
    proc = run_vlhub("publish", str(model), "--to", f"git:{scheme}://alice@{rest}", "--json")
    report = json.loads(proc.stdout)
    assert "alice@" not in proc.stdout + proc.stderr
    run_json = Path(report["run_dir"]) / "run.json"
    assert "alice@" not in run_json.read_text()


def test_redact_scrubs_userinfo_in_every_url_slot() -> None:
    from vlhub.core.secrets import looks_like_token, redact, redact_data, strip_userinfo

    assert redact("see https://abc123def456@h/x") == "see https://***@h/x"
    assert redact("http://u:p4ss@h:1/x and ftp://tok@h") == "http://***@h:1/x and ftp://***@h"
    assert redact("ssh://git@github.com/o/r.git") == "ssh://git@github.com/o/r.git"
    assert redact_data({"targets": ["git:https://tok3n99zz@h/o/r"], "n": 3}) == {"targets": ["git:https://***@h/o/r"], "n": 3}
    clean, user, password = strip_userinfo("https://me:s3cr3t-value@host:8/o/r.git")
    assert (clean, user, password) == ("https://host:8/o/r.git", "me", "s3cr3t-value")
    assert redact("leaked s3cr3t-value in text") == "leaked *** in text"
    assert looks_like_token("ghp_abc") and looks_like_token("hf_x") and looks_like_token("gitcanary-7d1e93ab55")
    assert not looks_like_token("alice") and not looks_like_token("InternLM-team")


def test_error_messages_are_redacted_at_the_source() -> None:
    from vlhub.core.errors import BadInput

    exc = BadInput("cannot reach http://sk-user-token-1234@127.0.0.1:9/v1", "check http://x:y@h")
    assert "sk-user-token-1234" not in exc.one_line() and "x:y@" not in exc.one_line()
    assert "sk-user-token-1234" not in str(exc)
