"""The ``openai`` chat backend: any OpenAI-compatible endpoint, streamed through the ``openai`` SDK.

Images travel as base64 ``data:`` URLs in ``image_url`` content parts, encoded on threads (the new images
of a turn at once) and once per session (later turns send them again from the session's cache); a
session given the model's InternVL tiling (the ``lmdeploy`` backend's) first makes each photo no larger
than that tiling uses (:func:`chat_tiling.upload`). The key
comes from ``OPENAI_API_KEY`` (it is only ever put in the Authorization header,
and redacted from every message vlhub shows).

Every failure is one line naming the URL tried and the fix, never an exception class:
:func:`check_base_url` refuses a ``--base-url`` that cannot be an API root before any request
(no scheme, a pasted ``/chat/completions``, ...); :meth:`OpenAISession._translate` maps what the
SDK raised (refused, reset, TLS to a plain-HTTP port, timeouts from :func:`vlhub.core.net.timeouts`,
401/403/404/4xx/5xx) and, for a 404/405 or a web page, asks the same server for ``/models`` to tell
a missing model from a URL that is not the API root (and which root answers). docs/chat.md lists them.
"""
from __future__ import annotations

import json
import os
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

from vlhub.core import messages as catalog
from vlhub.core.net import timeouts
from vlhub.core.options import translated
from vlhub.core.errors import BadInput, VlhubError
from vlhub.core.secrets import Secret, find_token
from vlhub.core.types import GenerationSettings, Option, Turn

from ..workers import chat_tiling
from ..workers.chat_tiling import Tiling
from . import labels_zh

#: What a local server without authentication gets as the key (the SDK insists on one).
NO_KEY = "EMPTY"
#: Bytes of ``data:`` URLs a session keeps for images sent again in later turns.
UPLOAD_CACHE_BYTES = 256 * 1024 * 1024

catalog.register(
    "backends.image_unreadable",
    ("{path}: the image cannot be read any more ({reason})",
     "attach the image again (a PNG, JPEG or WebP file that exists), or start a new conversation without it"),
    ("{path}：图片已无法读取（{reason}）", "请重新附加图片（存在的 PNG、JPEG 或 WebP 文件），或不带它开始新的对话"))
catalog.register(
    "backends.concurrency_below_1",
    ("{flag} {value} is below 1", "give 1 (one request at a time) or more"),
    ("{flag} {value} 小于 1", "请填 1（一次一个请求）或更大的数"))


def to_messages(history: Sequence[Turn], urls: Mapping[Path, str]) -> list[dict[str, Any]]:
    """Chat-completion messages: text and image parts for user turns with images (``urls``: each image
    path's ``data:`` URL)."""
    messages: list[dict[str, Any]] = []
    for turn in history:
        if turn.role == "user" and turn.images:
            parts: list[dict[str, Any]] = [{"type": "text", "text": turn.text}]
            parts += [{"type": "image_url", "image_url": {"url": urls[p]}} for p in turn.images]
            messages.append({"role": "user", "content": parts})
        else:
            messages.append({"role": turn.role, "content": turn.text})
    return messages


#: Request paths users paste onto the API root (``--base-url .../v1/chat/completions``).
REQUEST_PATHS = ("/chat/completions", "/completions", "/chat", "/models", "/embeddings", "/responses")
#: Words of a connection failure, as the HTTP client and the OS put them.
_REFUSED = ("connection refused", "errno 111", "errno 61", "actively refused")
_NO_HOST = ("name or service not known", "nodename nor servname", "temporary failure in name resolution",
            "no address associated", "getaddrinfo failed", "name resolution")
_PLAIN_HTTP = ("wrong_version_number", "wrong version number", "record layer failure", "unknown protocol",
               "http_request", "packet length too long", "record_layer_failure")


