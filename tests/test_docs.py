"""The plugin author's guide (docs/plugins.md) documents every hook and interface with its exact signature.

Modelled on datasette's tests/test_docs.py: the expected text is generated from the code
(``inspect.signature``), so changing a hook or an interface without the guide fails here.
"""
from __future__ import annotations

import inspect
import re
from typing import Any, Callable

import pytest

from conftest import ROOT
from vlhub.core import PLUGIN_API_VERSION, hookspecs, types
from vlhub.core.plugins import HOOKS, STILL_CALLED, check_interface

GUIDE = (ROOT / "docs" / "plugins.md").read_text(encoding="utf-8")
#: "### Heading" -> the text up to the next heading
SECTIONS = dict(re.findall(r"^### (\S+)\n(.*?)(?=^#{2,3} |\Z)", GUIDE, re.M | re.S))
INTERFACES = [types.Dataset, types.Trainer, types.Converter, types.ChatTemplate, types.Publisher,
              types.ChatBackend, types.ChatSession]


class _Source(str):
    """An annotation string that prints without quotes (as it is written in the source)."""

    def __repr__(self) -> str:
        return str(self)


def source_def(func: Callable[..., Any]) -> str:
    """``def name(params) -> return: ...`` exactly as the function is declared."""
    sig = inspect.signature(func)

    def unquoted(annotation: Any) -> Any:
        return annotation if annotation is inspect.Parameter.empty else _Source(annotation)

    sig = sig.replace(parameters=[p.replace(annotation=unquoted(p.annotation)) for p in sig.parameters.values()],
                      return_annotation=unquoted(sig.return_annotation))
    return f"def {func.__name__}{sig}: ..."


def methods(interface: type) -> dict[str, Callable[..., Any]]:
    return {name: f for name, f in vars(interface).items() if not name.startswith("_") and inspect.isfunction(f)}


def code_lines(section: str) -> list[str]:
    """The stripped, non-empty lines of a section's fenced code blocks."""
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    return [line.strip() for block in blocks for line in block.splitlines() if line.strip()]


def test_hooks_are_what_hookspecs_defines() -> None:
    assert set(HOOKS) == {name for name, f in vars(hookspecs).items() if inspect.isfunction(f)}


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_is_documented_with_its_signature(hook: str) -> None:
    assert hook in SECTIONS, f"docs/plugins.md has no '### {hook}' section"
    assert code_lines(SECTIONS[hook]) == [source_def(getattr(hookspecs, hook))]


@pytest.mark.parametrize("interface", INTERFACES, ids=lambda i: i.__name__)
def test_every_interface_is_documented_with_its_exact_signatures(interface: type) -> None:
    name = interface.__name__
    assert name in SECTIONS, f"docs/plugins.md has no '### {name}' section"
    expected = [f"class {name}(Protocol):",
                *(f"{attr}: {annotation}" for attr, annotation in inspect.get_annotations(interface).items()),
                *(source_def(f) for f in methods(interface).values()),
                *(source_def(f) for method in methods(interface) for f in STILL_CALLED.get((interface, method), ()))]
    assert code_lines(SECTIONS[name]) == expected
    for method in methods(interface):
        assert f"- `{method}`:" in SECTIONS[name], f"{name}.{method} is not described"


def test_no_section_documents_a_hook_or_interface_that_does_not_exist() -> None:
    reference = GUIDE[GUIDE.index("## Hooks"):]
    headings = re.findall(r"^### (\S+)$", reference, re.M)
    assert sorted(headings) == sorted([*HOOKS, *(i.__name__ for i in INTERFACES)])


@pytest.mark.parametrize("func", [*(getattr(hookspecs, h) for h in HOOKS),
                                  *(f for i in INTERFACES for f in methods(i).values()),
                                  *(f for older in STILL_CALLED.values() for f in older)],
                         ids=lambda f: f.__qualname__)
def test_every_hook_and_method_documents_arguments_returns_and_errors(func: Callable[..., Any]) -> None:
    doc = inspect.getdoc(func) or ""
    params = [p for p in inspect.signature(func).parameters if p != "self"]
    assert "Returns:" in doc and "Raises:" in doc, f"{func.__qualname__}: no Returns:/Raises: section"
    if params:
        args = doc[doc.index("Args:"):doc.index("Returns:")] if "Args:" in doc else ""
        missing = [p for p in params if not re.search(rf"\b{p}\b", args)]
        assert not missing, f"{func.__qualname__}: Args: does not describe {missing}"


def test_the_plugin_api_version_is_documented() -> None:
    assert f'PLUGIN_API_VERSION = "{PLUGIN_API_VERSION}"' in GUIDE
    assert 'vlhub_requires = ">=1.0,<2"' in GUIDE


def test_the_guides_example_implements_the_publisher_interface() -> None:
    example = re.findall(r"```python\n(.*?)```", GUIDE, re.S)[0]
    namespace: dict[str, Any] = {}
    exec(compile(example, "docs/plugins.md", "exec"), namespace)  # noqa: S102 - our own documentation
    assert check_interface(namespace["MyHub"](), types.Publisher) == []
    assert namespace["vlhub_requires"] == '>=1.0,<2'
