"""The one option coercion (vlhub.core.options) that dataset options and training flags share."""
from __future__ import annotations

import pytest

from vlhub.core import types
from vlhub.core.errors import BadInput
from vlhub.core.options import FLAGS, PAIRS, Option, coerce, parse_pairs, resolve

DECLARED = (
    Option("seed", "Seed.", int, 0),
    Option("val_fraction", "Share for validation.", float, 0.1, label="validation share",
           labels={"zh": "验证集比例"}),
    Option("with_choices", "Append the choices.", bool, False),
    Option("method", "How to train.", str, "lora", ("lora", "full")),
    Option("eval_prompt", "Prompts.", list, ()),
    Option("template", "Template.", str, None),
)


def test_text_and_typed_values_convert_alike() -> None:
    given = {"seed": " 7", "val_fraction": "0.25", "with_choices": "Yes", "method": "full", "eval_prompt": "hi"}
    expected = {"seed": 7, "val_fraction": 0.25, "with_choices": True, "method": "full", "eval_prompt": ["hi"],
                "template": None}
    assert resolve(DECLARED, given) == resolve(DECLARED, given, FLAGS) == expected
    typed = {"seed": 7, "val_fraction": 0.25, "with_choices": True, "method": "full", "eval_prompt": ("hi",)}
    assert resolve(DECLARED, typed) == expected
    defaults = resolve(DECLARED, {"seed": None})
    assert defaults == {"seed": 0, "val_fraction": 0.1, "with_choices": False, "method": "lora", "eval_prompt": [],
                        "template": None}
    for word, value in (("on", True), ("1", True), ("OFF", False), ("no", False), ("", False)):
        assert coerce(DECLARED[2], word) is value


@pytest.mark.parametrize("given, pairs, flags", [
    ({"seed": "x"}, "option seed='x' is not a valid int. Fix: give seed an int",
     "--seed 'x' is not a valid whole number. Fix: give --seed a whole number"),
    ({"val_fraction": "abc"}, "option val_fraction='abc' is not a valid float. Fix: give val_fraction a float",
     "--val-fraction 'abc' is not a valid number. Fix: give --val-fraction a number"),
    ({"with_choices": "maybe"}, "option with_choices='maybe' is not a valid true/false value",
     "--with-choices 'maybe' is not a valid yes/no value"),
    ({"method": "dora"}, "option method='dora' is not one of lora, full. Fix: use --opt method=lora",
     "--method 'dora' is not one of lora, full. Fix: use --method lora"),
    ({"colour": "red"}, "unknown option 'colour' (options: eval_prompt, method, seed, template, val_fraction,",
     "unknown option 'colour' (options: --eval-prompt, --method, --seed,"),
])
def test_refusals_name_the_option_as_the_user_wrote_it(given: dict, pairs: str, flags: str) -> None:
    for syntax, words in ((PAIRS, pairs), (FLAGS, flags)):
        with pytest.raises(BadInput) as info:
            resolve(DECLARED, given, syntax)
        assert words in info.value.one_line(), info.value.one_line()


def test_required_option_and_pairs() -> None:
    needed = (Option("file", "The file.", str, required=True),)
    with pytest.raises(BadInput, match="option file is required. Fix: pass --opt file=VALUE"):
        resolve(needed, {})
    with pytest.raises(BadInput, match="option --file is required. Fix: pass --file VALUE"):
        resolve(needed, {"file": None}, FLAGS)
    assert parse_pairs(["a=1", " b-c =x=y", "d="]) == {"a": "1", "b_c": "x=y", "d": ""}
    with pytest.raises(BadInput, match="is not KEY=VALUE"):
        parse_pairs(["novalue"])


def test_option_is_still_a_core_type_and_carries_its_labels() -> None:
    assert types.Option is Option
    public = DECLARED[1].public()
    assert public == {"name": "val_fraction", "help": "Share for validation.", "type": "float", "default": 0.1,
                      "choices": [], "required": False, "label": "validation share", "labels": {"zh": "验证集比例"},
                      "choice_labels": {}, "helps": {}}
    assert len({*DECLARED, DECLARED[1]}) == len(DECLARED)  # still hashable, labels and all