def _root(url: str) -> str:
    return url.rstrip("/")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def check_base_url(url: str, source: str = "--base-url") -> str:
    """``url`` when it can be an OpenAI-compatible API root, else a one-line error with the right form.

    Refused before any request: no ``http://``/``https://`` scheme (``localhost:23333``), no host, a port
    that is not a number, whitespace, and a request path pasted onto the root (``.../v1/chat/completions``).
    A root without ``/v1`` is not refused here (some servers serve the API elsewhere); a 404 from it is
    diagnosed after the request (:meth:`OpenAISession._wrong_path`).

    Args:
        url: the endpoint as given.
        source: where it came from (``--base-url`` or ``OPENAI_BASE_URL``), named in the message.
    Raises:
        BadInput: the URL cannot be an API root; the fix gives the right form (``http://HOST:PORT/v1``).
    """
    given = url
    url = url.strip()
    if not url or any(c.isspace() for c in url):
        raise BadInput(f"{source} {given!r} is not a URL (it is empty or holds spaces)",
                       "give the API root: http://HOST:PORT/v1")
    parts = urlsplit(url)
    if "://" not in url or parts.scheme not in ("http", "https"):
        if "://" in url:
            rest = url.split("://", 1)[1]
            raise BadInput(f"{source} {url}: the scheme {url.split('://', 1)[0]}:// is not http:// or https://",
                           f"give the API root: http://{_with_v1(rest)}")
        raise BadInput(f"{source} {url} has no http:// or https:// in front",
                       f"give the API root: http://{_with_v1(url)}")
    if not parts.hostname:
        raise BadInput(f"{source} {url} names no host", "give the API root: http://HOST:PORT/v1, e.g. "
                                                        "http://127.0.0.1:23333/v1")
    try:
        parts.port
    except ValueError:
        raise BadInput(f"{source} {url}: the port is not a number",
                       "give the API root: http://HOST:PORT/v1, e.g. http://127.0.0.1:23333/v1") from None
    path = parts.path.rstrip("/")
    for suffix in REQUEST_PATHS:
        if path.lower().endswith(suffix):
            root = f"{_origin(url)}{path[:-len(suffix)]}" or _origin(url)
            if not urlsplit(root).path.strip("/"):
                root = f"{_root(root)}/v1"
            raise BadInput(f"{source} {url} ends with the request path {suffix}: vlhub adds {suffix} to the API "
                           f"root itself", f"give the API root: {root}")
    return url


def _with_v1(rest: str) -> str:
    """``host:port[/path]`` with ``/v1`` when it has no path."""
    host, _, path = rest.partition("/")
    return f"{host}/{path}".rstrip("/") if path.strip("/") else f"{host}/v1"


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and its causes, outermost first."""
    seen: list[BaseException] = []
    while exc is not None and exc not in seen and len(seen) < 12:
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def _server_message(exc: Exception) -> str:
    """The server's own error text (``{"error": {"message": ...}}``, ``{"detail": ...}``), short, on one line."""
    body = getattr(exc, "body", None)
    text = ""
    if isinstance(body, dict):
        inner = body.get("error", body)
        text = (inner.get("message") or inner.get("detail") or "") if isinstance(inner, dict) else str(inner)
    elif isinstance(body, str):
        text = body
    text = " ".join(str(text).split())
    return "" if text.lstrip().startswith("<") else text[:160]


class _Probe:
    """One GET answer: status, content type, JSON (when it was JSON)."""

    def __init__(self, status: int, ctype: str, data: Any) -> None:
        self.status, self.ctype, self.data = status, ctype, data

    @property
    def models(self) -> list[str] | None:
        """The model ids when this was an OpenAI ``/models`` answer, else ``None``."""
        if self.status == 200 and isinstance(self.data, dict) and isinstance(self.data.get("data"), list):
            return [str(m.get("id")) for m in self.data["data"] if isinstance(m, dict) and m.get("id")]
        return None

    @property
    def html(self) -> bool:
        return "html" in self.ctype


