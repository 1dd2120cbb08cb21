"""Read what a conversion needs from an xtuner config (train stage env; mmengine only, fast).

``python convert_inspect.py CONFIG`` reports the model class, the base model folder and the
``PROMPT_TEMPLATE`` entry the config trains with. mmengine parses configs with lazy imports,
so nothing heavy is imported here.
"""
from __future__ import annotations

import sys
from typing import Any

import _protocol
from convert_common import load_config


def _template_key(value: Any) -> str:
    """The ``PROMPT_TEMPLATE`` key of a config's ``prompt_template`` (a dict or a lazy attribute)."""
    if isinstance(value, dict):
        from xtuner.utils import PROMPT_TEMPLATE

        for key, entry in PROMPT_TEMPLATE.items():
            if dict(entry) == dict(value):
                return key
        return "custom"
    return _name(value)


def _name(value: Any) -> str:
    """The name of a lazily imported object (``InternVL_V1_5``, ``PROMPT_TEMPLATE.phi3_chat`` -> ``phi3_chat``)."""
    if isinstance(value, str):
        return value
    for attr in ("name", "_name", "__name__"):
        found = getattr(value, attr, None)
        if isinstance(found, str):
            return found.rsplit(".", 1)[-1]
    return str(value).rsplit(".", 1)[-1]


def main() -> None:
    if len(sys.argv) != 2:
        _protocol.fail("usage: convert_inspect.py CONFIG", "this worker is started by vlhub", code=1)
    try:
        cfg = load_config(sys.argv[1])
    except Exception as exc:  # a file that is not an mmengine config
        _protocol.fail(f"{sys.argv[1]} is not an xtuner config ({type(exc).__name__}: {exc})",
                       "pass the config the run trained with (--config)")
    model = cfg.get("model")
    if not model or "type" not in model:
        _protocol.fail(f"{sys.argv[1]} has no `model = dict(type=...)`", "pass the xtuner training config (--config)")
    llm = model.get("llm") or {}
    base = model.get("model_path") or llm.get("pretrained_model_name_or_path")
    template = cfg.get("prompt_template")
    _protocol.result(model_type=_name(model["type"]), base_model=base,
                     prompt_template=_template_key(template) if template is not None else None,
                     llm_lora=model.get("llm_lora") is not None or model.get("lora") is not None,
                     visual_encoder_lora=model.get("visual_encoder_lora") is not None)


if __name__ == "__main__":
    main()
