"""The ``vlhub ...`` command line equivalent to each page action ("Preview command", as LlamaBoard shows).

Each function takes the arguments the page passes to its job (:mod:`vlhub.core.jobs`) and returns the
command as one shell line (``shlex``-quoted), so that what the page does can be rerun or scripted in a
terminal. Plugin options become the flags the CLI gives them: ``--NAME VALUE`` for the trainer's settings
(``--NAME/--no-NAME`` for yes/no, repeated for lists), ``--opt NAME=VALUE`` for dataset and publisher options.
"""
from __future__ import annotations

import shlex
from typing import Any, Iterable, Mapping

from vlhub.core.options import flag


def _line(words: Iterable[Any]) -> str:
    return " ".join(shlex.quote(str(w)) for w in words)


def _truthy(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.strip().lower() in ("1", "true", "yes", "on"))


def _pairs(options: Mapping[str, Any]) -> list[str]:
    words: list[str] = []
    for name, value in options.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            text = ("true" if item else "false") if isinstance(item, bool) else str(item)
            words += ["--opt", f"{name}={text}"]
    return words


def train(args: Mapping[str, Any], types: Mapping[str, str] | None = None) -> str:
    """``vlhub train --trainer T --model M --data D --NAME VALUE ... [--dry-run]`` for a ``train.plan`` job.

    Args:
        args: the job's arguments: ``model``, ``data``, ``trainer``, ``options`` (name -> value as the
            form gives it), ``launch`` (False: a dry run).
        types: option name -> its type name (``bool`` options become ``--NAME`` / ``--no-NAME``).
    """
    types = types or {}
    words: list[Any] = ["vlhub", "train", "--trainer", args.get("trainer") or "xtuner",
                        "--model", args.get("model") or "MODEL_DIR", "--data", args.get("data") or "DATA_DIR"]
    for name, value in (args.get("options") or {}).items():
        if types.get(name) == "bool" or isinstance(value, bool):
            on = value if isinstance(value, bool) else _truthy(value)
            words.append(flag(name) if on else f"--no-{flag(name)[2:]}")
        elif isinstance(value, (list, tuple)):
            for item in value:
                words += [flag(name), item]
        else:
            words += [flag(name), value]
    if not args.get("launch", True):
        words.append("--dry-run")
    return _line(words)


def train_stop(run_id: str) -> str:
    """``vlhub run stop RUN_ID``."""
    return _line(["vlhub", "run", "stop", run_id])


def train_resume(run_id: str) -> str:
    """``vlhub train --resume RUN_ID``."""
    return _line(["vlhub", "train", "--resume", run_id])


def prepare(args: Mapping[str, Any]) -> str:
    """``vlhub data prepare NAME --source S --out O [--opt K=V ...] [--strict] [--force]``."""
    words: list[Any] = ["vlhub", "data", "prepare", args.get("name") or "NAME",
                        "--source", args.get("source") or "SOURCE", "--out", args.get("out") or "OUT"]
    words += _pairs(args.get("options") or {})
    words += ["--strict"] if args.get("strict") else []
    words += ["--force"] if args.get("force") else []
    return _line(words)


def convert(args: Mapping[str, Any]) -> str:
    """``vlhub convert SOURCE --out OUT [--config C] [--template T] [--force] [--no-verify]``."""
    words: list[Any] = ["vlhub", "convert", args.get("source") or "CHECKPOINT", "--out", args.get("out") or "OUT"]
    words += ["--config", args["config"]] if args.get("config") else []
    words += ["--template", args["template"]] if args.get("template") else []
    words += ["--force"] if args.get("force") else []
    words += ["--no-verify"] if not args.get("verify", True) else []
    return _line(words)


#: ``vlhub publish``'s own flags (every other publisher option goes as ``--opt NAME=VALUE``).
PUBLISH_FLAGS = ("private", "via", "message", "require_keyword", "overwrite_card", "follow_symlinks",
                 "skip_serve_check")


def publish(args: Mapping[str, Any]) -> str:
    """``vlhub publish FOLDER --to NAME:TARGET ... [flags] [--opt K=V ...] [--dry-run]`` for a ``publish`` job."""
    words: list[Any] = ["vlhub", "publish", args.get("folder") or "FOLDER"]
    for target in args.get("targets") or ["NAME:TARGET"]:
        words += ["--to", target]
    rest: dict[str, Any] = {}
    for name, value in (args.get("options") or {}).items():
        if name in PUBLISH_FLAGS and (isinstance(value, bool) or name in ("private", "overwrite_card",
                                                                         "follow_symlinks", "skip_serve_check")):
            words += [flag(name)] if _truthy(value) else []
        elif name in PUBLISH_FLAGS:
            words += [flag(name), value]
        else:
            rest[name] = value
    words += _pairs(rest)
    if args.get("dry_run"):
        words.append("--dry-run")
    return _line(words)


def check(args: Mapping[str, Any]) -> str:
    """``vlhub check FOLDER --backend B --max-new-tokens N`` for a ``check`` job."""
    return _line(["vlhub", "check", args.get("folder") or "FOLDER", "--backend", args.get("backend") or "transformers",
                  "--max-new-tokens", args.get("max_new_tokens") or 128])


def env_create(name: str) -> str:
    """``vlhub env create NAME``."""
    return _line(["vlhub", "env", "create", name])
