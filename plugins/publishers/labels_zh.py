"""The built-in publishers' option texts in Chinese: option name -> (label, help[, {choice: name}]).

The publishers take them through :func:`vlhub.core.options.translated`, so the Publish page shows them as it
shows any plugin's own ``labels``/``helps``. Flags and values a user types stay in code spans.
"""
from __future__ import annotations

COMMON: dict[str, tuple] = {
    "private": ("私有仓库", "将仓库创建为私有（有 API 的模型仓库）；已有的公开仓库会被拒绝，除非勾选“设为私有”"),
    "make_private": ("设为私有", "上传前先把已有的公开仓库设为私有（Hugging Face）"),
    "via": ("上传方式", "API（模型仓库的 SDK）或 git（git + LFS）", {"api": "API", "git": "git + LFS"}),
    "message": ("提交说明", "这次提交的说明"),
    "require_keyword": ("必须包含的词", "仓库名中不含此词则拒绝发布"),
    "overwrite_card": ("覆盖远端卡片", "替换远端不是 vlhub 写的模型卡片"),
    "follow_symlinks": ("跟随符号链接", "上传指向模型文件夹之外的符号链接所指的文件（否则拒绝）"),
    "base_model": ("基础模型", "模型卡片中的基础模型，模型仓库 ID，形如 `ORG/NAME`（默认：从文件夹读取）"),
    "allow_template_mismatch": ("允许不一致的聊天模板", "聊天模板与目录中该配置的模板不一致时仍然发布"),
}

MODELSCOPE: dict[str, tuple] = {
    "org_member": ("组织成员", "ModelScope：目标命名空间是令牌用户可写入的组织（SDK 无法列出用户所属的组织；最终由模型仓库"
                   "判断）"),
}
