"""Plugin options: the typed spec every plugin declares, and the one coercion that serves them all.

A plugin lists its settings as :class:`Option` objects; the CLI renders them as flags or
``--opt KEY=VALUE`` pairs, the launcher as form fields. Values arrive as text from
those, or typed from the Python API; :func:`resolve` turns a mapping of them into one
typed value per declared option (defaults filled in), and :func:`coerce` converts one.

Conversion, by ``Option.type``:

=========  ==================================================================
``str``    the value as given
``int``    ``int(value)``; ``"1.5"`` and ``"x"`` are refused
``float``  ``float(value)``
``bool``   text ``1 true yes on`` / ``0 false no off`` and ``""`` (any case); other values ``bool(value)``
``list``   a string becomes a one-item list, any other iterable a list of strings
=========  ==================================================================

``None`` means "not given": the option's default (itself converted), or an error
when the option is ``required``. A value outside ``choices`` is refused. Every
refusal is a :class:`vlhub.core.errors.BadInput` naming the option the way the
user wrote it (:data:`PAIRS` for ``--opt KEY=VALUE``, :data:`FLAGS` for ``--key
VALUE`` and form fields) and the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

from .errors import BadInput

TRUE = frozenset({"1", "true", "yes", "on"})
FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True)
class Option:
    """One setting a plugin accepts (rendered as a CLI flag and a form field).

    ``label`` is the form field's title (default: ``name`` with spaces), ``labels`` its
    translations by language code (e.g. ``{"zh": "验证集比例"}``); ``help`` is the one-line
    explanation shown beside the flag and the field, ``helps`` its translations; ``choice_labels``
    names the ``choices`` by language (e.g. ``{"zh": {"full": "全量微调"}}``; the value itself is what
    the CLI takes). The launcher shows a text without a translation in English, marked as such.
    """

    name: str
    help: str
    type: type = str
    default: Any = None
    choices: tuple[str, ...] = ()
    required: bool = False
    label: str = ""
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    helps: Mapping[str, str] = field(default_factory=dict, hash=False)
    choice_labels: Mapping[str, Mapping[str, str]] = field(default_factory=dict, hash=False)

    def public(self) -> dict[str, Any]:
        """The option as JSON-ready data (``vlhub data list --json``, the pages' form fields).

        Returns:
            ``{"name", "help", "type" (the type's name: "str", "int", "float", "bool", "list"),
            "default", "choices" (list), "required", "label", "labels" (language -> text),
            "helps" (language -> text), "choice_labels" (language -> {choice: text})}``.
        """
        return {"name": self.name, "help": self.help, "type": self.type.__name__,
                "default": self.default, "choices": list(self.choices), "required": self.required,
                "label": self.label, "labels": dict(self.labels), "helps": dict(self.helps),
                "choice_labels": {lang: dict(names) for lang, names in self.choice_labels.items()}}


def translated(options: Sequence[Option], lang: str,
               texts: Mapping[str, tuple[str, str] | tuple[str, str, Mapping[str, str]]]) -> tuple[Option, ...]:
    """``options`` with their texts in ``lang`` added (how a plugin keeps its translations in one table).

    Args:
        options: the plugin's options.
        lang: a language code, e.g. ``"zh"``.
        texts: option name -> ``(label, help)`` or ``(label, help, {choice: text})`` in ``lang``.
    Returns:
        The options in the same order, each with ``labels[lang]``, ``helps[lang]`` (and
        ``choice_labels[lang]``) set from ``texts``; options ``texts`` does not name are unchanged.
    Raises:
        ValueError: ``texts`` names an option that is not in ``options``, or a choice it does not have.
    """
    by_name = {o.name: o for o in options}
    unknown = sorted(set(texts) - set(by_name))
    if unknown:
        raise ValueError(f"translations for options that do not exist: {', '.join(unknown)}")
    out = []
    for option in options:
        if option.name not in texts:
            out.append(option)
            continue
        label, help_, *rest = texts[option.name]
        names = dict(rest[0]) if rest else {}
        wrong = sorted(set(names) - set(option.choices))
        if wrong:
            raise ValueError(f"option {option.name}: translations for choices that do not exist: {', '.join(wrong)}")
        out.append(replace(option, labels={**option.labels, lang: label}, helps={**option.helps, lang: help_},
                           choice_labels={**option.choice_labels, **({lang: names} if names else {})}))
    return tuple(out)


def flag(name: str) -> str:
    """The command-line flag of option ``name``: ``val_fraction`` -> ``--val-fraction``."""
    return "--" + name.replace("_", "-")


@dataclass(frozen=True)
class Syntax:
    """How the user wrote options, so that a message quotes them the same way.

    The format fields are ``{name}`` (the option's name), ``{flag}`` (:func:`flag`) and
    ``{value}``; ``kinds`` names the expected type in "is not a valid ..." messages.
    """

    subject: str        # the option and its value, e.g. "option seed='x'" or "--seed 'x'"
    example: str        # how to pass a value, e.g. "--opt seed=1" or "--seed 1"
    target: str         # the option alone, e.g. "seed" or "--seed"
    kinds: Mapping[type, str]

    def format(self, template: str, name: str, value: Any = "") -> str:
        """``template`` (one of the fields above) filled in for option ``name`` and ``value``."""
        return template.format(name=name, flag=flag(name), value=value)


#: ``--opt KEY=VALUE`` (dataset options): types named as ``vlhub data list`` prints them
PAIRS = Syntax("option {name}={value!r}", "--opt {name}={value}", "{name}",
               {int: "int", float: "float", bool: "true/false value", list: "list"})
#: ``--key VALUE`` flags and form fields (training settings): types in plain words
FLAGS = Syntax("{flag} {value!r}", "{flag} {value}", "{flag}",
               {int: "whole number", float: "number", bool: "yes/no value", list: "list"})


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def coerce(option: Option, value: Any, syntax: Syntax = PAIRS) -> Any:
    """``value`` converted to ``option.type`` (the table in this module's docstring).

    Args:
        option: the declared option.
        value: text (a flag, ``--opt`` or form value), a typed value, or ``None``.
        syntax: how the user wrote the option (:data:`PAIRS` or :data:`FLAGS`), for the message.
    Returns:
        The typed value; ``None`` for ``None``.
    Raises:
        BadInput: the value does not convert, e.g. ``option seed='x' is not a valid int``
            or ``--lr 'fast' is not a valid number``, with the fix (``give --lr a number``).
    """
    if value is None:
        return None
    kind = option.type
    try:
        if kind is bool:
            if not isinstance(value, str):
                return bool(value)
            word = value.strip().lower()
            if word in TRUE | FALSE:
                return word in TRUE
            raise ValueError(value)
        if kind is list:
            return [value] if isinstance(value, str) else [str(v) for v in value]
        if isinstance(value, kind):
            return value
        return kind(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError):
        word = syntax.kinds.get(kind, kind.__name__)
        raise BadInput(f"{syntax.format(syntax.subject, option.name, value)} is not a valid {word}",
                       f"give {syntax.format(syntax.target, option.name)} {_article(word)}") from None


def resolve(declared: Sequence[Option], given: Mapping[str, Any], syntax: Syntax = PAIRS) -> dict[str, Any]:
    """One typed value per declared option: the given one (converted) or the default.

    Args:
        declared: the plugin's options.
        given: option name -> value (text or typed); ``None`` values count as not given.
        syntax: how the user wrote them (:data:`PAIRS` or :data:`FLAGS`), for the messages.
    Returns:
        ``{option name: typed value}`` with every declared option, in declaration order.
    Raises:
        BadInput: an unknown key (``unknown option 'x' (options: ...)``), a required option
            missing, a value that does not convert (:func:`coerce`) or is not one of ``choices``.
    """
    known = {option.name: option for option in declared}
    unknown = sorted(set(given) - set(known))
    if unknown:
        names = ", ".join(syntax.format(syntax.target, name) for name in sorted(known)) or "none"
        raise BadInput(f"unknown option {unknown[0]!r} (options: {names})", "use one of the listed options")
    values: dict[str, Any] = {}
    for option in declared:
        value = given.get(option.name)
        if value is None and option.required:
            raise BadInput(f"option {syntax.format(syntax.target, option.name)} is required",
                           f"pass {syntax.format(syntax.example, option.name, 'VALUE')}")
        value = coerce(option, option.default if value is None else value, syntax)
        if value is not None and option.choices and value not in option.choices:
            raise BadInput(f"{syntax.format(syntax.subject, option.name, value)} is not one of "
                           f"{', '.join(option.choices)}",
                           f"use {syntax.format(syntax.example, option.name, option.choices[0])}")
        values[option.name] = value
    return values


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``--opt`` values as a mapping: ``["a=1", "b-c=x"]`` -> ``{"a": "1", "b_c": "x"}``.

    Raises:
        BadInput: a pair without ``=`` or without a key.
    """
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--opt {pair!r} is not KEY=VALUE", "write it as --opt KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out
