"""The catalog of keyed messages: English (the default) and Chinese text for each key.

``VlhubError("state.damaged_json", path=p, detail=d)`` looks its English text up here; the CLI
prints it, and the launcher's pages call :meth:`VlhubError.localized` to show the same message
in 中文, with CLI flags replaced by the page's field labels. Each entry is
``key -> {"en": (message, fix), "zh": (message, fix)}``; placeholders are ``str.format`` fields
filled from the error's arguments. A flag placeholder is named ``flag``.

Plugins add their own keys with :func:`register` (a key is ``PLUGIN.NAME``); a key without a
translation falls back to English.
"""
from __future__ import annotations

from typing import Mapping

Text = tuple[str, str]

CATALOG: dict[str, dict[str, Text]] = {
    # ---- state files (fsutil.read_json)
    "state.damaged_json": {
        "en": ("{path} is damaged: not valid JSON ({detail})", "{fix}"),
        "zh": ("{path} 已损坏：不是有效的 JSON（{detail}）", "{fix_zh}")},
    "state.not_utf8": {
        "en": ("{path} is damaged: not UTF-8 text", "{fix}"),
        "zh": ("{path} 已损坏：不是 UTF-8 文本", "{fix_zh}")},
    "state.wrong_type": {
        "en": ("{path} is damaged: a JSON {expected} was expected, found {found}", "{fix}"),
        "zh": ("{path} 已损坏：应为 JSON {expected}，实际为 {found}", "{fix_zh}")},
    "state.unreadable": {
        "en": ("cannot read {path}: {reason}", "check the path and its permissions"),
        "zh": ("无法读取 {path}：{reason}", "请检查路径及其权限")},
    # ---- output folders and files (fsutil.check_replaceable, check_output_file)
    "out.is_file": {
        "en": ("{flag} {path} is a file", "choose a folder path"),
        "zh": ("{flag} {path} 是一个文件", "请选择一个文件夹路径")},
    "out.exists": {
        "en": ("{flag} {path} already exists and is not empty",
               "choose another {flag}, or pass --force to replace it once the new folder is complete"),
        "zh": ("{flag} {path} 已存在且不为空", "请另选 {flag}，或勾选“覆盖”（--force），新文件夹完成后再替换")},
    "out.not_vlhub": {
        "en": ("{flag} {path} holds files vlhub did not write (no {marker}): --force replaces only a folder "
               "vlhub wrote, or an empty one", "choose another {flag} (a new or empty folder)"),
        "zh": ("{flag} {path} 中有不是 vlhub 写入的文件（没有 {marker}）：覆盖只会替换 vlhub 写入的文件夹或空文件夹",
               "请另选 {flag}（新的或空的文件夹）")},
    "out.file_is_folder": {
        "en": ("{flag} {path} is a folder", "give a file name, e.g. {flag} {example}"),
        "zh": ("{flag} {path} 是一个文件夹", "请给出文件名，例如 {flag} {example}")},
    "out.parent_missing": {
        "en": ("{flag} {path}: the folder {parent} does not exist", "create it first (mkdir -p {parent})"),
        "zh": ("{flag} {path}：文件夹 {parent} 不存在", "请先创建它（mkdir -p {parent}）")},
    "out.not_writable": {
        "en": ("{flag} {path}: cannot write there (permission denied or read-only)", "choose a folder you can write to"),
        "zh": ("{flag} {path}：无法写入（没有权限或只读）", "请选择一个可写的文件夹")},
    # ---- the file system (boundary.user_error)
    "os.enospc": {"en": ("the disk holding {path} is full (No space left on device)",
                         "free space there (`df -h {folder}`) or choose a folder on another disk"),
                  "zh": ("{path} 所在的磁盘已满（No space left on device）", "请释放空间（`df -h {folder}`）或选择其他磁盘上的文件夹")},
    "os.edquot": {"en": ("the disk quota for {path} is used up", "free space or ask for a larger quota"),
                  "zh": ("{path} 的磁盘配额已用完", "请释放空间或申请更大的配额")},
    "os.erofs": {"en": ("{path} is on a read-only file system",
                        "choose a writable folder (for vlhub's own state: set VLHUB_HOME to a writable folder)"),
                 "zh": ("{path} 位于只读文件系统上", "请选择可写的文件夹（vlhub 自身的状态：把 VLHUB_HOME 设为可写文件夹）")},
    "os.eacces": {"en": ("permission denied: {path}", "check its permissions (`ls -ld {folder}`) or choose another path"),
                  "zh": ("没有权限：{path}", "请检查权限（`ls -ld {folder}`）或选择其他路径")},
    "os.eperm": {"en": ("operation not permitted on {path}", "check its permissions and owner, or choose another path"),
                 "zh": ("不允许对 {path} 执行此操作", "请检查权限和所有者，或选择其他路径")},
    "os.enoent": {"en": ("{path} does not exist", "check the path (it may have been moved or deleted)"),
                  "zh": ("{path} 不存在", "请检查路径（可能已被移动或删除）")},
    "os.eloop": {"en": ("{path}: too many levels of symbolic links (a symlink loop)",
                        "remove or fix the link that points back into its own folder"),
                 "zh": ("{path}：符号链接层级过多（链接形成了循环）", "请删除或修正指回自身文件夹的链接")},
    "os.enametoolong": {"en": ("a file name is too long: {path}", "use a shorter name or a shorter folder path"),
                        "zh": ("文件名过长：{path}", "请使用更短的名称或更短的文件夹路径")},
    "os.eisdir": {"en": ("{path} is a folder where a file was expected", "give the file inside it, or another path"),
                  "zh": ("{path} 是文件夹，但这里需要文件", "请给出其中的文件或其他路径")},
    "os.enotdir": {"en": ("a part of {path} is a file where a folder was expected", "check the path"),
                   "zh": ("{path} 的某一部分是文件，但这里需要文件夹", "请检查路径")},
    "os.eexist": {"en": ("{path} already exists", "choose another path or remove it first"),
                  "zh": ("{path} 已存在", "请选择其他路径或先删除它")},
    "os.enotempty": {"en": ("the folder {path} is not empty", "choose an empty or new folder"),
                     "zh": ("文件夹 {path} 不为空", "请选择空的或新的文件夹")},
    "os.emfile": {"en": ("too many open files while working on {path}", "raise the limit (`ulimit -n 4096`) and rerun"),
                  "zh": ("处理 {path} 时打开的文件过多", "请提高上限（`ulimit -n 4096`）后重试")},
    "os.enfile": {"en": ("the system ran out of file handles while working on {path}", "close other programs and rerun"),
                  "zh": ("处理 {path} 时系统文件句柄耗尽", "请关闭其他程序后重试")},
    "os.eio": {"en": ("an I/O error while reading or writing {path}", "check the disk (`dmesg`), then rerun"),
               "zh": ("读写 {path} 时发生 I/O 错误", "请检查磁盘（`dmesg`）后重试")},
    "os.enxio": {"en": ("{path} is a device or pipe with no reader or writer", "give a regular file"),
                 "zh": ("{path} 是没有读写端的设备或管道", "请给出普通文件")},
    "os.etxtbsy": {"en": ("{path} is busy (a running program uses it)", "stop the program using it, then rerun"),
                   "zh": ("{path} 正被运行中的程序占用", "请停止占用它的程序后重试")},
    "os.exdev": {"en": ("{path} is on another file system than its destination", "keep source and output on one disk"),
                 "zh": ("{path} 与目标不在同一个文件系统", "请把源和输出放在同一磁盘上")},
    "os.enomem": {"en": ("out of memory while working on {path}", "close other programs or use a smaller batch"),
                  "zh": ("处理 {path} 时内存不足", "请关闭其他程序或减小批量")},
    "os.other": {"en": ("{reason}{place}", "rerun with `vlhub --debug ...` for details"),
                 "zh": ("{reason}{place}", "使用 `vlhub --debug ...` 重新运行以查看详情")},
    "home.full": {"en": ("the disk of VLHUB_HOME ({home}) is full: {reason} ({path})",
                         "free space there (`df -h {home}`) or set VLHUB_HOME to a folder on another disk"),
                  "zh": ("VLHUB_HOME（{home}）所在磁盘已满：{reason}（{path}）",
                         "请释放空间（`df -h {home}`）或把 VLHUB_HOME 设为其他磁盘上的文件夹")},
    "home.not_writable": {"en": ("VLHUB_HOME ({home}) is not writable: {reason} ({path})",
                                 "set VLHUB_HOME to a writable folder, then rerun"),
                          "zh": ("VLHUB_HOME（{home}）不可写：{reason}（{path}）", "请把 VLHUB_HOME 设为可写的文件夹后重试")},
    "text.not_utf8_name": {"en": ("a file name that is not valid UTF-8 under {place}: {name}",
                                  "rename the file to a UTF-8 name (e.g. `convmv -f gbk -t utf-8 --notest -r FOLDER`)"),
                           "zh": ("{place} 下有文件名不是有效的 UTF-8：{name}",
                                  "请把文件重命名为 UTF-8 名称（例如 `convmv -f gbk -t utf-8 --notest -r 文件夹`）")},
    "text.not_utf8": {"en": ("{place}: not UTF-8 text (invalid byte at offset {offset})", "save the file as UTF-8"),
                      "zh": ("{place}：不是 UTF-8 文本（偏移 {offset} 处的字节无效）", "请把文件另存为 UTF-8")},
    "mem.out": {"en": ("out of memory while working on {place}", "close other programs or use smaller inputs"),
                "zh": ("处理 {place} 时内存不足", "请关闭其他程序或使用更小的输入")},
    "space.short": {"en": ("{what} needs {needed} in {place}, but only {free} is free",
                           "free {missing} there (`df -h {place}`) or choose a folder on another disk"),
                    "zh": ("{what} 需要 {place} 有 {needed} 空间，但只剩 {free}",
                           "请在该处释放 {missing}（`df -h {place}`）或选择其他磁盘上的文件夹")},
    # ---- the network (boundary.user_error, net.timeouts)
    "net.connect_timeout": {"en": ("no connection to {place} within the connect timeout",
                                   "check the address and your network; VLHUB_CONNECT_TIMEOUT sets the limit in seconds"),
                            "zh": ("在连接超时内无法连接到 {place}", "请检查地址和网络；VLHUB_CONNECT_TIMEOUT 可设置时限（秒）")},
    "net.read_timeout": {"en": ("{place} accepted the connection but sent no answer within the read timeout",
                                "the server may be overloaded or down: retry later; VLHUB_READ_TIMEOUT sets the limit "
                                "in seconds"),
                         "zh": ("{place} 接受了连接，但在读取超时内没有响应",
                                "服务器可能过载或宕机：请稍后重试；VLHUB_READ_TIMEOUT 可设置时限（秒）")},
    "net.unreachable": {"en": ("cannot reach {place} (connection refused or cut)",
                               "check the address, that the server runs, and your network"),
                        "zh": ("无法连接 {place}（连接被拒绝或中断）", "请检查地址、服务器是否在运行以及网络")},
    "net.bad_seconds": {"en": ("${name}={value} is not a positive number of seconds", "set e.g. {name}={default}"),
                        "zh": ("${name}={value} 不是正的秒数", "请设置为例如 {name}={default}")},
    "error.unexpected": {"en": ("{kind}: {text}", "rerun with `vlhub --debug ...` for the traceback"),
                         "zh": ("{kind}：{text}", "使用 `vlhub --debug ...` 重新运行以查看完整错误")},
}