class OpenAISession:
    """A client bound to one endpoint and model name; ``finish`` says how the last answer ended (the server's
    ``finish_reason`` as ``reason``, and ``usage.completion_tokens`` as ``tokens`` when it sends usage: set
    ``stream_options`` to ``{"include_usage": True}`` to ask for it, as LMDeploy's server supports).

    ``tiling``: the model's InternVL tiling when known (photos are then sent no larger than it uses);
    ``concurrency``: how many requests ``vlhub eval`` may send at once (a server that batches answers them
    together).
    """

    def __init__(self, base_url: str, model: str, api_key: str = NO_KEY, source: str = "--base-url", *,
                 tiling: Tiling | None = None, concurrency: int = 1) -> None:
        import openai

        self.openai = openai
        self.base_url = base_url
        self.source = source
        self.api_key = api_key
        self.limits = timeouts()
        self.client = openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=1,
                                    timeout=openai.Timeout(self.limits.read, connect=self.limits.connect))
        self.model = model or self._first_model()
        self.stream_options: dict[str, Any] | None = None
        self.finish: dict[str, Any] = {}
        self.concurrency = max(1, int(concurrency))
        self.uploads = chat_tiling.Prepared(lambda path: chat_tiling.upload(path, tiling).data_url(), len,
                                            UPLOAD_CACHE_BYTES)

    def prepare(self, images: Sequence[str | Path]) -> None:
        """Start encoding ``images`` in the background (attached before their question is asked)."""
        self.uploads.submit(images)

    def _data_urls(self, history: Sequence[Turn]) -> dict[Path, str]:
        """Every image of ``history`` as a ``data:`` URL (new ones encoded at once, on threads).

        Raises:
            BadInput: an image cannot be read any more (``backends.image_unreadable``).
        """
        paths = list(dict.fromkeys(p for turn in history if turn.role == "user" for p in turn.images))
        try:
            return dict(zip(paths, self.uploads.get_all(paths)))
        except chat_tiling.ImageFailed as exc:
            raise BadInput("backends.image_unreadable", path=str(exc.path), reason=exc.reason) from None

    # ------------------------------------------------------------------ what went wrong, in one line
    def _probe(self, url: str) -> _Probe | None:
        """GET ``url`` with the key (same server as the endpoint), or ``None`` when nothing answers."""
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {self.api_key}",
                                                       "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=max(self.limits.connect, 2.0)) as answer:
                status, ctype, raw = answer.status, answer.headers.get("Content-Type", ""), answer.read(1 << 20)
        except urllib.error.HTTPError as answer:
            status, ctype, raw = answer.code, answer.headers.get("Content-Type", ""), b""
        except Exception:  # noqa: BLE001 - a probe that fails tells nothing more
            return None
        try:
            data = json.loads(raw) if raw else None
        except ValueError:
            data = None
        return _Probe(status, ctype.lower(), data)

    def _roots(self) -> list[str]:
        """Other API roots the user may have meant (``/v1`` added, or the server's ``/v1``)."""
        base, origin = _root(self.base_url), _origin(self.base_url)
        path = urlsplit(base).path
        candidates = []
        if not path.endswith("/v1"):
            candidates.append(f"{base}/v1")
        if "/v1/" in path:
            candidates.append(f"{origin}{path[:path.index('/v1/') + 3]}")
        candidates.append(f"{origin}/v1")
        return [c for i, c in enumerate(candidates) if c != base and c not in candidates[:i]]

    def _wrong_path(self, tried: str, answered: str, message: str, html: bool = False) -> VlhubError:
        """A 404/405 (or a page that is not the API): a missing model, or a URL that is not the API root."""
        base = _root(self.base_url)
        listing = self._probe(f"{base}/models")
        models = listing.models if listing else None
        if models is not None and not tried.endswith("/models"):
            if self.model not in models:
                served = ", ".join(models[:10]) or "none"
                return BadInput(f"{base}: model {self.model!r} not found ({answered} from {tried}); the endpoint "
                                f"serves: {served}", f"pass --model with one of: {served}" if models else
                                "load a model into the server first")
            return VlhubError(f"{tried} answered {answered} for model {self.model!r}"
                              f"{': ' + message if message else ''}", "check the server's log")
        for root in self._roots():
            found = self._probe(f"{root}/models")
            if found is not None and found.models is not None:
                return BadInput(f"{self.source} {self.base_url} is not the API root: {tried} answered {answered}"
                                f"{' with an HTML page' if html else ''}, while {root}/models answers",
                                f"give the API root: {root}")
        if message and "model" in message.lower() and not html and not tried.endswith("/models"):
            return BadInput(f"{base}: model {self.model!r} not found ({answered} from {tried}: {message})",
                            f"pass --model with a model the server serves (GET {base}/models lists them)")
        page = " with an HTML page (a web UI or another service?)" if html else ""
        return BadInput(f"no OpenAI-compatible API at {self.source} {self.base_url}: {tried} answered {answered}{page}",
                        "give the API root of the OpenAI-compatible server: http://HOST:PORT/v1 (`lmdeploy serve "
                        "api_server` and vLLM serve it under /v1)")

    def _not_api(self, tried: str, ctype: str = "") -> VlhubError:
        """An answer that is not the OpenAI API's (HTML, plain text, JSON of another shape)."""
        if not ctype:
            probe = self._probe(tried) if tried.endswith("/models") else None
            ctype = probe.ctype if probe else ""
        what = "an HTML page" if "html" in ctype else f"{ctype.split(';')[0]}" if ctype else "something else"
        error = self._wrong_path(tried, "200" if "html" in ctype else f"200 with {what}", "", html="html" in ctype)
        if "no OpenAI-compatible API" in error.message or "is not the API root" in error.message:
            return error
        return BadInput(f"{tried} did not answer as an OpenAI-compatible API (it sent {what})",
                        "give the API root of the OpenAI-compatible server: http://HOST:PORT/v1")

    def _translate(self, exc: Exception, path: str = "/chat/completions") -> VlhubError:
        """The one-line error for a failed request to ``path``: the URL tried and the fix, never an exception name."""
        errors = self.openai
        tried = f"{_root(self.base_url)}{path}"
        parts = urlsplit(self.base_url)
        host = parts.hostname or "?"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        chain = _chain(exc)
        text = " ".join(str(e) for e in chain).lower()
        names = {type(e).__name__ for e in chain}
        if isinstance(exc, errors.APITimeoutError):
            if "ConnectTimeout" in names or "PoolTimeout" in names:
                return VlhubError("net.connect_timeout", place=tried)
            return VlhubError("net.read_timeout", place=tried)
        if isinstance(exc, errors.APIConnectionError):
            if "UnsupportedProtocol" in names or "unsupported protocol" in text or "missing an 'http" in text:
                return check_base_url_error(self.base_url, self.source)
            if any(isinstance(e, ssl.SSLError) for e in chain) or "ssl" in text or "tls" in text:
                if any(word in text for word in _PLAIN_HTTP):
                    plain = urlunsplit(("http",) + tuple(urlsplit(self.base_url))[1:])
                    return BadInput(f"{self.source} {self.base_url}: {host}:{port} speaks plain HTTP, not https "
                                    f"(the TLS handshake failed)", f"give the API root with http://: {_root(plain)}")
                return BadInput(f"{self.source} {self.base_url}: the TLS connection to {host}:{port} failed "
                                f"({_short(chain)})", "use the server's http:// address if it has no TLS, or make its "
                                "certificate trusted (SSL_CERT_FILE=CA.pem)")
            if any(word in text for word in _NO_HOST):
                return BadInput(f"{self.source} {self.base_url}: the host {host} cannot be resolved",
                                "check the host name (a server on this machine: http://127.0.0.1:PORT/v1)")
            if any(word in text for word in _REFUSED):
                return VlhubError(f"cannot reach the OpenAI-compatible endpoint {tried}: connection refused (nothing "
                                  f"listens on {host}:{port})", f"start the server (e.g. `lmdeploy serve api_server "
                                  f"MODEL_DIR --server-port {port}`), or fix {self.source}")
            if any(word in text for word in ("disconnected", "reset by peer", "errno 104", "connection reset",
                                             "protocol", "closed")) or "RemoteProtocolError" in names:
                return VlhubError(f"{host}:{port} closed the connection without an HTTP answer to {tried}",
                                  f"check that {port} is the API server's port and that the server is up (its log); "
                                  f"give the API root: http://{host}:{port}/v1")
            return VlhubError(f"cannot reach the OpenAI-compatible endpoint {tried} ({_short(chain)})",
                              f"start the server, or fix {self.source}")
        if isinstance(exc, errors.APIStatusError):
            code = exc.status_code
            message = _server_message(exc)
            ctype = exc.response.headers.get("content-type", "").lower() if exc.response is not None else ""
            said = f": {message}" if message else ""
            if code == 401:
                key = "OPENAI_API_KEY is not set" if self.api_key == NO_KEY else \
                    "the key in OPENAI_API_KEY is not one it accepts"
                return BadInput(f"{tried} refused the API key (401{said})",
                                f"set OPENAI_API_KEY to the key the server expects ({key})")
            if code == 403:
                return BadInput(f"{tried} denied access (403{said})",
                                f"use a key allowed to use model {self.model!r} (OPENAI_API_KEY), or ask the server's "
                                "admin")
            if code in (404, 405):
                return self._wrong_path(tried, f"{code}", message, html="html" in ctype)
            if "html" in ctype and code < 500:
                return self._wrong_path(tried, f"{code}", "", html=True)
            if code == 429:
                return VlhubError(f"{tried} is rate limiting (429{said})", "wait and retry, or lower the request rate")
            if code in (502, 503, 504):
                return VlhubError(f"{tried} is unavailable ({code}{said}): the server behind it is down, restarting "
                                  "or still loading the model", "wait until the server's log says it is ready, then "
                                  "retry")
            if code >= 500:
                return VlhubError(f"{tried} answered {code} (the server failed{said})",
                                  "check the server's log; retry once it is up")
            return BadInput(f"{tried} refused the request ({code}{said})",
                            f"check the server's log; the model {self.model!r} may not take this request (images, "
                            "settings)")
        return self._not_api(tried)

    def _first_model(self) -> str:
        try:
            models = [m.id for m in self.client.models.list()]
        except Exception as exc:  # noqa: BLE001 - the SDK raises its own errors, or parse errors on HTML
            raise self._translate(exc, "/models") from None
        if not models:
            raise BadInput(f"{_root(self.base_url)}/models lists no model", "load a model into the server, or pass "
                           "--model NAME")
        return models[0]

    def reply(self, history: Sequence[Turn], settings: GenerationSettings) -> Iterator[str]:
        """Stream the answer to the last user turn of ``history``."""
        tried = f"{_root(self.base_url)}/chat/completions"
        messages = to_messages(history, self._data_urls(history))
        started = False
        self.finish = {}
        extra = {"stream_options": self.stream_options} if self.stream_options else {}
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model=self.model, messages=messages, stream=True, temperature=settings.temperature,
                top_p=settings.top_p, max_tokens=settings.max_new_tokens, **extra)
            ctype = raw.headers.get("content-type", "").lower()
            if "event-stream" not in ctype:
                yield self._whole_answer(raw, tried, ctype)
                return
            for chunk in raw.parse():
                self._finished(chunk.choices[0].finish_reason if chunk.choices else None, chunk.usage)
                if chunk.choices and chunk.choices[0].delta.content:
                    started = True
                    yield chunk.choices[0].delta.content
        except VlhubError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure is one line naming the URL (never the SDK's class)
            if started:
                timed_out = isinstance(exc, self.openai.APITimeoutError) or "timeout" in type(exc).__name__.lower()
                reason = "the server went silent: VLHUB_READ_TIMEOUT" if timed_out else _short(_chain(exc))
                raise VlhubError(f"the answer from {tried} was cut off ({reason})",
                                 "check the server's log (it may have crashed or restarted), then ask again") from None
            raise self._translate(exc) from None

    def _whole_answer(self, raw: Any, tried: str, ctype: str) -> str:
        """A server that answered a streamed request in one JSON body (or with something that is no answer)."""
        if "json" in ctype:
            try:
                data = json.loads(raw.http_response.read())
                usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
                self._finished(data["choices"][0].get("finish_reason"), usage.get("completion_tokens"))
                return str(data["choices"][0]["message"]["content"] or "")
            except Exception:  # noqa: BLE001 - JSON of another shape
                pass
        raise self._not_api(tried, ctype or "no content type")

    def _finished(self, reason: Any, usage: Any) -> None:
        """Keep a chunk's ``finish_reason`` and completion tokens (usage object or int) in ``finish``."""
        if isinstance(reason, str) and reason:
            self.finish["reason"] = reason
        tokens = usage if isinstance(usage, int) else getattr(usage, "completion_tokens", None)
        if isinstance(tokens, int):
            self.finish["tokens"] = tokens

    def close(self) -> None:
        """End the session (and its worker or server)."""
        self.uploads.close()
        self.client.close()


def check_base_url_error(url: str, source: str) -> VlhubError:
    """:func:`check_base_url`'s error for ``url`` (a generic one when it passes)."""
    try:
        check_base_url(url, source)
    except BadInput as exc:
        return exc
    return BadInput(f"{source} {url} is not a URL the HTTP client can use", "give the API root: http://HOST:PORT/v1")


def _short(chain: list[BaseException]) -> str:
    """The innermost reason of a failure, without exception class names."""
    for exc in reversed(chain):
        text = " ".join(str(exc).split())
        if text and text.lower() not in ("connection error.", "request timed out."):
            return text[:160]
    return "no answer"


class OpenAIBackend:
    """The ``openai`` chat backend (:class:`vlhub.core.types.ChatBackend`)."""

    name = "openai"
    description = "Any OpenAI-compatible endpoint (--base-url, OPENAI_API_KEY); images as data: URLs."
    secrets = (Secret("openai", ("OPENAI_API_KEY",), "API key of the endpoint (local servers may need none)"),)
    options = translated((
        Option("base_url", "Endpoint, e.g. http://127.0.0.1:23333/v1 (default: $OPENAI_BASE_URL).",
               label="endpoint", labels={"zh": "接口地址"}),
        Option("concurrency", "Requests `vlhub eval` sends at once (a server that batches, e.g. LMDeploy or vLLM, "
               "answers them together).", int, default=1, label="concurrent requests", labels={"zh": "并发请求数"}),
    ), "zh", labels_zh.OPENAI)

    def missing(self) -> str | None:
        """``None`` when the backend can run here, else why not and the fix (one line)."""
        return None

    def open(self, model: str, options: Mapping[str, Any]) -> OpenAISession:
        """Connect to the endpoint (``base_url`` option, else ``$OPENAI_BASE_URL``) for ``model``.

        Raises:
            BadInput: no endpoint, a refused key or no such model. VlhubError: the endpoint is unreachable.
        """
        base_url = options.get("base_url") or os.environ.get("OPENAI_BASE_URL", "")
        source = "--base-url" if options.get("base_url") else "OPENAI_BASE_URL"
        if not base_url:
            raise BadInput("no OpenAI-compatible endpoint given", "pass --base-url URL or set OPENAI_BASE_URL")
        base_url = check_base_url(base_url, source)
        concurrency = 1 if options.get("concurrency") is None else int(options["concurrency"])
        if concurrency < 1:
            raise BadInput("backends.concurrency_below_1", flag="--concurrency", value=concurrency)
        token = find_token("openai")
        return OpenAISession(base_url, model, token.value or NO_KEY, source, concurrency=concurrency)
