"""Build chat templates from their parts and render them the way transformers does (jinja2 only)."""
from __future__ import annotations

from functools import lru_cache
from typing import Any, Mapping, Sequence

from jinja2 import Template
from jinja2.sandbox import ImmutableSandboxedEnvironment

#: The image placeholder InternVL's remote code (``chat()``) and xtuner expect; transformers' native
#: InternVL processor expects ``<IMG_CONTEXT>\n`` instead (it expands it to the image tokens).
IMAGE = "<image>\n"


def _content_macro(image: str = IMAGE) -> str:
    """Multimodal message content: ``[{"type": "image"}, {"type": "text", "text": ...}]`` becomes ``image``
    per image then the text; text is trimmed, as xtuner trims it."""
    return (
        "{%- macro content(m) -%}"
        "{%- if m['content'] is string -%}{{ m['content'] | trim }}"
        "{%- else -%}{%- for part in m['content'] -%}"
        "{%- if part['type'] == 'image' -%}{{ " + literal(image) + " }}"
        "{%- elif part['type'] == 'text' -%}{{ part['text'] | trim }}{%- endif -%}"
        "{%- endfor -%}{%- endif -%}"
        "{%- endmacro -%}"
    )


#: Qwen3's <think> handling of an assistant message (its text in ``c``): turns before the last user message
#: keep only the answer (their <think> block is dropped); later turns show the reasoning, from
#: ``reasoning_content`` or from a ``<think>...</think>`` block in the text, as ``<think>\n...\n</think>\n\n``
#: before the answer. ``ns.last_user`` is the index of the last user message in ``turns``.
_THINK = (
    "{%- if m['reasoning_content'] is string -%}{%- set reasoning = m['reasoning_content'] -%}"
    "{%- elif '</think>' in c -%}"
    "{%- set reasoning = c.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') -%}"
    "{%- set c = c.split('</think>')[-1].lstrip('\\n') -%}"
    "{%- else -%}{%- set reasoning = '' -%}{%- endif -%}"
    "{%- if loop.index0 > ns.last_user and reasoning -%}"
    "{%- set c = '<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + c.lstrip('\\n') -%}"
    "{%- endif -%}"
)
_LAST_USER = ("{%- set ns = namespace(last_user=-1) -%}"
              "{%- for m in turns -%}{%- if m['role'] == 'user' -%}{%- set ns.last_user = loop.index0 -%}"
              "{%- endif -%}{%- endfor -%}")


def literal(text: str) -> str:
    """``text`` as a single-quoted Jinja string literal."""
    escaped = text.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n")
    return f"'{escaped}'"


def _around(piece: str, field: str, expr: str) -> str:
    """``piece`` with ``{field}`` replaced by the Jinja expression ``expr``, as one ``{{ }}`` output."""
    before, _, after = piece.partition("{" + field + "}")
    parts = [literal(p) for p in (before,) if p] + [expr] + [literal(p) for p in (after,) if p]
    return "{{ " + " + ".join(parts) + " }}"


def build_jinja(*, bos: bool, system: str, user: str, assistant: str, end: str, default_system: str,
                image: str = IMAGE, think: bool = False) -> str:
    """A one-line chat template from its pieces.

    ``system`` contains ``{system}`` and ``user`` contains ``{content}``; an assistant turn is
    ``assistant + content + end`` and ``add_generation_prompt`` appends ``assistant``. The system
    block is written when the system text is not empty; a conversation without a system message
    gets ``default_system`` (the one training used). ``image`` is written per image part of a
    message; ``think`` adds Qwen3's <think> handling of assistant messages (:data:`_THINK`).
    """
    if think:
        assistant_turn = ("{%- set c = content(m) -%}" + _THINK
                          + "{{ " + literal(assistant) + " + c + " + literal(end) + " }}")
    else:
        assistant_turn = "{{ " + literal(assistant) + " + content(m) + " + literal(end) + " }}"
    return "".join([
        _content_macro(image),
        "{{ bos_token }}" if bos else "",
        "{%- if messages and messages[0]['role'] == 'system' -%}",
        "{%- set system = content(messages[0]) -%}{%- set turns = messages[1:] -%}",
        "{%- else -%}",
        "{%- set system = " + literal(default_system) + " -%}{%- set turns = messages -%}",
        "{%- endif -%}",
        "{%- if system -%}" + _around(system, "system", "system") + "{%- endif -%}",
        _LAST_USER if think else "",
        "{%- for m in turns -%}",
        "{%- if m['role'] == 'user' -%}" + _around(user, "content", "content(m)"),
        "{%- elif m['role'] == 'assistant' -%}" + assistant_turn,
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
