"""Who may write where, checked before any byte is sent, and every hub SDK error as one line with its fix.

The real SDKs (huggingface_hub, modelscope) and git talk to the tests' stand-ins: the HF/ModelScope API
server (tests/servers/hub_api.py: whoami with organisations, token roles and fine-grained scopes,
repository visibility, injected 401/403/404/5xx answers) and the git + LFS server (read-only remotes,
rejected tokens, missing repositories). Each refusal is asserted as the user sees it (exit code, one
``Error:`` line naming the namespace or flag, ``Fix:``, no exception class name, no traceback) and as what
did not happen (no repository created, no request that writes, no LFS bytes, no commit, the model folder
unchanged).
"""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest

from conftest import run_vlhub
from publish_helpers import hub_server_class, make_model, tree_digest
from servers.git_lfs import GitLfsServer

CANARY = "canary-access-61f0d2aa"
USER = "tester"
#: What an exception class name looks like in a message (HfHubHTTPError, PermissionDeniedError, ...).
CLASS_NAME = re.compile(r"\b[A-Z][A-Za-z0-9]*(Error|Exception)\b")


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Any]:
    with hub_server_class()(tmp_path / "hub", token=CANARY, user=USER,
                            orgs={"LabOrg": "write", "ReadOrg": "read"}) as server:
        yield server


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


def publish(hub: Any, folder: Path, target: str, *args: str) -> subprocess.CompletedProcess:
    env = {**hub.env(), "MODELSCOPE_CACHE": str(folder.parent / "ms-cache")}
    return run_vlhub("publish", str(folder), "--to", target, *args, env=env)


