"""The xtuner trainer's option texts in Chinese: option name -> (label, help[, {choice: name}]).

``settings.OPTIONS`` takes them through :func:`vlhub.core.options.translated`, so the Train page shows them
as it shows any plugin's own ``labels``/``helps``. Flags, variables and values a user types stay in code
spans. Terms follow LlamaBoard's Chinese interface (学习率, 梯度累积, LoRA 秩, ...).
"""
from __future__ import annotations

OPTIONS: dict[str, tuple] = {
    "method": ("微调方式", "LoRA（在 LLM 上加适配器）、QLoRA（4 比特 LLM + 适配器，需要 bitsandbytes）或全量微调",
               {"lora": "LoRA", "qlora": "QLoRA", "full": "全量微调"}),
    "template": ("提示词模板", "xtuner 的提示词模板（默认：与模型匹配的模板）"),
    "max_length": ("最大长度", "每个样本的最大 token 数（含图像 token）"),
    "batch_size": ("批大小", "每张 GPU 每步的样本数"),
    "grad_accum": ("梯度累积", "梯度累积步数"),
    "epochs": ("训练轮数", "遍历数据的次数"),
    "max_iters": ("最大迭代数", "达到该迭代数后停止（代替训练轮数）"),
    "lr": ("学习率", "峰值学习率"),
    "warmup_ratio": ("预热比例", "线性预热占整个学习率调度的比例"),
    "weight_decay": ("权重衰减", "AdamW 的权重衰减"),
    "max_norm": ("梯度裁剪", "梯度裁剪的范数上限"),
    "save_steps": ("保存间隔", "每 N 次迭代保存一个检查点"),
    "save_limit": ("保留检查点数", "最多保留 N 个检查点（-1：全部保留）"),
    "lora_r": ("LoRA 秩", "LLM 上 LoRA 的秩"),
    "lora_alpha": ("LoRA 缩放系数", "LLM 上 LoRA 的缩放系数 α"),
    "lora_dropout": ("LoRA 随机丢弃", "LLM 上 LoRA 层的随机丢弃比例"),
    "vit_lora_r": ("视觉 LoRA 秩", "视觉编码器上 LoRA 的秩（0：视觉编码器不用 LoRA）"),
    "vit_lora_alpha": ("视觉 LoRA 缩放系数", "视觉编码器上 LoRA 的缩放系数 α"),
    "freeze_llm": ("冻结 LLM", "冻结 LLM 自身的权重（默认：冻结，全量微调除外）"),
    "freeze_vit": ("冻结视觉编码器", "冻结视觉编码器自身的权重"),
    "deepspeed": ("DeepSpeed", "DeepSpeed ZeRO 阶段，或不使用 DeepSpeed",
                  {"zero1": "ZeRO-1", "zero2": "ZeRO-2", "zero3": "ZeRO-3", "zero3_offload": "ZeRO-3（卸载到 CPU）",
                   "none": "不使用"}),
    "gpus": ("GPU 数", "本机使用的 GPU 数（每台机器的进程数；默认 1，或所选 GPU 编号的个数）"),
    "devices": ("使用的 GPU 编号", "训练使用的 GPU 编号，用逗号分隔，例如 0,1（设置 `CUDA_VISIBLE_DEVICES`；"
                "GPU 数默认为编号个数）"),
    "nnodes": ("节点数", "参与训练的机器数（`NNODES`）"),
    "node_rank": ("节点序号", "本机的序号，主节点为 0（`NODE_RANK`）"),
    "master_addr": ("主节点地址", "0 号机器的地址（`ADDR`）"),
    "master_port": ("主节点端口", "0 号机器上的汇合端口（默认：单机时每次启动选一个空闲端口，多机时为 29500）"),
    "eval_prompt": ("评测提示词", "训练中针对评测图片回答的提示词（每行一个）"),
    "eval_image": ("评测图片", "评测提示词所用的图片"),
    "eval_every": ("示例输出间隔", "每 N 次迭代输出一次示例回答（默认：与保存间隔相同）"),
    "val_every": ("验证间隔", "每 N 次迭代在数据文件夹的 `val.json` 和 `val_mc.json` 上验证一次（默认：使验证时间不超过"
                  "训练时间的 10%；0：不验证）"),
    "val_items": ("验证条数", "每次最多用 N 条 `val.json` 记录和 N 道 `val_mc.json` 题目验证（默认：随验证间隔选定；"
                  "0：不验证）"),
    "best_metric": ("最佳检查点指标", "用来选出最佳检查点的验证指标（保留检查点时保留它，`vlhub convert RUN` 转换它）",
                    {"val_loss": "验证损失", "val_acc": "验证准确率"}),
    "report_to": ("实验跟踪", "实验跟踪工具：`tensorboard`、`wandb`、`swanlab` 或 `none`（每行一个；默认：TensorBoard，"
                  "训练环境中装有并已登录时再加上 W&B 和 SwanLab）"),
    "image_root": ("图片根目录", "数据中图片路径所相对的文件夹（默认：由数据决定）"),
    "workers": ("数据加载进程数", "读取数据的工作进程数"),
    "seed": ("随机种子", "随机种子"),
    "log_interval": ("日志间隔", "每 N 次迭代记录一次日志"),
    "strict": ("严格模式", "有样本超过最大长度时拒绝规划（默认：给出警告并截断）"),
    "check_step": ("启动前试跑一步", "启动前在 CPU 上构建模型、训练一步并回答一个示例提示词（大模型较慢）"),
    "launch_command": ("启动命令", "用此命令行代替 `xtuner train ...`（会填入 `{config}`、`{work_dir}`、`{run_dir}`）；"
                       "用于 srun 等包装器和测试"),
}
