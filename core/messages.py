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

import json
import re
from typing import Mapping, Sequence

Text = tuple[str, str]

CATALOG: dict[str, dict[str, Text]] = {
    # ---- stage environments (stage.launcher_warning)
    "env.foreign_torchrun": {
        "en": ("torchrun on PATH ({script}) runs {runs}, not this environment's Python ({python}): "
               "`NPROC_PER_NODE=2 xtuner train` started by hand would start ranks without this environment's packages. "
               "Fix: vlhub launches several GPUs with `{python} -m torch.distributed.run` and is not affected; launch "
               "by hand the same way, or remove that torchrun from PATH", ""),
        "zh": ("`PATH` 上的 torchrun（{script}）运行的是 {runs}，而不是本环境的 Python（{python}）：手动运行 "
               "`NPROC_PER_NODE=2 xtuner train` 启动的各进程将缺少本环境的软件包。修复：vlhub 以 "
               "`{python} -m torch.distributed.run` 启动多卡训练，不受影响；手动启动时也请这样做，或从 `PATH` 中移除该 torchrun",
               "")},
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
        "zh": ("{flag} {path} 已存在且不为空", "请另选 {flag}，或勾选“覆盖”（`--force`），新文件夹完成后再替换")},
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
        "zh": ("{flag} {path}：文件夹 {parent} 不存在", "请先创建它（`mkdir -p {parent}`）")},
    "out.not_writable": {
        "en": ("{flag} {path}: cannot write there (permission denied or read-only)", "choose a folder you can write to"),
        "zh": ("{flag} {path}：无法写入（没有权限或只读）", "请选择一个可写的文件夹")},
    # ---- the file system (boundary.user_error)
    "os.enospc": {"en": ("the disk holding {path} is full (No space left on device)",
                         "free space there (`df -h {folder}`) or choose a folder on another disk"),
                  "zh": ("{path} 所在的磁盘已满（`No space left on device`）", "请释放空间（`df -h {folder}`）或选择其他磁盘上的文件夹")},
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
    # ---- an HTTP error answer of any SDK or client (boundary.http_error)
    "http.unauthorized": {"en": ("{place} rejected the credentials (HTTP 401: {detail})",
                                 "check the token: it may be mistyped, expired or revoked"),
                          "zh": ("{place} 拒绝了凭据（HTTP 401：{detail}）", "请检查令牌：可能输错、已过期或已被撤销")},
    "http.forbidden": {"en": ("{place} refused: these credentials may not do this (HTTP 403: {detail})",
                              "use a token with the rights this needs (e.g. write access to the repository)"),
                       "zh": ("{place} 拒绝：这些凭据无权执行此操作（HTTP 403：{detail}）", "请使用具备所需权限的令牌（例如对该仓库的写权限）")},
    "http.not_found": {"en": ("{place} was not found (HTTP 404: {detail})",
                              "check the name or URL, and that the token's account can see it"),
                       "zh": ("找不到 {place}（HTTP 404：{detail}）", "请检查名称或地址，以及令牌所属账号能否看到它")},
    "http.refused": {"en": ("{place} refused the request as invalid (HTTP {status}: {detail})",
                            "correct what the server's message names, then rerun"),
                     "zh": ("{place} 认为请求无效而拒绝（HTTP {status}：{detail}）", "请按服务器消息所指修正后重试")},
    "http.busy": {"en": ("{place} could not take the request now (HTTP {status}: {detail})",
                         "retry in a while (a publish rerun resumes)"),
                  "zh": ("{place} 暂时无法处理该请求（HTTP {status}：{detail}）", "请稍后重试（重新发布会接着上次继续）")},
    "http.server": {"en": ("{place} failed on the server's side (HTTP {status}: {detail})",
                           "the server is failing or overloaded: retry later (a publish rerun resumes)"),
                    "zh": ("{place} 在服务器端出错（HTTP {status}：{detail}）", "服务器出错或过载：请稍后重试（重新发布会接着上次继续）")},
    # ---- who may write where (core.publishing.access)
    "publish.no_token": {"en": ("no {hub} token was found", "set {token_var} to a token with write access ({tokens_url})"),
                         "zh": ("没有找到 {hub} 的令牌", "请把 {token_var} 设为具有写权限的令牌（{tokens_url}）")},
    "publish.token_rejected": {"en": ("the {hub} token was rejected by {endpoint} (HTTP 401: {detail}; the token came from {token})",
                                      "check {token_var}: it may be mistyped, expired or revoked; a new one is made at "
                                      "{tokens_url}"),
                               "zh": ("{hub} 令牌被 {endpoint} 拒绝（HTTP 401：{detail}；令牌来自 {token}）",
                                      "请检查 {token_var}：可能输错、已过期或已被撤销；可在 {tokens_url} 新建令牌")},
    "publish.foreign_namespace": {"en": ("the token's account {user} may not write to the namespace {namespace} "
                                         "(its namespaces: {namespaces})",
                                         "publish to {example} (or an organisation listed), or set {token_var} to a "
                                         "token of an account that may write to {namespace}"),
                                  "zh": ("令牌所属账号 {user} 无权写入命名空间 {namespace}（它的命名空间：{namespaces}）",
                                         "请发布到 {example}（或所列的组织），或把 {token_var} 设为有权写入 {namespace} 的账号的令牌")},
    "publish.namespace_unproven": {"en": ("the token's account is {user}, not {namespace}, and {hub}'s SDK cannot list the "
                                          "organisations {user} belongs to",
                                          "publish to {example}; if {namespace} is an organisation where {user} may "
                                          "write, pass {flag}"),
                                   "zh": ("令牌所属账号是 {user}，不是 {namespace}，而 {hub} 的 SDK 无法列出 {user} 所属的组织",
                                          "请发布到 {example}；若 {namespace} 是 {user} 有写权限的组织，请勾选 {flag}")},
    "publish.read_token": {"en": ("the {hub} token ({token}) of {user} is read-only (role: read)",
                                  "create a token with write access ({tokens_url}) and set {token_var} to it"),
                           "zh": ("{user} 的 {hub} 令牌（{token}）是只读的（角色：`read`）",
                                  "请新建具有写权限的令牌（{tokens_url}）并把 {token_var} 设为它")},
    "publish.org_role": {"en": ("{user} has the role '{role}' in the organisation {namespace}, which may not write",
                                "ask an admin of {namespace} for the write role, or publish to {example}"),
                         "zh": ("{user} 在组织 {namespace} 中的角色是 `{role}`，无权写入",
                                "请向 {namespace} 的管理员申请写权限，或发布到 {example}")},
    "publish.token_scope": {"en": ("the fine-grained {hub} token ({token}) may not write to {namespace} "
                                   "(it may write to: {scopes})",
                                   "edit the token at {tokens_url}: give it write access (repo.write) to the "
                                   "repositories of {namespace}, or set {token_var} to another token"),
                            "zh": ("细粒度 {hub} 令牌（{token}）无权写入 {namespace}（可写入：{scopes}）",
                                   "请在 {tokens_url} 编辑该令牌，授予对 {namespace} 仓库的写权限（repo.write），或把 {token_var} 设为其他令牌")},
    "publish.private_but_public": {"en": ("{flag} was given, but the repository {repo} already exists and is public: "
                                          "publishing would leave it public",
                                          "pass {change_flag} to make it private before anything is sent, or drop "
                                          "{flag} to publish to the public repository"),
                                   "zh": ("选择了 {flag}，但仓库 {repo} 已存在且是公开的：发布后它仍会公开",
                                          "请勾选 {change_flag}，在发送任何内容之前把它改为私有；或取消 {flag}，发布到这个公开仓库")},
    "publish.visibility_unchangeable": {"en": ("{flag}: vlhub cannot change the visibility of {repo} ({why})",
                                               "make it private on the host ({url}), then rerun with --private"),
                                        "zh": ("{flag}：vlhub 无法更改 {repo} 的可见性（{why}）",
                                               "请在托管方网站（{url}）把它设为私有，然后勾选“私有仓库”（--private）重新运行")},
    "publish.forbidden": {"en": ("{hub} refused to let the token write to {namespace} (HTTP 403: {detail})",
                                 "use a token whose account may write to {namespace} (set {token_var}), or publish "
                                 "under your own namespace"),
                          "zh": ("{hub} 拒绝该令牌写入 {namespace}（HTTP 403：{detail}）",
                                 "请使用有权写入 {namespace} 的账号的令牌（设置 {token_var}），或发布到你自己的命名空间")},
    "publish.not_found": {"en": ("{hub} has no repository {repo}, or the token's account cannot see it (HTTP 404: {detail})",
                                 "check the repository name, and that {token_var} belongs to an account with access"),
                          "zh": ("{hub} 上没有仓库 {repo}，或令牌所属账号看不到它（HTTP 404：{detail}）",
                                 "请检查仓库名，以及 {token_var} 所属账号是否有访问权限")},
    "publish.hub_refused": {"en": ("{hub} refused the request as invalid (HTTP {status}: {detail})",
                                   "correct what the hub's message names, then rerun"),
                            "zh": ("{hub} 认为请求无效而拒绝（HTTP {status}：{detail}）", "请按该平台消息所指修正后重试")},
    "publish.hub_failed": {"en": ("{hub} ({endpoint}) failed on its side (HTTP {status}: {detail})",
                                  "the hub is failing or overloaded: retry later (a rerun resumes and sends only what "
                                  "is missing)"),
                           "zh": ("{hub}（{endpoint}）在服务器端出错（HTTP {status}：{detail}）",
                                  "该平台出错或过载：请稍后重试（重新运行会接着上次继续，只发送缺少的部分）")},
    "publish.git_credentials": {"en": ("{url} rejected the credentials ({detail})",
                                       "check {token_var}{user_hint}: the token may be mistyped, expired or revoked"),
                                "zh": ("{url} 拒绝了凭据（{detail}）", "请检查 {token_var}{user_hint}：令牌可能输错、已过期或已被撤销")},
    "publish.git_no_push": {"en": ("{url} refused the push service to this token: it may read {repo} but not write "
                                   "to it ({detail})",
                                   "use a token with write (push) access to {repo} in {token_var}, or publish to a "
                                   "repository you own"),
                            "zh": ("{url} 拒绝该令牌使用推送服务：可以读取 {repo} 但不能写入（{detail}）",
                                   "请在 {token_var} 中使用对 {repo} 有写（推送）权限的令牌，或发布到你自己的仓库")},
    "publish.git_forbidden": {"en": ("{url} refused this token access to {repo} ({detail})",
                                     "use a token with access to {repo} in {token_var}, or check the URL"),
                              "zh": ("{url} 拒绝该令牌访问 {repo}（{detail}）", "请在 {token_var} 中使用能访问 {repo} 的令牌，或检查地址")},
    "publish.git_no_repo": {"en": ("no repository at {url}, or the token may not see it ({detail})",
                                   "create the repository on the host first, or check the URL and {token_var}"),
                            "zh": ("{url} 上没有仓库，或令牌看不到它（{detail}）", "请先在托管方创建仓库，或检查地址和 {token_var}")},
    # ---- the serve-ready check (core.serve_check) and its publish gate (core.publish)
    "check.bad_backend": {"en": ("{flag} {backend} cannot run a serve check", "use one of: {choices}"),
                          "zh": ("{flag} {backend} 不能运行服务检查", "请使用以下之一：{choices}")},
    "check.bad_limit": {"en": ("{flag} {value} is below 1", "give a limit such as {flag} 128"),
                        "zh": ("{flag} {value} 小于 1", "请给出上限，例如 {flag} 128")},
    "check.not_model": {"en": ("{path}: not a model folder (no config.json)",
                               "give the folder written by `vlhub convert` (config.json, weights, remote code)"),
                        "zh": ("{path}：不是模型文件夹（没有 config.json）",
                               "请给出 `vlhub convert` 写出的文件夹（含 config.json、权重和模型代码）")},
    "check.ok": {"en": ("answered and stopped with {stop} after {tokens} tokens (limit {limit})", ""),
                 "zh": ("已回答，并在 {tokens} 个 token 后以 {stop} 停止（上限 {limit}）", "")},
    "check.ok_unnamed": {"en": ("answered and stopped after {tokens} tokens (limit {limit})", ""),
                         "zh": ("已回答，并在 {tokens} 个 token 后停止（上限 {limit}）", "")},
    "check.no_stop": {"en": ("no stop token within {limit} tokens: the answer ran on to the limit",
                             "check the chat template the folder bundles and its eos token (`vlhub templates`); "
                             "for long answers pass a larger {flag}"),
                      "zh": ("{limit} 个 token 内没有出现停止符：回答一直写到了上限",
                             "请检查文件夹自带的对话模板及其结束符（`vlhub templates`）；回答较长时请调大 {flag}")},
    "check.empty": {"en": ("the answer was empty: the first token generated was the stop token {stop}",
                           "the fine-tune may have learned to stop at once: check the answers in the training data "
                           "and the chat template"),
                    "zh": ("回答为空：生成的第一个 token 就是停止符 {stop}", "微调可能学会了立刻停止：请检查训练数据中的回答和对话模板")},
    "check.wrong_stop": {"en": ("generation stopped on {stop}, which is neither an eos token of the folder nor a stop "
                                "word of the chat template {template} ({words})",
                                "make the folder's chat template end a turn with {words}, or convert with the right "
                                "{template_flag}"),
                         "zh": ("生成在 {stop} 处停止，它既不是该文件夹的结束符，也不是对话模板 {template} 的停止词（{words}）",
                                "请让文件夹的对话模板以 {words} 结束一轮，或用正确的 {template_flag} 重新转换")},
    "check.load_failed": {"en": ("the model did not load or answer with {backend}: {error}",
                                 "fix what the error names, then run `vlhub check` again"),
                          "zh": ("模型无法用 {backend} 加载或回答：{error}", "请修复错误所指的问题，然后再运行 `vlhub check`")},
    "check.publish_refused": {"en": ("{folder}: its last serve check ({date}, {backend}) failed: {reason}",
                                     "fix the model and run `vlhub check {folder}` again, or pass {flag} to publish "
                                     "it anyway"),
                              "zh": ("{folder}：最近一次服务检查（{date}，{backend}）未通过：{reason}",
                                     "请修复模型后再运行 `vlhub check {folder}`，或勾选 {flag} 仍然发布")},
    # ---- the pages' commonest refusals (core.data, core.publishing.checks)
    "data.source_missing": {"en": ("source {path} does not exist", "check the {flag} path"),
                            "zh": ("源 {path} 不存在", "请检查 {flag} 的路径")},
    "publish.bad_repo_name": {"en": ("{hub}: {repo} is not a valid repository name",
                                     "use OWNER/NAME with letters, digits, '-', '_' or '.', not starting or ending "
                                     "with '-' or '.', e.g. {hub}:{example}"),
                              "zh": ("{hub}：{repo} 不是有效的仓库名",
                                     "请使用 `OWNER/NAME` 的形式，只含字母、数字和 `-` `_` `.`，且不以 `-` 或 `.` 开头或结尾，"
                                     "例如 `{hub}:{example}`")},
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


