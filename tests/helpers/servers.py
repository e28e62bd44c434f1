"""Real HTTP servers on 127.0.0.1 for testing the OpenAI-compatible path end to end.

- :class:`FaultServer` — a FAKE model (its answers are canned) behind a real HTTP
  server speaking the chat-completions protocol, that injects the faults real servers
  have: 429 with ``Retry-After``, 500s, stalls, connection resets, a fixed delay, a
  failure fraction. It counts and records every request (bodies and headers), so tests
  can prove retries, caching (zero requests) and that no key leaks.
- :class:`ModelServer` — a chat-completions server whose answers come from a real model:
  sovtp's transformers backend on the tiny local checkpoint.

Both run in a background thread (stdlib ``ThreadingHTTPServer``), bind port 0, and stop
by themselves when used as context managers.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256


class _Base:
    """start/stop/base_url plumbing shared by the test servers."""

    model_id = "test-model"
    owned_by = "sovtp-test"

    def __init__(self) -> None:
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self.lock = threading.Lock()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                outer._get(self)

            def do_POST(self):
                outer._post(self)

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -------------------------------------------------------------- helpers

    @staticmethod
    def send_json(h: BaseHTTPRequestHandler, status: int, obj: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(obj).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)
        h.wfile.flush()

    @staticmethod
    def read_body(h: BaseHTTPRequestHandler) -> dict[str, Any]:
        n = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(n) if n else b""
        try:
            return json.loads(raw or b"{}")
        except ValueError:
            return {"_raw": raw.decode("utf-8", "replace")}

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        if h.path.rstrip("/").endswith("/models"):
            self.send_json(
                h, 200, {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0, "owned_by": self.owned_by}]}
            )
        elif h.path.rstrip("/").endswith("/health"):
            self.send_json(h, 200, {"ok": True})
        else:
            self.send_json(h, 404, {"error": {"message": "not found"}})

    def _post(self, h: BaseHTTPRequestHandler) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    @staticmethod
    def completion(
        model: str, text: str, prompt_tokens: int = 10, completion_tokens: int | None = None, finish: str = "stop"
    ) -> dict[str, Any]:
        return {
            "id": "chatcmpl-" + uuid.uuid4().hex[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens if completion_tokens is not None else max(1, len(text) // 4),
                "total_tokens": prompt_tokens + (completion_tokens or max(1, len(text) // 4)),
            },
        }


def default_reply(body: dict[str, Any]) -> str:
    """A canned answer that obeys the request's constraint: the first allowed label as
    JSON for a schema, the first choice for a choice list, else ``Label: happy``."""
    so = (body.get("structured_outputs") or {}) if isinstance(body.get("structured_outputs"), dict) else {}
    schema = so.get("json")
    rf = body.get("response_format") or {}
    if schema is None and rf.get("type") == "json_schema":
        schema = (rf.get("json_schema") or {}).get("schema")
    if schema:
        props = schema.get("properties", {})
        out: dict[str, Any] = {}
        for name, spec in props.items():
            if "enum" in spec:
                out[name] = spec["enum"][0]
            elif spec.get("type") == "object":
                out[name] = {k: v["enum"][0] for k, v in spec.get("properties", {}).items()}
            else:
                out[name] = "observed"
        return json.dumps(out)
    if so.get("choice"):
        return so["choice"][0]
    return "The face shows raised lip corners.\nLabel: happy"


class FaultServer(_Base):
    """FAKE chat-completions server (canned answers) with injectable faults.

    ``plan``: actions for the first requests in order, then ``default`` for the rest.
    Actions: ``"ok"``, ``"429"`` (with ``Retry-After: retry_after``), ``"500"``, ``"503"``,
    ``"stall"`` (sleep ``stall_s`` then answer), ``"reset"`` (drop the TCP connection
    with an RST), ``"400"``, ``"401"``, ``"403"``, ``"404"``. ``failure_fraction`` turns a random share (seeded) of
    ``"ok"`` answers into ``failure_action``. ``delay_s`` delays every answer.

    ``requests``: one dict per chat request (``path``, ``headers``, ``body``, ``t``,
    ``action``); ``count``: how many chat requests arrived.
    """

    def __init__(
        self,
        plan: list[str] | None = None,
        default: str = "ok",
        delay_s: float = 0.0,
        retry_after: float | str = 1,
        stall_s: float = 5.0,
        failure_fraction: float = 0.0,
        failure_action: str = "500",
        seed: int = 0,
        reply: Callable[[dict[str, Any]], str] = default_reply,
        model_id: str = "test-model",
        owned_by: str = "sovtp-test",
    ) -> None:
        super().__init__()
        self.plan = list(plan or [])
        self.default = default
        self.delay_s = delay_s
        self.retry_after = retry_after
        self.stall_s = stall_s
        self.failure_fraction = failure_fraction
        self.failure_action = failure_action
        self.rng = random.Random(seed)
        self.reply = reply
        self.model_id = model_id
        self.owned_by = owned_by
        self.requests: list[dict[str, Any]] = []

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def reset_counts(self) -> None:
        with self.lock:
            self.requests.clear()

    def _next_action(self) -> str:
        with self.lock:
            n = len(self.requests)
            action = self.plan[n] if n < len(self.plan) else self.default
            if action == "ok" and self.failure_fraction and self.rng.random() < self.failure_fraction:
                action = self.failure_action
            return action

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        body = self.read_body(h)
        if not h.path.rstrip("/").endswith("/chat/completions"):
            self.send_json(h, 404, {"error": {"message": "not found"}})
            return
        action = self._next_action()
        with self.lock:
            self.requests.append({"path": h.path, "headers": dict(h.headers), "body": body, "t": time.monotonic(), "action": action})
        if self.delay_s:
            time.sleep(self.delay_s)
        if action == "429":
            self.send_json(h, 429, {"error": {"message": "rate limited", "type": "rate_limit"}}, {"Retry-After": str(self.retry_after)})
        elif action in ("500", "502", "503", "400", "401", "403", "404"):
            self.send_json(h, int(action), {"error": {"message": f"injected {action}"}})
        elif action == "reset":
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
        else:
            if action == "stall":
                time.sleep(self.stall_s)
            try:
                self.send_json(h, 200, self.completion(body.get("model", self.model_id), self.reply(body)))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout) while we stalled


class ModelServer(_Base):
    """A chat-completions server answered by a REAL model: sovtp's transformers backend
    (tiny checkpoint in tests). Supports text + ``image_url`` data-URL parts; a vLLM-style
    ``structured_outputs.choice`` is honoured by rank scoring; other constraints are not
    (like ``transformers serve``, it answers freely)."""

    def __init__(self, backend, model_id: str = "tiny-vlm") -> None:
        super().__init__()
        self.backend = backend
        self.model_id = model_id
        self.count = 0
        self._run_lock = threading.Lock()  # one generation at a time on the CPU

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        import asyncio

        from sovtp.backends.base import Sampling
        from sovtp.backends.messages import decode_data_url
        from sovtp.types import ImagePart, Prompt, TextPart

        body = self.read_body(h)
        with self.lock:
            self.count += 1
        parts: list[Any] = []
        system = None
        for msg in body.get("messages", []):
            content = msg.get("content")
            if msg.get("role") == "system":
                system = content if isinstance(content, str) else " ".join(c.get("text", "") for c in content)
                continue
            if isinstance(content, str):
                parts.append(TextPart(content))
                continue
            for c in content or []:
                if c.get("type") == "text":
                    parts.append(TextPart(c["text"]))
                elif c.get("type") == "image_url":
                    parts.append(ImagePart(decode_data_url(c["image_url"]["url"])))
        choice = ((body.get("structured_outputs") or {}).get("choice")) or []
        labels = tuple(choice) or ("happy", "sad", "neutral", "angry", "surprise", "disgust", "fear")
        prompt = Prompt(parts=tuple(parts), labels=labels, template_name="http", template_hash="", system=system)
        mode = "choice" if choice else "free"
        sampling = Sampling(
            temperature=float(body.get("temperature") or 0.0),
            max_tokens=int(body.get("max_completion_tokens") or body.get("max_tokens") or 16),
        )
        with self._run_lock:
            [ans] = asyncio.run(self.backend.answer([prompt], mode, sampling))
        if ans.error:
            self.send_json(h, 500, {"error": {"message": ans.error}})
            return
        self.send_json(h, 200, self.completion(self.model_id, ans.text, ans.usage.prompt_tokens or 0, ans.usage.completion_tokens or 0))
