"""Build chat templates from their parts and render them the way transformers does (jinja2 only)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: Multimodal message content: ``[{"type": "image"}, {"type": "text", "text": ...}]`` becomes
#: ``<image>\n`` per image then the text, the string xtuner and InternVL's ``chat()`` expect.
_CONTENT_MACRO = (
    "{%- macro content(m) -%}"
    "{%- if m['content'] is string -%}{{ m['content'] | trim }}"
    "{%- else -%}{%- for part in m['content'] -%}"
    "{%- if part['type'] == 'image' -%}{{ '<image>\\n' }}"
    "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}{%- endif -%}"
    "{%- endfor -%}{%- endif -%}"
    "{%- endmacro -%}"
)


def literal(text: str) -> str:
    """``text`` as a single-quoted Jinja string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _around(piece: str, field: str, expr: str) -> str:
    """``piece`` with ``{field}`` replaced by the Jinja expression ``expr``, as one ``{{ }}`` output."""
    before, _, after = piece.partition("{" + field + "}")
    parts = [literal(p) for p in (before,) if p] + [expr] + [literal(p) for p in (after,) if p]
    return "{{ " + " + ".join(parts) + " }}"


def build_jinja(*, bos: bool, system: str, user: str, assistant: str, end: str, default_system: str) -> str:
    """A one-line chat template from its pieces.

    ``system`` contains ``{system}`` and ``user`` contains ``{content}``; an assistant turn is
    ``assistant + content + end`` and ``add_generation_prompt`` appends ``assistant``. The system
    block is written when the system text is not empty; a conversation without a system message
    gets ``default_system`` (the one training used).
    """
    return "".join([
        _CONTENT_MACRO,
        "{{ bos_token }}" if bos else "",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = content(messages[0]) -%}{%- set turns = messages[1:] -%}",
        "{%- else -%}",
        "{%- set system = " + literal(default_system) + " -%}{%- set turns = messages -%}",
        "{%- endif -%}",
        "{%- if system -%}" + _around(system, "system", "system") + "{%- endif -%}",
        "{%- for m in turns -%}",
        "{%- if m['role'] == 'user' -%}" + _around(user, "content", "content(m)"),
        "{%- elif m['role'] == 'assistant' -%}"
        + "{{ " + literal(assistant) + " + content(m) + " + literal(end) + " }}",
        "{%- endif -%}",
        "{%- endfor -%}",
        "{%- if add_generation_prompt -%}{{ " + literal(assistant) + " }}{%- endif -%}",
    ])


@lru_cache(maxsize=64)
def _compile(jinja: str) -> Template:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    return env.from_string(jinja)


def render(jinja: str, messages: Sequence[Mapping[str, Any]], *, add_generation_prompt: bool = False,
           bos_token: str = "", eos_token: str = "") -> str:
    """Render a chat template with the settings transformers' ``apply_chat_template`` uses."""
    return _compile(jinja).render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                  bos_token=bos_token, eos_token=eos_token)
