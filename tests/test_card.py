"""The model card a publish generates (plugins/publishers/card.py) for a finished vlhub run.

The fixture builds the real files: a FoodieQA folder prepared by the plugin, a training run
folder (``run.json`` with the xtuner trainer's settings, ``metrics.jsonl``), a converted model
folder with its ``vlhub_provenance.json`` (written by :func:`vlhub.core.provenance.write`) and an
``eval`` run recorded by :func:`vlhub.core.eval.evaluate_models` itself (scripted answers: the
base model is right on every other question, the fine-tuned one on all but one).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from fixtures.datasets import make_foodieqa
from publish_helpers import make_model

REPO = "me/InternVL2-2B-food"
BASE_ID = "OpenGVLab/InternVL2-2B"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


class Scripted:
    """A conversation whose answers are scripted per question (what :func:`evaluate_models` asks)."""

    def __init__(self, model: str, items: dict[Any, dict[str, Any]], right: Any) -> None:
        self.model, self.backend, self.items, self.right = model, "scripted", items, right
        self.history: list[Any] = []
        self.settings: Any = None
        self.session: Any = None  # no backend session (core.eval asks it for its concurrency)

    def clear(self) -> None:
        self.history = []

    def answer(self, prompt: str, images: list[Path]) -> str:
        item = self.items[prompt, tuple(map(str, images))]
        picked = item["answer"] if self.right(item["index"]) else (item["answer"] + 1) % len(item["choices"])
        return "ABCD"[picked]

    def reply_once(self, prompt: str, images: list[Path]) -> str:
        """One question asked alone (what :func:`evaluate` asks of a conversation)."""
        return self.answer(prompt, images)

    def __enter__(self) -> "Scripted":
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


def _finished_run(tmp_path: Path, *, base: Path, prepared: Path, losses: int = 30) -> Any:
    """A training run folder in the format ``vlhub train`` leaves (``run.json``, ``metrics.jsonl``)."""
    from vlhub.core.runs import new_run
    from vlhub.plugins.trainers.settings import Settings

    settings = {**Settings(lr=4e-5, image_root=str(tmp_path / "src"), eval_image=str(tmp_path / "x.jpg")).public(),
                "template": "internlm2_chat"}
    run = new_run("train", trainer="xtuner", model=str(base), data=str(prepared), options={"lr": "4e-5"})
    run.update(status="finished", config=str(run.dir / "config.py"),
               plan={"run_id": run.id, "run_dir": str(run.dir), "config": str(run.dir / "config.py"),
                     "command": ["xtuner", "train", str(run.dir / "config.py")], "env": {}, "dataset": {},
                     "settings": settings, "warnings": []})
    with open(run.dir / "metrics.jsonl", "w", encoding="utf-8") as out:
        for i in range(1, losses + 1):
            row = {"iter": i, "total": losses, "lr": 4e-5, "loss": round(2.0 / i + 0.1, 4), "grad_norm": 1.0,
                   "logged": "2026/11/24 07:15:00"}
            if i % 10 == 0:
                row["val_loss"] = round(2.2 / i + 0.2, 4)
            out.write(json.dumps(row) + "\n")
        out.write('{"iter": 31, "lo')  # a torn last line
    return run


@pytest.fixture
def finished(tmp_path: Path) -> dict[str, Any]:
    """A converted model folder from a finished FoodieQA run, and an eval run of it and its base."""
    from vlhub.core import data as dataapi
    from vlhub.core import provenance
    from vlhub.core.chat import plain_prompt
    from vlhub.core.eval import evaluate_models, load_set

    prepared = tmp_path / "prepared"
    dataapi.prepare("foodieqa", make_foodieqa(tmp_path / "src"), prepared,
                    {"subsets": "sivqa", "val_fraction": 0.5, "seed": 1})
    # the base model as the Hugging Face cache holds it (its id is in the path)
    base = make_model(tmp_path / "hf" / "hub" / "models--OpenGVLab--InternVL2-2B" / "snapshots" / "0a1b2c3d")
    run = _finished_run(tmp_path, base=base, prepared=prepared)
    model = make_model(tmp_path / "out" / "InternVL2-2B-food")
    (model / "config.json").write_text(json.dumps({"architectures": ["InternVLChatModel"],
                                                   "model_type": "internvl_chat", "force_image_size": 448}))
    provenance.write(model, {
        "converter": "internvl-official", "base_model": str(base), "run": {"id": run.id, "dir": str(run.dir)},
        "checkpoint": {"path": str(run.dir / "work" / "iter_30.pth"), "layout": "file", "step": 30},
        "config": str(run.dir / "config.py"), "model_type": "InternVL_V1_5",
        "template": {"name": "internvl2-internlm2", "xtuner_template": "internlm2_chat",
                     "lmdeploy_name": "internvl2-internlm2", "stop_token_ids": [2]},
        "remote_code_copied": [], "stage_versions": {}, "verified": {"ok": True}})

    items = {(plain_prompt(it["prompt"]), tuple(map(str, it["images"]))): it
             for it in load_set(prepared)["items"]}
    report = evaluate_models([lambda: Scripted(str(base), items, lambda i: i % 2 == 0),
                              lambda: Scripted(str(model), items, lambda i: i != 2)], prepared)
    return {"model": model, "base": base, "run": run, "eval": report, "tmp": tmp_path, "prepared": prepared}


def _names(folder: Path) -> set[str]:
    from vlhub.core.publishing import scan

    return {f.path for f in scan(folder, follow_symlinks=True).files}


def _extras(folder: Path, **kwargs: Any) -> dict[str, bytes]:
    from vlhub.plugins.publishers import card

    return card.extra_files(folder, _names(folder), REPO, None, False, **kwargs)


def _no_local_paths(extras: dict[str, bytes], *roots: Path) -> None:
    homes = {os.environ["HOME"], str(Path.home()), "/tmp", *(str(r) for r in roots)}
    for path, data in extras.items():
        text = data.decode("utf-8")
        for home in homes:
            assert home not in text, f"{path} holds the local path {home}"


def test_card_of_a_finished_run(finished: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard

    model, report = finished["model"], finished["eval"]
    extras = _extras(model)
    assert {"README.md", "assets/loss.svg", "vlhub_provenance.json"} <= set(extras)
    text = extras["README.md"].decode()
    card = ModelCard(text)
    meta = card.data.to_dict()

    # metadata: base model (from the base folder's cache path), the dataset by hub id, its license
    assert meta["base_model"] == BASE_ID and meta["datasets"] == ["lyan62/FoodieQA"]
    assert "foodieqa" not in meta["datasets"] and meta["license"] == "cc-by-nc-nd-4.0"
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "transformers"

    # model-index, parsed back by huggingface_hub
    base, mine = report["results"]
    (result,) = card.data.eval_results
    assert result.task_type == "visual-question-answering" and result.metric_type == "accuracy"
    assert result.dataset_type == result.dataset_name == "lyan62/FoodieQA" and result.dataset_split == "validation"
    assert result.metric_value == pytest.approx(mine["accuracy"], abs=1e-4)
    assert card.data.model_name == REPO

    # the eval table: overall and per category, before and after
    assert f"| base model: {BASE_ID} | {base['accuracy'] * 100:.1f}% |" in text
    assert f"| **this model** | {mine['accuracy'] * 100:.1f}% |" in text
    assert f"{mine['correct']}/{mine['n']}" in text and f"{base['correct']}/{base['n']}" in text
    assert report["fixed"] and report["broken"]
    assert f"{len(report['fixed'])}; broken (right before, wrong after): {len(report['broken'])}." in text
    for field in ("food_type", "main_region"):
        assert f"**By {field}**" in text and f"**按 {field}**" in text
        for value, after in mine["categories"][field].items():
            before = base["categories"][field][value]
            assert f"| {value} | {after['n']} | {before['accuracy'] * 100:.1f}% | {after['accuracy'] * 100:.1f}% |" \
                in text
    # trainer, hyper-parameters (no machine settings), plot
    assert "Trainer: `xtuner`" in text and "| lr | 4e-05 |" in text and "| method | lora |" in text
    assert "master_addr" not in text and "image_root" not in text and "eval_image" not in text
    assert "![training loss](assets/loss.svg)" in text and "(and validation loss)" in text
    svg = extras["assets/loss.svg"].decode()
    assert svg.startswith("<svg") and svg.count("<polyline") == 2 and "over 30 steps" in svg
    # 3-5 sample answers, text only (FoodieQA's images are never shown or sent)
    samples = text.split("### Sample answers", 1)[1].split("###", 1)[0]
    assert 3 <= samples.count("**Q:**") <= 5 and "(this model)" in samples and "(base model)" in samples
    assert "**答：** （本模型）" in text
    assert not [p for p in extras if p.lower().endswith(IMAGE_SUFFIXES)]
    assert not re.search(r"!\[[^\]]*\]\((?!assets/loss\.svg)", text)  # the plot is the card's only image
    # the data: named and linked by hub id, its license and its evaluation-only terms
    assert "[lyan62/FoodieQA](https://huggingface.co/datasets/lyan62/FoodieQA)" in text
    assert "for evaluation only" in text and "仅限评测使用" in text
    assert "https://creativecommons.org/licenses/by-nc-nd/4.0/" in text
    # how to chat, both ways; zh and en sections
    assert f'AutoModel.from_pretrained("{REPO}"' in text and "T.Resize((448, 448))" in text
    assert f'pipeline("{REPO}", chat_template_config=ChatTemplateConfig("internvl2-internlm2"))' in text
    for heading in ("## English", "## 中文", "### Evaluation", "### 评测", "### How to chat with it",
                    "### 如何对话", "### License", "### 许可证", "### Training data", "### 训练数据", "### 示例回答"):
        assert f"\n{heading}\n" in text, heading
    # no local path anywhere in what is sent beside the folder
    _no_local_paths(extras, finished["tmp"], finished["base"], finished["run"].dir)
    Path(os.environ.get("CARD_DUMP", "/dev/null")).write_text(text)
    assert "<!-- the base model is unknown" not in text


def test_the_newest_eval_with_the_base_is_used_and_an_older_one_ignored(finished: dict[str, Any]) -> None:
    from vlhub.core.chat import plain_prompt
    from vlhub.core.eval import evaluate_models, load_set
    from vlhub.plugins.publishers import card

    model = finished["model"]
    items = {(plain_prompt(it["prompt"]), tuple(map(str, it["images"]))): it
             for it in load_set(finished["prepared"])["items"]}
    # a newer evaluation of this folder alone: the one with the base model (before/after) is preferred
    evaluate_models([lambda: Scripted(str(model), items, lambda i: True)], finished["prepared"])
    found = card.find_evaluation(model, card.gather(model, _names(model)))
    assert found is not None and found.run_id == finished["eval"]["run_id"] and found.base is not None
    # a folder no evaluation asked has no evaluation table, and the preflight says so
    other = make_model(finished["tmp"] / "other")
    (other / "vlhub_provenance.json").write_text(json.dumps({"base_model": BASE_ID}))
    text = _extras(other)["README.md"].decode()
    assert "### Evaluation" not in text and "model-index" not in text
    assert any("no `vlhub eval` run" in n for n in card.checks(other, _names(other))["card_notes"])


def test_template_syntax_in_a_provenance_sample_renders_as_text(finished: dict[str, Any]) -> None:
    from vlhub.core import provenance

    model = finished["model"]
    marker = finished["tmp"] / "PWNED"
    payloads = ["{{ 7*7 }}", "{% for x in range(3) %}loop{% endfor %}", "{#custom-id}",
                f"{{{{ cycler.__init__.__globals__.os.system('touch {marker}') }}}}", "{{ card_data }} {%- raw %}"]
    data = json.loads((model / provenance.PROVENANCE).read_text())
    data["samples"] = [{"question": p, "answer": p} for p in payloads]
    (model / provenance.PROVENANCE).write_text(json.dumps(data))
    text = _extras(model)["README.md"].decode()
    assert not marker.exists()
    for payload in payloads:
        assert f"**Q:** {payload}" in text and f"**A:** {payload}" in text and f"**问：** {payload}" in text
    assert "loop loop loop" not in text and "looploop" not in text


def test_samples_show_only_images_the_user_supplies_in_the_folder(finished: dict[str, Any]) -> None:
    from vlhub.core import provenance

    model = finished["model"]
    (model / "samples").mkdir()
    (model / "samples" / "my dish.jpg").write_bytes(b"\xff\xd8\xff\xe0 my own photo")
    data = json.loads((model / provenance.PROVENANCE).read_text())
    data["samples"] = [{"question": "图中是什么菜？", "answer": "麻婆豆腐", "image": "samples/my dish.jpg"},
                       {"question": "q2", "answer": "a2", "image": str(finished["tmp"] / "src" / "x.jpg")},
                       {"question": "q3", "answer": "a3", "image": "../outside.jpg"}]
    (model / provenance.PROVENANCE).write_text(json.dumps(data))
    extras = _extras(model)
    text = extras["README.md"].decode()
    assert "![sample](samples/my%20dish.jpg)" in text and text.count("![sample]") == 2  # en and zh
    assert "outside.jpg" not in text and not [p for p in extras if p.lower().endswith(IMAGE_SUFFIXES)]
    _no_local_paths(extras, finished["tmp"])


def test_modelscope_card_has_its_template_metadata_and_configuration(finished: dict[str, Any]) -> None:
    from huggingface_hub import ModelCard
    from huggingface_hub.repocard import metadata_load

    import modelscope

    model = finished["model"]
    template = Path(modelscope.__file__).parent / "cli" / "template" / "readme.tpl"
    expected = metadata_load(template)  # the front matter ModelScope's own card template writes
    extras = _extras(model, modelscope=True)
    text = extras["README.md"].decode()
    meta = ModelCard(text).data.to_dict()
    assert set(expected) <= set(meta) and {"frameworks", "tasks", "license"} <= set(meta)
    assert meta["frameworks"] == ["pytorch"] and meta["tasks"] == ["visual-question-answering"]
    assert meta["license"] == "cc-by-nc-nd-4.0" and meta["base_model"] == BASE_ID
    # not the template's unfinished state ("预发布" page, "please complete the card")
    unfinished = [line.strip("# ").strip() for line in template.read_text().splitlines() if line.startswith("######")]
    assert unfinished and not [line for line in unfinished if line[:12] in text]
    assert "https://www.modelscope.cn/models/OpenGVLab/InternVL2-2B" in text
    assert f'snapshot_download("{REPO}")' in text and f"git clone https://www.modelscope.cn/{REPO}.git" in text
    configuration = json.loads(extras["configuration.json"])
    assert configuration == {"framework": "pytorch", "task": "visual-question-answering", "allow_remote": True}
    _no_local_paths(extras, finished["tmp"])

    # a folder with its own configuration.json keeps it; the card's task follows it
    (model / "configuration.json").write_text(json.dumps({"framework": "pytorch", "task": "multimodal-dialogue"}))
    extras = _extras(model, modelscope=True)
    assert "configuration.json" not in extras
    assert ModelCard(extras["README.md"].decode()).data.to_dict()["tasks"] == ["multimodal-dialogue"]
    # ModelScope spells the licenses it lists its own way (readme.tpl: "Apache License 2.0")
    data = json.loads((model / "vlhub_provenance.json").read_text())
    (model / "vlhub_provenance.json").write_text(json.dumps({**data, "license": "apache-2.0"}))
    assert ModelCard(_extras(model, modelscope=True)["README.md"].decode()).data.license == "Apache License 2.0"
    assert ModelCard(_extras(model)["README.md"].decode()).data.license == "apache-2.0"


def test_base_model_from_flag_readme_config_or_unknown(tmp_path: Path) -> None:
    from vlhub.plugins.publishers import card

    base = make_model(tmp_path / "share" / "InternVL2-2B")
    model = make_model(tmp_path / "out")
    (model / "vlhub_provenance.json").write_text(json.dumps({"base_model": str(base)}))

    def base_of(**kwargs: Any) -> tuple[str, dict[str, Any], str]:
        text = _extras(model, **kwargs)["README.md"].decode()
        return text, card.checks(model, _names(model), kwargs.get("base_model")), text.split("---", 2)[1]

    # unknown: the card names no base model (never the local folder) and the preflight says so
    text, checks, front = base_of()
    assert "base_model" not in front and checks["card_base_model"] is None
    assert any("--base-model ORG/NAME" in note for note in checks["card_notes"])
    assert "<!-- the base model is unknown" in text
    _no_local_paths({"README.md": text.encode()}, tmp_path)
    # --base-model (the publishers' option) names it; a local path given there is refused
    text, checks, front = base_of(base_model=BASE_ID)
    assert f"base_model: {BASE_ID}" in front and checks["card_base_model_from"] == "--base-model"
    text, checks, front = base_of(base_model=str(base))
    assert "base_model" not in front and any("not a hub id" in n for n in checks["card_notes"])
    # the base folder's config.json _name_or_path (a hub id; a local path there is not one)
    (base / "config.json").write_text(json.dumps({"_name_or_path": "/mnt/petrelfs/InternVL2-2B"}))
    assert "base_model" not in base_of()[2]
    (base / "config.json").write_text(json.dumps({"_name_or_path": BASE_ID}))
    assert f"base_model: {BASE_ID}" in base_of()[2]
    # its README.md front matter (base_model), which comes first
    (base / "README.md").write_text("---\nlicense: mit\nbase_model: OpenGVLab/InternVL2-1B\n---\n# InternVL2\n")
    text, checks, front = base_of()
    assert "base_model: OpenGVLab/InternVL2-1B" in front and "README.md" in checks["card_base_model_from"]
    assert "license: mit" in front  # no license recorded anywhere else: the base model's
    # a model-index name there is the folder's own id (base_model is its parent's)
    (base / "README.md").write_text("---\nbase_model: OpenGVLab/InternVL2-1B\nmodel-index:\n- name: me/InternVL2-2B-ft\n"
                                    "  results: []\n---\n")
    assert "base_model: me/InternVL2-2B-ft" in base_of()[2]
    # the flag wins over everything the folder says
    assert f"base_model: {BASE_ID}" in base_of(base_model=BASE_ID)[2]


def test_base_model_option_is_a_publish_flag() -> None:
    from conftest import run_vlhub
    from vlhub.plugins.publishers.common import COMMON_OPTIONS

    assert "base_model" in [o.name for o in COMMON_OPTIONS]
    shown = run_vlhub("publish", "--help")
    assert shown.returncode == 0 and "--base-model" in shown.stdout


def test_dataset_plugins_declare_card_data() -> None:
    from vlhub.core import plugins
    from vlhub.core.types import Dataset

    found = plugins.registry("datasets")
    assert found["foodieqa"].card_data == {
        "hub_id": "lyan62/FoodieQA", "license": "cc-by-nc-nd-4.0",
        "license_url": "https://creativecommons.org/licenses/by-nc-nd/4.0/", "evaluation_only": True}
    assert found["clot"].card_data["hub_id"] == "zhongshsh/CLoT-Oogiri-GO"
    assert not hasattr(found["llava-json"], "card_data")  # any local file: the card names no dataset
    assert "card_data" in (Dataset.__doc__ or "")


def test_local_data_is_never_named_by_its_plugin(tmp_path: Path) -> None:
    from vlhub.core import provenance as prov
    from vlhub.plugins.publishers import card

    facts = card.collect(None, set(), prov.from_dict({}), {"dataset": "llava-json", "params": {"lr": 1e-5}})
    assert facts.local_data and facts.train_data == []
    text = card.render(REPO, facts, False)
    assert "llava-json" not in text and "local data (not published on a hub)" in text and "datasets:" not in text


def test_hyperparameters_hold_no_local_path() -> None:
    from vlhub.plugins.publishers import card

    shown = card.hyperparameters({"lr": 4e-5, "deepspeed": "zero2", "freeze_llm": None,
                                  "data": "/home/me/data/prepared", "prompts": ["a", "b"], "master_port": 29500})
    assert shown == {"lr": "4e-05", "deepspeed": "zero2", "data": "prepared", "prompts": "a, b"}


def test_loss_svg_thins_long_curves() -> None:
    from vlhub.plugins.publishers import card

    svg = card.loss_svg([(float(i), 1.0 / (i + 1)) for i in range(5000)])
    assert svg.count(",") < 2 * card.PLOT_POINTS + 10 and "over 5000 steps" in svg


def test_damaged_eval_and_run_files_never_break_the_card(finished: dict[str, Any]) -> None:
    from vlhub.core.runs import load_run, new_run

    model = finished["model"]
    run = new_run("eval")
    run.path("eval.json").write_text(json.dumps({
        "format": "vlhub.eval/1", "run_id": run.id, "task": 3, "n": "x", "dataset": ["foodieqa"],
        "results": [{"model": str(model), "items": [{"index": [1]}, "x", {"index": 0, "correct": "yes"}],
                     "accuracy": "high", "ci95": [0.1], "categories": {"food_type": {"tofu": 3}, "x": []}},
                    {"model": str(finished["base"]), "items": None}, 7]}))
    run.update(status="done", eval_json=str(run.path("eval.json")))
    (finished["run"].dir / "metrics.jsonl").write_text('[1]\n{"iter": "a", "loss": 1}\n{"iter": 1, "loss": NaN}\n'
                                                      '{"iter": 2, "loss": Infinity}\n{"iter": 3, "loss": 0.5}\n')
    text = _extras(model)["README.md"].decode()  # the older, whole evaluation with the base model is used
    assert f"(run `{finished['eval']['run_id']}`)" in text and "over 1 logged steps" in text
    shutil.rmtree(load_run(finished["eval"]["run_id"]).dir)
    text = _extras(model)["README.md"].decode()  # only the damaged one is left: shown as far as it reads
    assert f"(run `{run.id}`)" in text and "| **this model** | – | – | 0/0 |" in text and "local data" in text


def test_base_model_flag_reaches_the_card_and_the_preflight(tmp_path: Path, isolated: Path) -> None:
    """`vlhub publish --base-model ORG/NAME`: the preflight names it and the card sent to git carries it."""
    from conftest import run_vlhub
    from publish_helpers import make_model
    from servers.git_lfs import GitLfsServer

    model = make_model(tmp_path / "model")
    with GitLfsServer(tmp_path / "srv", token="card-token-5521") as server:
        url = server.repo_url("org/InternVL2-base")
        env = {"VLHUB_GIT_TOKEN": "card-token-5521"}
        dry = run_vlhub("publish", str(model), "--to", f"git:{url}", "--dry-run", env=env)
        assert dry.returncode == 0 and "pass --base-model ORG/NAME" in dry.stderr, dry.stderr
        real = run_vlhub("publish", str(model), "--to", f"git:{url}", "--base-model", "OpenGVLab/InternVL2-2B",
                         env=env)
        assert real.returncode == 0, real.stderr
        assert "base model OpenGVLab/InternVL2-2B" in real.stderr
        readme = server.read_blob("org/InternVL2-base", "HEAD", "README.md").decode()
    assert "base_model: OpenGVLab/InternVL2-2B" in readme


def test_the_card_shows_the_last_serve_check(finished: dict[str, Any]) -> None:
    from vlhub.core import provenance

    model = finished["model"]
    provenance.update(model, {"serve_check": {
        "status": "ok", "reason_key": "check.ok", "reason": "answered and stopped with <|im_end|> after 9 tokens",
        "params": {"stop": "<|im_end|>", "tokens": 9, "limit": 128}, "backend": "lmdeploy",
        "date": "2026-01-01T00:00:00+00:00", "tokens": 9, "max_new_tokens": 128, "answer": "{{ 7*7 }} a red circle"}})
    text = _extras(model)["README.md"].decode()
    en = text.split("### Serve check", 1)[1].split("###", 1)[0]
    assert "`vlhub check` (2026-01-01T00:00:00+00:00, lmdeploy)" in en and "within 128 tokens: **passed**" in en
    assert "answered and stopped with &lt;|im_end|> after 9 tokens (limit 128)" in en
    assert "Its answer: {{ 7*7 }} a red circle" in en  # data, never template source
    zh = text.split("### 服务检查", 1)[1].split("###", 1)[0]
    assert "**通过**" in zh and "已回答，并在 9 个 token 后以 &lt;|im_end|> 停止（上限 128）" in zh
    # a failed check whose error names a local path: the card shows its last component only
    provenance.update(model, {"serve_check": {
        "status": "failed", "reason_key": "check.load_failed", "backend": "transformers", "date": "2026-01-02",
        "params": {"backend": "transformers", "error": f"cannot load {finished['tmp']}/out/InternVL2-2B-food"},
        "max_new_tokens": 64}})
    extras = _extras(model)
    text = extras["README.md"].decode()
    assert "**failed**, the model did not load or answer with transformers: cannot load InternVL2-2B-food." in text
    assert "**未通过**，模型无法用 transformers 加载或回答" in text
    _no_local_paths(extras, finished["tmp"])
    # never checked (or a hand-made record without a status): no section
    provenance.update(model, {"serve_check": {"reason": "?"}})
    assert "### Serve check" not in _extras(model)["README.md"].decode()


def test_samples_are_topped_up_to_three_from_the_evaluation(finished: dict[str, Any]) -> None:
    from vlhub.core import provenance

    model = finished["model"]
    provenance.update(model, {"samples": [{"question": "图中是什么菜？", "answer": "麻婆豆腐"}]})
    text = _extras(model)["README.md"].decode()
    samples = text.split("### Sample answers", 1)[1].split("###", 1)[0]
    assert samples.count("**Q:**") == 3 and samples.index("麻婆豆腐") < samples.index("From the evaluation above")
    assert samples.count("From the evaluation above (text only).") == 1 and "(this model)" in samples


def test_preflight_notes_are_catalog_keys_a_page_shows_in_chinese(tmp_path: Path) -> None:
    from vlhub.core.errors import VlhubError
    from vlhub.plugins.publishers import card

    model = make_model(tmp_path / "out")
    (model / "vlhub_provenance.json").write_text(json.dumps({"base_model": str(tmp_path / "gone")}))
    found = card.checks(model, _names(model), "not an id")
    keys = [n["key"] for n in found["card_note_keys"]]
    assert keys == ["card.base_not_hub_id", "card.base_unknown_folder", "card.no_evaluation"]
    assert found["card_notes"][0] == "model card: --base-model 'not an id' is not a hub id (ORG/NAME) and is ignored"
    assert found["card_notes"][1].endswith("so the card names none; pass --base-model ORG/NAME")
    zh = [VlhubError(n["key"], **n["params"]).localized("zh", {"--base-model": "“基础模型”"})
          for n in found["card_note_keys"]]
    assert zh[1].startswith("模型卡片：基础模型未知") and "请在 “基础模型” 中填入模型平台 ID（组织/名称）" in zh[1]
    assert not [text for text in zh if "ORG" in text or "--base-model" in text or "model card" in text]
