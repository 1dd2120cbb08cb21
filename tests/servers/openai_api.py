"""A small OpenAI-compatible server on 127.0.0.1 for chat tests (standard library only).

``GET /v1/models`` lists the configured model names; ``POST /v1/chat/completions``
answers with ``answer(model, messages)`` (by default a sentence naming the model,
the number of images it received and the last user text), streamed as SSE chunks
when ``stream`` is true. Every request is recorded (path, headers, JSON body).

    with OpenAITestServer(models=("base", "tuned"), api_key="sk-test") as srv:
        ... OpenAI(base_url=srv.base_url, api_key="sk-test") ...
        assert srv.requests[-1]["body"]["messages"][0]["content"][1]["type"] == "image_url"
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Sequence

Answer = Callable[[str, list[dict[str, Any]]], str]


def count_images(messages: list[dict[str, Any]]) -> int:
    """Image parts across all messages."""
    return sum(1 for m in messages if isinstance(m.get("content"), list)
               for part in m["content"] if part.get("type") == "image_url")


def last_user_text(messages: list[dict[str, Any]]) -> str:
    content = [m for m in messages if m.get("role") == "user"][-1]["content"]
    if isinstance(content, str):
        return content
    return " ".join(p["text"] for p in content if p.get("type") == "text")


def default_answer(model: str, messages: list[dict[str, Any]]) -> str:
    return f"{model} saw {count_images(messages)} image(s) and read: {last_user_text(messages)}"


class OpenAITestServer:
    """A threaded HTTP server speaking the chat-completions API; use as a context manager."""

    def __init__(self, models: Sequence[str] = ("test-model",), api_key: str | None = None,
                 answer: Answer = default_answer) -> None:
        self.models = list(models)
        self.api_key = api_key
        self.answer = answer
        self.html = False                    # every request answered with an HTML page (status 200)
        self.chat_status: int | None = None  # chat completions answered with this status ...
        self.chat_error = "refused by the test server"   # ... and this error message
        self.ignore_stream = False           # streamed requests answered with one JSON completion
        self.requests: list[dict[str, Any]] = []
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> OpenAITestServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _json(self, status: int, data: Any) -> None:
                body = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _page(self) -> bool:
                if not server.html:
                    return False
                body = b"<!doctype html><html><head><title>Chat UI</title></head><body>web UI</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return True

            def _authorised(self) -> bool:
                if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                    self._json(401, {"error": {"message": "invalid api key", "type": "invalid_request_error"}})
                    return False
                return True

            def do_GET(self) -> None:
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": None})
                if self._page() or not self._authorised():
                    return
                if self.path.rstrip("/") == "/v1/models":
                    self._json(200, {"object": "list", "data": [
                        {"id": m, "object": "model", "created": 0, "owned_by": "tests"} for m in server.models]})
                else:
                    self._json(404, {"error": {"message": "not found"}})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    body = {}
                server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body,
                                        "raw": raw.decode("utf-8", "replace")})
                if self._page() or not self._authorised():
                    return
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._json(404, {"error": {"message": "not found"}})
                    return
                if server.chat_status:
                    self._json(server.chat_status, {"error": {"message": server.chat_error, "type": "test"}})
                    return
                model = body.get("model", "")
                if model not in server.models:
                    self._json(404, {"error": {"message": f"model {model} not found", "type": "NotFoundError"}})
                    return
                text = server.answer(model, body.get("messages", []))
                if body.get("stream") and not server.ignore_stream:
                    self._stream(model, text)
                else:
                    self._json(200, {"id": "cmpl-test", "object": "chat.completion", "created": int(time.time()),
                                     "model": model, "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": text}}]})

            def _stream(self, model: str, text: str) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                words = text.split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    self._event({"id": "cmpl-test", "object": "chat.completion.chunk", "created": 0,
                                 "model": model, "choices": [{"index": 0, "delta": {"content": piece},
                                                              "finish_reason": None}]})
                self._event({"id": "cmpl-test", "object": "chat.completion.chunk", "created": 0, "model": model,
                             "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

            def _event(self, data: dict[str, Any]) -> None:
                self.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
                self.wfile.flush()

        return Handler