class Keyed(str):
    """A catalog message as one English line (``message: fix``) that keeps its ``key`` and ``params``.

    What a plugin or the core returns where an interface asks for text, e.g.
    :meth:`vlhub.core.types.ChatBackend.missing`: the CLI prints it as it is, a page shows
    :meth:`localized`.

    Args:
        key: a catalog key (:data:`CATALOG`, or one a plugin added with :func:`register`).
        **params: the key's arguments.
    Raises:
        KeyError: ``key`` is not in the catalog, or an argument of its text is missing.
    """

    key: str
    params: dict[str, object]

    def __new__(cls, key: str, **params: object) -> Keyed:
        text = super().__new__(cls, _line(*render(key, "en", params), "en"))
        text.key, text.params = key, dict(params)
        return text

    def localized(self, lang: str) -> str:
        """The line in ``lang`` (English when the key has no such translation)."""
        return _line(*render(self.key, lang, self.params), lang)

    def public(self) -> dict[str, object]:
        """``{"key", "params"}``, JSON-ready (what travels with the English text through a job's result)."""
        return {"key": self.key, "params": json.loads(json.dumps(self.params, default=str))}

    def __reduce__(self) -> tuple[object, ...]:  # copies (dataclasses.asdict) and pickles keep the key
        return _keyed, (self.key, self.params)


