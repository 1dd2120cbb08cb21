"""Plugin options: defaults, ``KEY=VALUE`` strings converted to each option's type, unknown keys refused."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from vlhub.core.errors import BadInput
from vlhub.core.types import Option

#: keys every dataset's ``prepare`` accepts besides its own options
COMMON = {"strict": bool, "force": bool}
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


def resolve(declared: Sequence[Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Every declared option with its default or given value, converted; plus the common keys."""
    known = {o.name: o for o in declared}
    for key in given:
        if key not in known and key not in COMMON:
            names = ", ".join(sorted(known)) or "none"
            raise BadInput(f"unknown option {key!r} (options: {names})", "run `vlhub data prepare --help`")
    values = {key: _convert(key, COMMON[key], given[key]) for key in COMMON if key in given}
    for option in declared:
        if option.name in given and given[option.name] is not None:
            value = _convert(option.name, option.type, given[option.name])
        elif option.required:
            raise BadInput(f"option {option.name!r} is required", f"pass --opt {option.name}=VALUE")
        else:
            value = option.default
        if option.choices and value not in option.choices:
            raise BadInput(f"option {option.name}={value!r} is not one of {', '.join(option.choices)}",
                           "pick one of the listed values")
        values[option.name] = value
    return values


def _convert(key: str, kind: type, value: Any) -> Any:
    if not isinstance(value, str) or kind is str:
        return value
    if kind is bool:
        if value.strip().lower() in TRUE | FALSE:
            return value.strip().lower() in TRUE
        raise BadInput(f"option {key}={value!r} is not true/false", f"use {key}=true or {key}=false")
    try:
        return kind(value)
    except ValueError:
        raise BadInput(f"option {key}={value!r} is not a valid {kind.__name__}",
                       f"give a {kind.__name__} value") from None


def parse_pairs(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` as ``{"a": "1", "b": "x"}``."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"--opt {pair!r} is not KEY=VALUE", "write it as --opt KEY=VALUE")
        out[key.strip().replace("-", "_")] = value
    return out
