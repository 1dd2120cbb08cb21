"""The built-in chat backends' option texts in Chinese: option name -> (label, help[, {choice: name}]).

The backends take them through :func:`vlhub.core.options.translated`. Values a user types stay in code spans.
"""
from __future__ import annotations

LMDEPLOY: dict[str, tuple] = {
    "engine": ("推理引擎", "`turbomind`（不支持时退回 `pytorch`）或 `pytorch`", {"turbomind": "TurboMind",
                                                                             "pytorch": "PyTorch"}),
    "tp": ("张量并行", "张量并行：每个模型使用的 GPU 数"),
    "session_len": ("会话长度", "对话的最大 token 数（默认：模型自身的长度）"),
    "max_batch_size": ("最大批大小", "一起解码的序列数，即并发请求数（`vlhub eval` 一次发送这么多）；PyTorch 引擎按它确定 "
                       "CUDA 图的大小"),
    "cache_max_entry_count": ("键值缓存显存占比", "用作键值缓存的空闲 GPU 显存比例（两个模型可以共用一块 GPU）"),
    "eager_mode": ("关闭 CUDA 图捕获", "PyTorch 引擎：不使用 CUDA 图（启动更快、显存更省，解码更慢）"),
}

OPENAI: dict[str, tuple] = {
    "base_url": ("接口地址", "接口地址，例如 `http://127.0.0.1:23333/v1`（默认：`$OPENAI_BASE_URL`）"),
    "concurrency": ("并发请求数", "`vlhub eval` 一次发送的请求数（会合并批处理的服务器，例如 LMDeploy 或 vLLM，会一起回答）"),
}

TRANSFORMERS: dict[str, tuple] = {
    "env": ("运行环境", "在哪个阶段环境中运行（默认：装有 serve 时用 serve，否则用 train）"),
    "device": ("设备", "自动、CPU 或 CUDA", {"auto": "自动", "cpu": "CPU", "cuda": "CUDA"}),
    "max_tiles": ("最大切块数", "每张图片最多切成多少个 448 像素的图块（默认：模型的 `max_dynamic_patch`）"),
}