def refused(proc: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The one ``Error:`` line of a refusal that names ``words`` and a fix, with exit ``code``; returned."""
    out = proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == code, out[-1500:]
    assert len(lines) == 1, out[-1500:]
    line = lines[0]
    for word in (*words, "Fix:"):
        assert word in line, (word, line)
    assert not CLASS_NAME.search(line) and "Traceback" not in out and CANARY not in out, line
    return line


def writes(hub: Any) -> list[tuple[str, str, int]]:
    """The requests that change something on the hub (reads that POST are left out)."""
    reads = ("/paths-info/", "/validate-yaml", "/api/v1/login")
    return [r for r in hub.requests if r[0] in ("POST", "PUT", "DELETE") and not any(p in r[1] for p in reads)]


def nothing_sent(hub: Any, repo: str) -> None:
    assert not hub.exists(repo) and writes(hub) == [] and hub.lfs_bytes_uploaded == 0


# ------------------------------------------------------------------ the namespace
@pytest.mark.parametrize("name", ["hf", "modelscope"])
@pytest.mark.parametrize("dry", [True, False])
def test_a_foreign_namespace_is_refused_before_anything_is_sent(hub: Any, model: Path, name: str, dry: bool) -> None:
    before = tree_digest(model)
    proc = publish(hub, model, f"{name}:ExampleLab/InternVL2-food", *(["--dry-run"] if dry else []))
    line = refused(proc, 2, "ExampleLab", f"{name}:{USER}/InternVL2-food")
    if name == "hf":  # whoami lists the organisations: the message names those it may write to
        assert "its namespaces: tester, LabOrg)" in line
    else:  # the ModelScope SDK cannot list them: the user vouches for one with --org-member
        assert "--org-member" in line
    nothing_sent(hub, "ExampleLab/InternVL2-food")
    assert tree_digest(model) == before


def test_an_organisation_with_the_write_role_is_accepted_and_a_read_role_refused(hub: Any, model: Path) -> None:
    proc = publish(hub, model, "hf:LabOrg/InternVL2-food", "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert hub.exists("LabOrg/InternVL2-food") and "config.json" in hub.files("LabOrg/InternVL2-food")
    proc = publish(hub, model, "hf:ReadOrg/InternVL2-food", "--dry-run")
    refused(proc, 2, "the role 'read' in the organisation ReadOrg", "hf:tester/InternVL2-food")
    assert not hub.exists("ReadOrg/InternVL2-food")


def test_modelscope_org_member_vouches_and_the_hub_still_decides(hub: Any, model: Path) -> None:
    proc = publish(hub, model, "modelscope:LabOrg/InternVL2-food", "--org-member", "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "config.json" in hub.files("LabOrg/InternVL2-food")
    # vouched for, but the hub refuses the creation: one line, exit 2, nothing created
    proc = publish(hub, model, "modelscope:ExampleLab/InternVL2-food", "--org-member")
    refused(proc, 2, "ModelScope refused to let the token write to ExampleLab", "HTTP 403")
    assert not hub.exists("ExampleLab/InternVL2-food")


def test_a_read_only_token_is_refused(hub: Any, model: Path) -> None:
    hub.token_role = "read"
    proc = publish(hub, model, f"hf:{USER}/InternVL2-food", "--dry-run")
    refused(proc, 2, "is read-only (role: read)", "huggingface.co/settings/tokens", "HF_TOKEN")
    nothing_sent(hub, f"{USER}/InternVL2-food")


def test_a_fine_grained_token_writes_only_where_it_holds_repo_write(hub: Any, model: Path) -> None:
    hub.create_repo(f"{USER}/Allowed")
    hub.token_role = "fineGrained"
    hub.token_scopes = {USER: ["repo.content.read"], f"{USER}/Allowed": ["repo.content.read", "repo.write"]}
    proc = publish(hub, model, f"hf:{USER}/Other")
    refused(proc, 2, "fine-grained", f"may not write to {USER}", f"it may write to: {USER}/Allowed", "repo.write")
    nothing_sent(hub, f"{USER}/Other")
    proc = publish(hub, model, f"hf:{USER}/Allowed", "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "config.json" in hub.files(f"{USER}/Allowed")


# ------------------------------------------------------------------ visibility
def test_private_with_an_existing_public_repo_is_refused_or_changed_only_when_asked(hub: Any, model: Path) -> None:
    repo = f"{USER}/Public"
    hub.create_repo(repo)
    for name in ("hf", "modelscope"):
        proc = publish(hub, model, f"{name}:{repo}", "--private")
        refused(proc, 2, f"--private was given, but the repository {repo} already exists and is public",
                "pass --make-private")
    assert writes(hub) == [] and hub.commits(repo)[0]["title"] == "initial commit"

    proc = publish(hub, model, f"modelscope:{repo}", "--private", "--make-private")  # its SDK cannot change it
    refused(proc, 2, "--make-private: vlhub cannot change the visibility", f"/models/{repo}")

    dry = publish(hub, model, f"hf:{repo}", "--private", "--make-private", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr[-1500:]
    assert json.loads(dry.stdout)["targets"][0]["preflight"]["checks"]["visibility"] == "public-to-private"
    assert not hub.is_private(repo) and writes(hub) == []  # a dry run changes nothing

    proc = publish(hub, model, f"hf:{repo}", "--private", "--make-private")
    assert proc.returncode == 0, proc.stderr[-1500:]
    assert "repository: existing repository, public: made private before anything is sent" in proc.stderr
    assert hub.is_private(repo) and "config.json" in hub.files(repo)
    paths = [r[1] for r in hub.requests]
    settings = paths.index(f"/api/models/{repo}/settings")
    assert settings < min(i for i, p in enumerate(paths) if "/preupload/" in p or "/commit/" in p)


@pytest.mark.parametrize("name", ["hf", "modelscope"])
def test_every_target_shows_its_visibility(hub: Any, model: Path, name: str) -> None:
    hub.create_repo(f"{USER}/Secret")
    hub.set_private(f"{USER}/Secret", True)
    cases = ((f"{USER}/New", ("--private",), "new-private", "new repository, private"),
             (f"{USER}/New", (), "new-public", "new repository, public"),
             (f"{USER}/Secret", ("--private",), "private", "existing repository, private"),
             (f"{USER}/Secret", (), "private", "existing repository, private"))
    for repo, flags, code, words in cases:
        proc = publish(hub, model, f"{name}:{repo}", "--dry-run", *flags)
        assert proc.returncode == 0 and f"repository: {words}" in proc.stderr, proc.stderr[-1500:]
        proc = publish(hub, model, f"{name}:{repo}", "--dry-run", "--json", *flags)
        assert json.loads(proc.stdout)["targets"][0]["preflight"]["checks"]["visibility"] == code
    proc = publish(hub, model, f"{name}:{USER}/New", "--private", "--json")
    assert proc.returncode == 0 and hub.is_private(f"{USER}/New"), proc.stderr[-1500:]


# ------------------------------------------------------------------ the SDKs' errors
@pytest.mark.parametrize("name, status, path, dry, code, words", [
    ("hf", 401, r"/api/whoami-v2$", True, 2, "the Hugging Face token was rejected by"),
    ("hf", 503, r"/api/whoami-v2$", True, 1, "Hugging Face (http://127.0.0.1"),
    ("hf", 403, r"/api/repos/create$", False, 2, "Hugging Face refused to let the token write to tester"),
    ("hf", 404, r"/preupload/", False, 2, "Hugging Face has no repository tester/InternVL2-err"),
    ("hf", 500, r"/commit/", False, 1, "failed on its side (HTTP 500"),
    ("modelscope", 401, r"/openapi/v1/users/me$", True, 2, "the ModelScope token was rejected by"),
    ("modelscope", 500, r"/openapi/v1/users/me$", True, 1, "ModelScope (http://127.0.0.1"),
    ("modelscope", 403, r"^/api/v1/models$", False, 2, "ModelScope refused to let the token write to tester"),
])
def test_hub_errors_are_one_line_with_a_fix(hub: Any, model: Path, name: str, status: int, path: str, dry: bool,
                                            code: int, words: str) -> None:
    hub.fail(status, path, times=8)  # the SDKs retry some answers: every retry gets the same
    proc = publish(hub, model, f"{name}:{USER}/InternVL2-err", *(["--dry-run"] if dry else []))
    line = refused(proc, code, words, f"{name}:{USER}/InternVL2-err: ")
    assert f"HTTP {status}" in line
    if dry or status == 403:
        assert not hub.exists(f"{USER}/InternVL2-err") and hub.lfs_bytes_uploaded == 0
    if status >= 500:
        assert "retry later" in line
    assert not [r for r in hub.requests if "/commit/" in r[1] and r[2] == 200]  # no commit made


@pytest.mark.parametrize("status, code, key", [(401, 2, "http.unauthorized"), (403, 2, "http.forbidden"),
                                               (404, 2, "http.not_found"), (429, 1, "http.busy"),
                                               (503, 1, "http.server")])
def test_any_sdk_http_answer_becomes_one_keyed_line(hub: Any, monkeypatch: pytest.MonkeyPatch, status: int,
                                                    code: int, key: str) -> None:
    """The boundary words an HTTP error of any SDK the same way, also outside a publisher (a kind, not a case)."""
    from huggingface_hub import HfApi
    from modelscope_hub import HubApi

    from vlhub.core.boundary import user_error

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    calls = (("whoami-v2", lambda: HfApi(endpoint=hub.url, token=CANARY).whoami()),
             ("users/me", lambda: HubApi(endpoint=hub.url, token=CANARY).whoami()))
    for path, call in calls:
        hub.fail(status, path, times=8)
        with pytest.raises(Exception) as caught:
            call()
        hub.failures.clear()
        error = user_error(caught.value)
        assert (error.key, error.exit_code) == (key, code), error.one_line()
        line = error.one_line()
        assert f"HTTP {status}" in line and path in line and "Fix:" in line and not CLASS_NAME.search(line)
        assert "解决办法" in error.localized("zh")


# ------------------------------------------------------------------ git hosts: the remote's answer
@pytest.fixture
def git(tmp_path: Path) -> Iterator[GitLfsServer]:
    with GitLfsServer(tmp_path / "git-srv", token=CANARY, user=USER) as server:
        yield server


def git_publish(git: GitLfsServer, folder: Path, target: str, *args: str, token: str = CANARY) -> subprocess.CompletedProcess:
    env = {"VLHUB_GIT_TOKEN": token, "VLHUB_GIT_USER": USER, "OPENXLAB_TOKEN": token, "OPENXLAB_USER": USER,
           "OPENXLAB_GIT_URL": git.url}
    return run_vlhub("publish", str(folder), "--to", target, *args, env=env)


@pytest.mark.parametrize("name", ["git", "openxlab"])
def test_a_token_that_may_read_but_not_push_is_refused_at_preflight(git: GitLfsServer, model: Path, name: str) -> None:
    git.read_only = True
    target = f"git:{git.repo_url('team/InternVL2-food')}" if name == "git" else "openxlab:team/InternVL2-food"
    for dry in (True, False):
        proc = git_publish(git, model, target, *(["--dry-run"] if dry else []))
        refused(proc, 2, "refused the push service to this token", "team/InternVL2-food", "HTTP 403")
    assert not [r for r in git.requests if r.kind in ("receive-pack", "lfs-upload", "lfs-batch")]
    assert git.lfs_bytes_uploaded == 0
    pushed = subprocess.run(["git", "--git-dir", str(git.repo_path("team/InternVL2-food")), "rev-list", "--all"],
                            capture_output=True, text=True)
    assert pushed.stdout == ""  # no commit reached the remote


@pytest.mark.parametrize("name", ["git", "openxlab"])
def test_a_rejected_git_token_and_a_missing_repository_are_bad_input(git: GitLfsServer, model: Path,
                                                                     name: str) -> None:
    target = f"git:{git.repo_url('team/InternVL2-food')}" if name == "git" else "openxlab:team/InternVL2-food"
    proc = git_publish(git, model, target, "--dry-run", token="wrong-token-5c3e77")
    line = refused(proc, 2, "rejected the credentials", "VLHUB_GIT_TOKEN" if name == "git" else "OPENXLAB_TOKEN")
    assert "wrong-token-5c3e77" not in proc.stderr + proc.stdout and "USER" in line
    git.autocreate = False
    proc = git_publish(git, model, target.replace("InternVL2-food", "never-created"))
    refused(proc, 2, "no repository at", "team/never-created", "create the repository on the host first")
    assert not git.repo_path("team/never-created").exists()


def test_git_visibility_is_not_known_and_cannot_be_changed(git: GitLfsServer, model: Path) -> None:
    target = f"git:{git.repo_url('team/InternVL2-food')}"
    proc = git_publish(git, model, target, "--dry-run", "--private", "--json")
    assert proc.returncode == 0, proc.stderr[-1500:]
    checks = json.loads(proc.stdout)["targets"][0]["preflight"]["checks"]
    assert checks["visibility"] == "unknown"
    assert any(w.startswith("--private: vlhub cannot see or set the visibility") for w in checks["warnings"])
    proc = git_publish(git, model, target, "--make-private")
    refused(proc, 2, "--make-private: vlhub cannot change the visibility of team/InternVL2-food",
            "git has no visibility setting")
    assert not [r for r in git.requests if r.kind == "receive-pack"]


# ------------------------------------------------------------------ the Publish page: the same findings, its words
def table(at: Any, column: str) -> dict[str, list[Any]]:
    """The page's preflight table (the dataframe with ``column``), as columns."""
    return next(d.value.to_dict("list") for d in at.dataframe if column in d.value.columns)


def test_the_publish_page_shows_the_cli_findings_in_its_language_with_its_labels(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from publish_helpers import git_and_hub
    from test_pages_data import settle
    from test_pages_publish import button, choose, page
    from vlhub.streamlit_app.text import catalogue

    zh, model = catalogue("zh"), make_model(tmp_path / "model")
    with git_and_hub(tmp_path, CANARY, monkeypatch) as (_git, hub):
        at = page("zh")
        choose(at, model, {"hf": "ExampleLab/InternVL2-food"})
        button(at, zh["publish.preflight"]).click().run()
        settle(at, "publish")
        summary = table(at, zh["publish.target_col"])
        assert summary[zh["publish.ok"]] == [zh["publish.no"]] and zh["publish.visibility"] in summary
        boxes = [e.value for e in at.error if "ExampleLab" in e.value]
        assert len(boxes) == 1, [e.value for e in at.error]
        assert boxes[0].startswith("hf:ExampleLab/InternVL2-food: 令牌所属账号 tester 无权写入命名空间 ExampleLab")
        assert "解决办法：请发布到 hf:tester/InternVL2-food" in boxes[0] and "Fix" not in boxes[0]
        assert not hub.exists("ExampleLab/InternVL2-food")

        hub.create_repo(f"{USER}/Public")
        at = page("en")
        choose(at, model, {"hf": f"{USER}/Public"})
        at.checkbox(key="publish.opt.private").check().run()
        button(at, "Preflight (send nothing)").click().run()
        settle(at, "publish")
        box = next(e.value for e in at.error if "already exists and is public" in e.value)
        assert "“private” was given" in box and "pass “make private” to make it private" in box
        assert "--private" not in box and "--make-private" not in box  # the page's field labels, not flags
        at.checkbox(key="publish.opt.make_private").check().run()
        button(at, "Preflight (send nothing)").click().run()
        settle(at, "publish")
        summary = table(at, "target")
        assert summary["ok"] == ["yes"], [e.value for e in at.error]
        assert summary["repository"] == ["exists, public: made private before sending"]
        assert not hub.is_private(f"{USER}/Public")
