"""An example vlhub plugin: a chat backend that relays the conversation to an OpenAI-compatible endpoint.

``vlhub chat MODEL --backend relay --endpoint http://HOST:PORT/v1 -m "hi"`` sends the whole history
(images as ``data:`` URLs) to ``ENDPOINT/chat/completions`` for the endpoint's model ``MODEL`` and prints
the answer. Only the standard library is used, so the plugin is light to import.

It declares one option, ``endpoint`` (``--endpoint URL`` or ``--opt endpoint=URL`` on ``vlhub chat``,
default ``$EXAMPLE_RELAY_URL``; 接口地址 on the Chinese pages), and one secret, ``EXAMPLE_RELAY_KEY``: the
endpoint's API key, sent only in the ``Authorization`` header. Without it ``open`` fails naming the
variable (exit 2).
"""
from __future__ import annotations

import base64
import json
import mimetypes
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from vlhub.core import hookimpl
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.secrets import require_token
from vlhub.core.types import GenerationSettings, Option, Secret, Turn

vlhub_requires = ">=1.0,<2"

KEY = Secret("relay", ("EXAMPLE_RELAY_KEY",), "API key of the endpoint the relay backend talks to")
TIMEOUT = 120


def _content(turn: Turn) -> Any:
    """A turn's text, or text and images (``data:`` URLs) as content parts."""
    if not turn.images:
        return turn.text
    parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
    for image in turn.images:
        kind = mimetypes.guess_type(str(image))[0] or "image/png"
        data = base64.b64encode(Path(image).read_bytes()).decode()
        parts.append({"type": "image_url", "image_url": {"url": f"data:{kind};base64,{data}"}})
    return parts


class RelaySession:
    """One conversation with the endpoint's model (:class:`vlhub.core.types.ChatSession`)."""

    def __init__(self, endpoint: str, model: str, key: str) -> None:
        self.url = endpoint.rstrip("/") + "/chat/completions"
        self.model = model
        self._key = key

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Send the history, yield the answer (in one chunk). Raises BadInput for a refused key or an
        unknown model, VlhubError when the endpoint fails or cannot be reached."""
        body = {"model": self.model, "stream": False, "temperature": settings.temperature,
                "top_p": settings.top_p, "max_tokens": settings.max_new_tokens,
                "messages": [{"role": turn.role, "content": _content(turn)} for turn in history]}
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self._key}"})
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                answer = json.load(response)["choices"][0]["message"]["content"]
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise BadInput(f"{self.url} refused EXAMPLE_RELAY_KEY (HTTP {exc.code})", "check the key") from None
            if exc.code == 404:
                raise BadInput(f"{self.url} has no model {self.model!r} (HTTP 404)", "check MODEL") from None
            raise VlhubError(f"{self.url} answered HTTP {exc.code}", "retry, or check the endpoint's log") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise VlhubError(f"cannot reach {self.url} ({reason})", "check --endpoint") from None
        except (ValueError, KeyError, IndexError, TypeError):
            raise VlhubError(f"{self.url} did not answer like an OpenAI-compatible endpoint",
                             "check --endpoint (it ends in /v1)") from None
        yield answer or ""

    def close(self) -> None:
        """Nothing to stop: every reply is one request."""


class RelayBackend:
    """Relay chats to an OpenAI-compatible endpoint (:class:`vlhub.core.types.ChatBackend`)."""

    name = "relay"
    description = "Relay to an OpenAI-compatible endpoint (--endpoint; key in $EXAMPLE_RELAY_KEY)."
    options = (Option("endpoint", "Base URL of the endpoint, e.g. http://127.0.0.1:8000/v1 "
                      "(default: $EXAMPLE_RELAY_URL).", labels={"zh": "接口地址"}),)
    secrets = (KEY,)

    def missing(self) -> str | None:
        """Nothing to install: the standard library is enough."""
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> RelaySession:
        """A session for the endpoint's ``model``. Raises BadInput without an endpoint, a model or the key."""
        endpoint = options.get("endpoint") or os.environ.get("EXAMPLE_RELAY_URL", "")
        if not endpoint:
            raise BadInput("no endpoint given for the relay backend", "pass --endpoint URL or set EXAMPLE_RELAY_URL")
        if not model:
            raise BadInput("no model given for the relay backend", "vlhub chat MODEL --backend relay --endpoint URL")
        return RelaySession(endpoint, model, require_token(KEY))


@hookimpl
def register_chat_backends(register) -> None:
    """Register the relay chat backend."""
    register(RelayBackend())
