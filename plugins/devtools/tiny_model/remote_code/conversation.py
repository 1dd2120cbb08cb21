"""Conversation templates used by ``InternVLChatModel.chat`` (the names InternVL2 configs use)."""
from __future__ import annotations

import dataclasses

INTERNVL_SYSTEM = ("你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, "
                   "是一个有用无害的人工智能助手。")
#: The system prompt of the ``internvl2_5`` template (InternVL2.5, InternVL3, InternVL3.5).
INTERNVL2_5_SYSTEM = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                      "多模态大语言模型。")


@dataclasses.dataclass
class Conversation:
    """An MPT-style prompt: ``system + sep``, then ``role + message + sep`` per turn."""

    name: str
    system_template: str
    system_message: str
    roles: tuple[str, str]
    sep: str
    messages: list[list] = dataclasses.field(default_factory=list)

    def append_message(self, role: str, message: str | None) -> None:
        """Add one turn; ``None`` leaves the role open for generation."""
        self.messages.append([role, message])

    def get_prompt(self) -> str:
        """The full prompt text."""
        ret = self.system_template.format(system_message=self.system_message) + self.sep
        for role, message in self.messages:
            ret += role + message + self.sep if message else role
        return ret

    def copy(self) -> "Conversation":
        """A fresh copy with its own message list."""
        return dataclasses.replace(self, messages=[list(m) for m in self.messages])


TEMPLATES: dict[str, Conversation] = {
    "phi3-chat": Conversation("phi3-chat", "<|system|>\n{system_message}", INTERNVL_SYSTEM,
                              ("<|user|>\n", "<|assistant|>\n"), "<|end|>"),
    "internlm2-chat": Conversation("internlm2-chat", "<|im_start|>system\n{system_message}", INTERNVL_SYSTEM,
                                   ("<|im_start|>user\n", "<|im_start|>assistant\n"), "<|im_end|>"),
    "Hermes-2": Conversation("Hermes-2", "<|im_start|>system\n{system_message}", INTERNVL_SYSTEM,
                             ("<|im_start|>user\n", "<|im_start|>assistant\n"), "<|im_end|>"),
    "internvl2_5": Conversation("internvl2_5", "<|im_start|>system\n{system_message}", INTERNVL2_5_SYSTEM,
                                ("<|im_start|>user\n", "<|im_start|>assistant\n"), "<|im_end|>\n"),
}


def get_conv_template(name: str) -> Conversation:
    """A fresh copy of the named template."""
    if name not in TEMPLATES:
        raise KeyError(f"unknown conversation template {name!r}; known: {sorted(TEMPLATES)}")
    return TEMPLATES[name].copy()