def _keyed(key: str, params: Mapping[str, object]) -> Keyed:
    return Keyed(key, **params)


def relabel(text: str, labels: Mapping[str, str] | None) -> str:
    """``text`` with the CLI flags it names replaced by a page's field labels (``{"--out": "“输出文件夹”"}``):
    whole flags only (``--model`` is not part of ``--model-dir``), never inside a `code span` (a command line
    stays as it is typed)."""
    if not labels:
        return text
    flags = re.compile("|".join(rf"(?<![\w-]){re.escape(f)}(?![\w-])" for f in sorted(labels, key=len, reverse=True)))
    parts = text.split("`")
    return "`".join(flags.sub(lambda m: labels[m.group(0)], part) if n % 2 == 0 else part
                    for n, part in enumerate(parts))


def details(texts: Sequence[str]) -> list[dict[str, object] | None]:
    """For each text, :meth:`Keyed.public` when it is keyed, else ``None`` (e.g. a plan's warnings, sent as
    English text beside these so that a page shows them in its language: :func:`from_detail`)."""
    return [text.public() if isinstance(text, Keyed) else None for text in texts]


def from_detail(text: str, detail: object) -> str:
    """``text`` again as a :class:`Keyed` when ``detail`` (from :func:`details`) names a key the catalog has
    (with arguments that fit it), else ``text`` as it is."""
    if isinstance(detail, dict) and detail.get("key") in CATALOG and isinstance(detail.get("params"), dict):
        try:
            return Keyed(str(detail["key"]), **detail["params"])
        except (KeyError, IndexError, ValueError):  # a key whose arguments changed since
            return text
    return text


def _line(message: str, fix: str, lang: str) -> str:
    if not fix:
        return message
    return f"{message}: {fix}" if lang == "en" else f"{message}：{fix}"


class _Defaulting(dict):  # type: ignore[type-arg]
    """Format arguments where a ``NAME_zh`` argument falls back to ``NAME``."""

    def __init__(self, args: Mapping[str, object]) -> None:
        super().__init__(args)

    def __missing__(self, key: str) -> object:
        if key.endswith("_zh") and key[:-3] in self:
            return self[key[:-3]]
        raise KeyError(key)
