"""The ``openai`` chat backend: any OpenAI-compatible endpoint, streamed through the ``openai`` SDK.

Images travel as base64 ``data:`` URLs in ``image_url`` content parts. The key
comes from ``OPENAI_API_KEY`` (it is only ever put in the Authorization header,
and redacted from every message vlhub shows).
"""
from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from PIL import Image

from vlhub.core.net import timeouts
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.secrets import Secret, find_token
from vlhub.core.types import GenerationSettings, Option, Turn

#: What a local server without authentication gets as the key (the SDK insists on one).
NO_KEY = "EMPTY"


def image_data_url(path: Path) -> str:
    """The image file as a ``data:image/...;base64,`` URL."""
    with Image.open(path) as img:
        kind = (img.format or "png").lower()
    return f"data:image/{kind};base64,{base64.b64encode(Path(path).read_bytes()).decode('ascii')}"


def to_messages(history: Sequence[Turn]) -> list[dict[str, Any]]:
    """Chat-completion messages: text and image parts for user turns with images."""
    messages: list[dict[str, Any]] = []
    for turn in history:
        if turn.role == "user" and turn.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
            parts += [{"type": "image_url", "image_url": {"url": image_data_url(p)}} for p in turn.images]
            messages.append({"role": "user", "content": parts})
        else:
            messages.append({"role": turn.role, "content": turn.text})
    return messages


class OpenAISession:
    """A client bound to one endpoint and model name."""

    def __init__(self, base_url: str, model: str, api_key: str = NO_KEY) -> None:
        import openai

        self.openai = openai
        self.base_url = base_url
        limits = timeouts()
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1,
                                    timeout=openai.Timeout(limits.read, connect=limits.connect))
        self.model = model or self._first_model()

    def _translate(self, exc: Exception) -> VlhubError:
        errors = self.openai
        if isinstance(exc, errors.APITimeoutError):
            return VlhubError("net.read_timeout", place=self.base_url)
        if isinstance(exc, errors.APIConnectionError):
            return VlhubError(f"cannot reach the OpenAI-compatible endpoint {self.base_url}",
                              "start the server, or fix --base-url / OPENAI_BASE_URL")
        if isinstance(exc, errors.AuthenticationError):
            return BadInput(f"{self.base_url} refused the API key (401)", "set OPENAI_API_KEY to a valid key")
        if isinstance(exc, errors.NotFoundError):
            return BadInput(f"{self.base_url}: model {self.model!r} not found (404)",
                            f"pass --model with a name listed by {self.base_url.rstrip('/')}/models")
        if isinstance(exc, errors.APIStatusError):
            return VlhubError(f"{self.base_url} answered {exc.status_code}: {str(exc)[:200]}",
                              "check the server's log")
        return VlhubError(f"{self.base_url}: {type(exc).__name__}: {str(exc)[:200]}", "check the server's log")

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self.client.models.list()]
        except self.openai.OpenAIError as exc:
            raise self._translate(exc) from exc
        if not models:
            raise BadInput(f"{self.base_url} serves no model", "pass --model NAME")
        return models[0]

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to the last user turn of ``history``."""
        try:
            stream = self.client.chat.completions.create(
                model=self.model, messages=to_messages(history), stream=True, temperature=settings.temperature,
                top_p=settings.top_p, max_tokens=settings.max_new_tokens)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except self.openai.OpenAIError as exc:
            raise self._translate(exc) from exc

    def close(self) -> None:
        """End the session (and its worker or server)."""
        self.client.close()


class OpenAIBackend:
    """The ``openai`` chat backend (:class:`vlhub.core.types.ChatBackend`)."""

    name = "openai"
    description = "Any OpenAI-compatible endpoint (--base-url, OPENAI_API_KEY); images as data: URLs."
    secrets = (Secret("openai", ("OPENAI_API_KEY",), "API key of the endpoint (local servers may need none)"),)
    options = (
        Option("base_url", "Endpoint, e.g. http://127.0.0.1:23333/v1 (default: $OPENAI_BASE_URL)."),
    )

    def missing(self) -> str | None:
        """``None`` when the backend can run here, else why not and the fix (one line)."""
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> OpenAISession:
        """Connect to the endpoint (``base_url`` option, else ``$OPENAI_BASE_URL``) for ``model``.

        Raises:
            BadInput: no endpoint, a refused key or no such model. VlhubError: the endpoint is unreachable.
        """
        base_url = options.get("base_url") or os.environ.get("OPENAI_BASE_URL", "")
        if not base_url:
            raise BadInput("no OpenAI-compatible endpoint given", "pass --base-url URL or set OPENAI_BASE_URL")
        token = find_token("openai")
        return OpenAISession(base_url, model, token.value or NO_KEY)