def register(key: str, en: Text, zh: Text | None = None) -> None:
    """Add a plugin's message (``key`` is ``PLUGIN.NAME``; ``en``/``zh`` are ``(message, fix)`` templates).

    Raises:
        ValueError: ``key`` is already in the catalog with other text.
    """
    entry = {"en": en, **({"zh": zh} if zh else {})}
    if key in CATALOG and CATALOG[key] != entry:
        raise ValueError(f"message key {key!r} is already registered with other text")
    CATALOG[key] = entry


def render(key: str, lang: str, args: Mapping[str, object]) -> Text:
    """``(message, fix)`` of ``key`` in ``lang`` (English when there is no translation).

    Raises:
        KeyError: ``key`` is not in the catalog.
    """
    entry = CATALOG[key]
    message, fix = entry.get(lang) or entry["en"]
    values = _Defaulting(args)
    return message.format_map(values), fix.format_map(values)


class _Defaulting(dict):  # type: ignore[type-arg]
    """Format arguments where a ``NAME_zh`` argument falls back to ``NAME``."""

    def __init__(self, args: Mapping[str, object]) -> None:
        super().__init__(args)

    def __missing__(self, key: str) -> object:
        if key.endswith("_zh") and key[:-3] in self:
            return self[key[:-3]]
        raise KeyError(key)
