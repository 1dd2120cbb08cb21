"""The built-in dataset plugins' texts in Chinese: descriptions, and option name -> (label, help[, {choice: name}]).

The plugins take them through :func:`vlhub.core.options.translated` and their ``descriptions``, so the Data
page shows them as it shows any plugin's own translations. Subset names, fields and values a user types stay
in code spans.
"""
from __future__ import annotations

DESCRIPTIONS = {
    "foodieqa": "FoodieQA（`lyan62/FoodieQA`）：中国菜的多项选择视觉问答，按菜品划分训练集和验证集。",
    "llava-json": "任意 LLaVA 格式的 JSON/JSONL，或 ShareGPT/OpenAI 的 `messages` 记录，转换为 LLaVA 格式。",
    "clot": "CLoT_cn_2000（`ex_cn.json` + `ex_images/`）：校验、抽样 N 条，写成 LLaVA 格式的数据。",
}

FOODIEQA: dict[str, tuple] = {
    "subsets": ("子集", "逗号分隔的子集：`sivqa`、`mivqa`、`textqa`"),
    "answer_template": ("单图题答案模板", "`sivqa` 的答案；可用字段 `{answer}` `{letter}` `{index}` `{food_name}` "
                        "`{question}`"),
    "mivqa_template": ("多图题答案模板", "`mivqa` 的答案（字段同上；`{answer}` 为“图”加字母）"),
    "textqa_template": ("文字题答案模板", "`textqa` 的答案（字段同上）"),
    "with_choices": ("附带选项", "在每个问题后附上带字母的选项"),
    "val_fraction": ("验证集比例", "划入验证集的记录比例（按菜品整体划分）"),
    "seed": ("随机种子", "划分所用的随机种子"),
}

COMMON: dict[str, tuple] = {
    "sample": ("抽样数", "随机保留 N 条可用记录，用随机种子抽取（0：全部）"),
    "val_fraction": ("验证集比例", "划入验证集的记录比例（按图片整体划分）"),
    "seed": ("随机种子", "抽样和划分所用的随机种子"),
    "system": ("系统提示词", "系统轮次：保留（第一个系统轮次作为该记录的系统提示词，之后的会被拒绝）、拒绝（含系统轮次的记录"
               "被剔除并列出）或去掉（不保留系统轮次，训练使用聊天模板的系统提示词）",
               {"keep": "保留", "reject": "拒绝", "drop": "去掉"}),
}

LLAVA_JSON: dict[str, tuple] = {
    "file": ("数据文件", "源文件夹中的 JSON/JSONL 文件（源是文件夹时）"),
    "image_root": ("图片根目录", "图片路径所相对的文件夹（默认：数据文件所在的文件夹）"),
}
