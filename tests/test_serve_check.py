"""The serve-ready check (`vlhub check`, core/serve_check.py) and its publish gate, on the tiny model.

Both outcomes are deterministic: :mod:`fixtures.steered` rewrites the tiny phi3 model's real weights so
that greedy decoding answers "re" and stops with ``<|end|>`` after 2 tokens, or never stops. Both load
and answer through the transformers worker in the train stage env, with the folder's own chat code and
bundled chat template.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, run_vlhub, train_python
from fixtures.steered import ANSWER, STOP, steer
from vlhub.plugins.devtools.tiny_model import make_tiny_model

EPOCH = "1767225600"  # 2026-01-01T00:00:00Z, so the recorded date is known


def converted(folder: Path) -> Path:
    """A vlhub provenance for the folder, as `vlhub convert` writes it."""
    from vlhub.core import provenance

    provenance.write(folder, {"converter": "internvl-official", "base_model": "OpenGVLab/InternVL2-4B",
                              "template": {"name": "internvl2-phi3", "stop_token_ids": []}})
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("check-models")
    tiny = make_tiny_model(root / "tiny")
    out = {}
    for name, stops in (("stops", True), ("never", False)):
        out[name] = converted(steer(Path(shutil.copytree(tiny, root / name)), stops))
    return out


def check(folder: Path, *args: str) -> tuple[Any, dict[str, Any]]:
    proc = run_vlhub("check", str(folder), *args, "--json", env={"SOURCE_DATE_EPOCH": EPOCH}, timeout=240)
    return proc, (json.loads(proc.stdout) if proc.stdout.strip() else {})


def recorded(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "vlhub_provenance.json").read_text())["serve_check"]


def test_a_folder_that_stops_passes_and_the_result_is_recorded(models: dict[str, Path]) -> None:
    train_python()
    folder = models["stops"]
    before = json.loads((folder / "vlhub_provenance.json").read_text())
    proc, result = check(folder, "--max-new-tokens", "16")
    assert proc.returncode == 0, proc.stderr
    assert (result["status"], result["tokens"], result["stop"], result["answer"]) == ("ok", 2, STOP, ANSWER)
    assert result["template"] == "internvl2-phi3" and result["backend"] == "transformers"
    assert result["reason"] == f"answered and stopped with {STOP} after 2 tokens (limit 16)" and result["recorded"]
    # recorded in the provenance (atomic rewrite): every other field kept as the converter wrote it
    after = json.loads((folder / "vlhub_provenance.json").read_text())
    assert {k: v for k, v in after.items() if k != "serve_check"} == before
    assert after["serve_check"]["date"] == "2026-01-01T00:00:00+00:00" and after["serve_check"]["status"] == "ok"
    assert after["serve_check"]["max_new_tokens"] == 16 and after["serve_check"]["question"]
    from vlhub.core import provenance, serve_check

    assert provenance.read(folder).serve_check["reason_key"] == "check.ok"
    assert serve_check.state(folder)["status"] == "ok"
    # the human output names the outcome in one line
    proc = run_vlhub("check", str(folder), "--max-new-tokens", "16", timeout=240)
    assert proc.returncode == 0 and "serve check ok (transformers, 2 tokens, limit 16)" in proc.stderr


def test_a_folder_that_never_stops_fails_and_its_publish_is_refused(models: dict[str, Path], tmp_path: Path) -> None:
    from servers.git_lfs import GitLfsServer

    train_python()
    folder = models["never"]
    proc, result = check(folder, "--max-new-tokens", "8")
    assert proc.returncode == 1, proc.stderr
    assert (result["status"], result["tokens"], result["stop"]) == ("failed", 8, "")
    assert result["reason_key"] == "check.no_stop"
    assert result["reason"] == "no stop token within 8 tokens: the answer ran on to the limit" and result["answer"]
    assert recorded(folder)["status"] == "failed"

    never_checked = converted(make_tiny_model(tmp_path / "fresh"))
    with GitLfsServer(tmp_path / "srv", token="check-token-4412") as server:
        env = {"VLHUB_GIT_TOKEN": "check-token-4412"}
        url = server.repo_url("org/never-stops")
        refused = run_vlhub("publish", str(folder), "--to", f"git:{url}", env=env)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
        assert refused.stderr.strip().count("\n") == 0, refused.stderr
        assert "its last serve check (2026-01-01T00:00:00+00:00, transformers) failed: no stop token within 8" \
            in refused.stderr and "pass --skip-serve-check to publish it anyway" in refused.stderr
        dry = run_vlhub("publish", str(folder), "--to", f"git:{url}", "--dry-run", env=env)
        assert dry.returncode == 2 and "--skip-serve-check" in dry.stderr  # the dry run says what a publish would
        from vlhub.core.runs import list_runs

        assert not list_runs("publish")  # refused before a publish run was claimed
        skipped = run_vlhub("publish", str(folder), "--to", f"git:{url}", "--dry-run", "--skip-serve-check", env=env)
        assert skipped.returncode == 0, skipped.stderr
        assert "serve check: failed (transformers, 2026-01-01T00:00:00+00:00)" in skipped.stderr
        assert "published anyway (--skip-serve-check)" in skipped.stderr
        fresh = run_vlhub("publish", str(never_checked), "--to", f"git:{url}", "--dry-run", "--json", env=env)
        assert fresh.returncode == 0, fresh.stderr
        (target,) = json.loads(fresh.stdout)["targets"]
        assert target["preflight"]["checks"]["serve_check"] == {"status": "not checked", "skipped": False}
        human = run_vlhub("publish", str(never_checked), "--to", f"git:{url}", "--dry-run", env=env)
        assert "serve check: not checked (run `vlhub check FOLDER` before publishing)" in human.stderr


def test_a_model_that_does_not_load_is_a_recorded_failure(tmp_path: Path) -> None:
    train_python()
    folder = converted(make_tiny_model(tmp_path / "broken"))
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}garbage")
    proc, result = check(folder)
    assert proc.returncode == 1, proc.stderr
    assert result["status"] == "failed" and result["reason_key"] == "check.load_failed" and result["tokens"] is None
    assert result["reason"].startswith("the model did not load or answer with transformers: ")
    assert str(tmp_path) not in json.dumps(recorded(folder))  # the folder is named by its name only


def test_bad_input_is_one_line_exit_2_and_records_nothing(models: dict[str, Path], tmp_path: Path) -> None:
    folder = converted(make_tiny_model(tmp_path / "model"))
    cases = [(("check", str(tmp_path)), "not a model folder (no config.json)"),
             (("check", str(folder), "--backend", "openai"), "Invalid value for '--backend'"),
             (("check", str(folder), "--max-new-tokens", "0"), "Invalid value for '--max-new-tokens'"),
             (("check", str(folder), "--backend", "lmdeploy"), "the lmdeploy chat backend cannot run here"),
             (("check", str(folder), "--engine", "pytorch"), "--engine")]
    for args, needle in cases:
        proc = run_vlhub(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        assert needle in proc.stderr and "Traceback" not in proc.stderr, (args, proc.stderr)
    assert "serve_check" not in json.loads((folder / "vlhub_provenance.json").read_text())


def test_judge_rules() -> None:
    from vlhub.core.serve_check import judge

    words = (STOP,)
    assert judge({"reason": "stop", "tokens": 5, "token": STOP, "eos": []}, "a dish", 64, "t", words)[:2] == \
        ("ok", "check.ok")
    # the folder's own eos counts as a stop; a stop exactly at the limit is still a stop
    assert judge({"reason": "length", "tokens": 64, "token": "</s>", "eos": ["</s>"]}, "x", 64, "t", words)[0] == "ok"
    # stopped on a token that is neither eos nor a stop word of the catalog's template
    status, key, params = judge({"reason": "stop", "tokens": 3, "token": "<|im_end|>", "eos": []}, "x", 64, "t", words)
    assert (status, key, params["stop"], params["words"]) == ("failed", "check.wrong_stop", "<|im_end|>", STOP)
    assert judge({"reason": "stop", "tokens": 1, "token": STOP, "eos": []}, " ", 64, "t", words)[:2] == \
        ("failed", "check.empty")
    assert judge({"reason": "length", "tokens": 64, "token": "x"}, "x x x", 64, "t", words)[:2] == \
        ("failed", "check.no_stop")
    # an OpenAI-compatible server (LMDeploy) names only its finish_reason and usage
    assert judge({"reason": "stop", "tokens": 12}, "a red circle", 64, "", ())[:2] == ("ok", "check.ok_unnamed")
    assert judge({"reason": "length", "tokens": 64}, "a red circle", 64, "", ())[:2] == ("failed", "check.no_stop")


def test_an_openai_compatible_session_says_how_the_answer_ended(tmp_path: Path) -> None:
    from servers.openai_api import OpenAITestServer
    from vlhub.core.serve_check import QUESTION, make_image
    from vlhub.core.types import GenerationSettings, Turn
    from vlhub.plugins.backends.openai_backend import OpenAISession

    image = make_image(tmp_path / "check.png")
    with OpenAITestServer(models=("tuned",)) as srv:
        session = OpenAISession(srv.base_url, "tuned")
        session.stream_options = {"include_usage": True}  # what the lmdeploy backend asks its server for
        answer = "".join(session.reply([Turn("user", QUESTION, [image])], GenerationSettings(0.0, 1.0, 32)))
        assert answer and session.finish == {"reason": "stop"}
        assert srv.requests[-1]["body"]["stream_options"] == {"include_usage": True}
        assert srv.requests[-1]["body"]["max_tokens"] == 32 and srv.requests[-1]["body"]["temperature"] == 0.0


def test_the_publish_page_checks_first_and_offers_to_skip_a_failed_check(models: dict[str, Path],
                                                                        tmp_path: Path) -> None:
    from streamlit.testing.v1 import AppTest

    from test_pages_data import settle

    train_python()
    folder = converted(Path(shutil.copytree(models["stops"], tmp_path / "page-model")))  # never checked
    at = AppTest.from_file(str(ROOT / "streamlit_app" / "views" / "publish.py"), default_timeout=60)
    at.session_state["lang"] = "zh"
    at.run()
    at.text_input(key="publish.folder").set_value(str(folder)).run()
    assert [e.value for e in at.info if "尚未检查" in e.value]
    at.selectbox(key="publish.check.backend").set_value("transformers")
    at.number_input(key="publish.check.limit").set_value(16).run()
    next(b for b in at.button if b.label == "检查").click().run()
    job = settle(at, "check", timeout=240)
    assert job.status == "done", job.data
    assert [e.value for e in at.success
            if e.value.startswith("最近一次检查通过（") and "已回答，并在 2 个 token 后以" in e.value]
    assert recorded(folder)["status"] == "ok" and not [c for c in at.checkbox if c.key == "publish.check.skip"]

    # a failed check: shown in red with its reason, and the choice to publish anyway reaches the command line
    from vlhub.core import provenance

    provenance.update(folder, {"serve_check": {**recorded(folder), "status": "failed", "reason_key": "check.no_stop",
                                               "params": {"limit": 16, "flag": "--max-new-tokens"},
                                               "reason": "no stop token within 16 tokens"}})
    at.run()
    assert [e.value for e in at.error
            if "最近一次检查未通过" in e.value and "16 个 token 内没有出现停止符" in e.value
            and "回答的最多 token 数" in e.value]  # the fix names this page's field, not the CLI flag
    at.checkbox(key="publish.check.skip").check().run()
    at.multiselect(key="publish.publishers").set_value(["git"]).run()
    at.text_input(key="publish.target.git").set_value("https://host/o/n.git").run()
    assert [c for c in at.code if "--skip-serve-check" in c.value and "vlhub publish" in c.value]


def test_provenance_update_keeps_the_converters_fields_and_refuses_a_foreign_folder(tmp_path: Path) -> None:
    from vlhub.core import provenance
    from vlhub.core.errors import BadInput
    from vlhub.core.serve_check import gate, state

    with pytest.raises(BadInput, match="has no vlhub_provenance.json"):
        provenance.update(tmp_path, {"serve_check": {"status": "ok"}})
    assert state(tmp_path) == {"status": "not checked"} and gate(tmp_path)["skipped"] is False
    (tmp_path / "config.json").write_text("{}")
    converted(tmp_path)
    written = json.loads((tmp_path / "vlhub_provenance.json").read_text())
    with pytest.raises(ValueError, match="files"):
        provenance.update(tmp_path, {"files": {}})
    provenance.update(tmp_path, {"serve_check": {"status": "failed", "reason": "r", "date": "d", "backend": "b"}})
    assert json.loads((tmp_path / "vlhub_provenance.json").read_text())["files"] == written["files"]
    with pytest.raises(BadInput) as refused:
        gate(tmp_path)
    assert refused.value.exit_code == 2 and refused.value.key == "check.publish_refused"
    assert gate(tmp_path, skip=True)["skipped"] is True
    (tmp_path / "vlhub_provenance.json").write_text("{not json")
    assert state(tmp_path) == {"status": "not checked"}  # damage is the card preflight's to report
