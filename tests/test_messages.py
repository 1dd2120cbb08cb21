"""Keyed messages: one catalog, English by default, 中文 for the pages, flags shown as field labels."""
from __future__ import annotations

import string

import pytest

from vlhub.core import messages
from vlhub.core.errors import BadInput, VlhubError


def _fields(template: str) -> set[str]:
    return {name.removesuffix("_zh") for _, name, _, _ in string.Formatter().parse(template) if name}


@pytest.mark.parametrize("key", sorted(messages.CATALOG))
def test_every_key_has_english_and_chinese_with_the_same_arguments(key: str) -> None:
    entry = messages.CATALOG[key]
    assert set(entry) == {"en", "zh"}
    for en, zh in zip(entry["en"], entry["zh"]):
        assert _fields(en) == _fields(zh), key
    assert not any("\u4e00" <= ch <= "\u9fff" for part in entry["en"] for ch in part), key


def test_keyed_error_renders_english_and_localizes_with_field_labels() -> None:
    exc = BadInput("out.not_vlhub", flag="--out", path="/home/me/Documents", marker="prepared.json")
    assert exc.exit_code == 2 and exc.key == "out.not_vlhub"
    assert exc.one_line() == ("--out /home/me/Documents holds files vlhub did not write (no prepared.json): --force "
                              "replaces only a folder vlhub wrote, or an empty one. Fix: choose another --out "
                              "(a new or empty folder)")
    zh = exc.localized("zh", {"--out": "输出文件夹"})
    assert zh.startswith("输出文件夹 /home/me/Documents 中有不是 vlhub 写入的文件") and "--out" not in zh
    assert "解决办法：请另选 输出文件夹" in zh


def test_plain_messages_still_work_and_fall_back_to_english() -> None:
    exc = VlhubError("the server said no", "try --retry later")
    assert exc.key == "" and exc.one_line() == "the server said no. Fix: try --retry later"
    assert exc.localized("zh", {"--retry": "重试"}) == "the server said no。解决办法：try 重试 later"


def test_plugins_register_keys_without_translation() -> None:
    messages.register("example.too_big", ("{name} is too big", "shrink {name}"))
    exc = VlhubError("example.too_big", name="x.bin")
    assert exc.localized("zh") == "x.bin is too big。解决办法：shrink x.bin"
    with pytest.raises(ValueError):
        messages.register("example.too_big", ("other", "text"))
    del messages.CATALOG["example.too_big"]


def test_secrets_are_redacted_in_every_language() -> None:
    exc = VlhubError("net.unreachable", place="https://tok3n-secret-99x@host/v1")
    assert "tok3n" not in exc.one_line() and "tok3n" not in exc.localized("zh")
