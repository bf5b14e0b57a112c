"""A fake OpenAI-compatible chat server for tests and benchmarks (stdlib only, no network beyond 127.0.0.1).

    from sectune.testing.fake_openai import FakeOpenAI

    with FakeOpenAI(responder=lambda body: "hello", latency=0.01, fault_rate=0.3, seed=1) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="test")
        ...
        assert len(fake.requests) >= 1

``responder(body)`` receives the request JSON and returns the assistant content (a ``str``) or a full
``chat.completion`` dict (used as is). ``/v1/messages`` serves the same answers in Anthropic's shape
(``anthropic_base_url``). Faults are drawn deterministically from ``seed`` per request number:
a 429 with ``Retry-After``, a 500, or a timeout (the server sleeps ``timeout_sleep`` seconds before answering,
longer than the client's timeout). ``finish_reason`` forces the finish reason of every answer ("length",
"content_filter"); a responder returning a dict can set it per request. A responder raising
:class:`FakeHTTPError` answers with that status and message (a server echoing what it was sent, say).

``slots=1, token_delay=0.05`` makes it behave like a one-slot llama.cpp server: one generation at a time (the
other requests wait in its queue), each answer token costs ``token_delay`` seconds, a request whose client hung
up (a client timeout) is cancelled, queued or mid-generation, and ``GET /props`` reports ``total_slots``
(``/slots`` lists them). Without ``slots`` those routes answer 404, like OpenAI, vLLM or Ollama.
"""

from __future__ import annotations

import json
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Responder = Callable[[dict[str, Any]], "str | dict[str, Any]"]
FAULT_KINDS = ("429", "500", "timeout")
SLOT_POLL_S = 0.01  # how often a queued or generating request looks whether its client is still there


class FakeHTTPError(Exception):
    """Raised by a responder: the server answers ``status`` with ``message`` as the OpenAI-style error."""

    def __init__(self, status: int, message: str, error_type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.error_type = error_type


def default_responder(body: dict[str, Any]) -> str:
    """Echo the last user message (enough for smoke tests)."""
    messages = body.get("messages") or []
    last = messages[-1]["content"] if messages else ""
    return f"echo: {last}"


def _client_gone(conn: socket.socket) -> bool:
    """Whether the client closed the connection: readable with nothing to read (no pipelining while waiting)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(1, socket.MSG_PEEK) == b""
    except (OSError, ValueError):  # reset, or already closed
        return True


def _count_tokens(text: str) -> int:
    """A crude whitespace token count: tests need stable numbers, not real tokenisation."""
    return max(1, len(str(text).split()))


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # like real servers: no 40 ms Nagle + delayed-ACK stall per answer

    def log_message(self, format: str, *args: Any) -> None:  # silence the default stderr log
        return

    def do_GET(self) -> None:
        route, fake = self.path.rstrip("/"), self.server.fake
        if route.endswith("/models"):
            self._send(200, {"object": "list", "data": [{"id": fake.model, "object": "model"}]})
        elif fake.slots is not None and route.endswith("/props"):  # llama.cpp's server properties
            self._send(200, {"total_slots": fake.slots, "model_path": fake.model, "default_generation_settings": {}})
        elif fake.slots is not None and route.endswith("/slots"):
            self._send(200, fake.slot_states())  # type: ignore[arg-type]
        else:
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if len(raw) < length:  # the client died mid-request (a killed run): nothing was asked
            self.close_connection = True
            return
        route = self.path.rstrip("/")
        anthropic = route.endswith("/v1/messages")
        if not (route.endswith("/chat/completions") or anthropic):
            self._send(404, {"error": {"message": f"no route {self.path}", "type": "not_found"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._send(400, {"error": {"message": "invalid JSON body", "type": "invalid_request_error"}})
            return
        fake = self.server.fake
        fake._enter()
        try:
            headers_in = {k.lower(): v for k, v in self.headers.items()}
            status, payload, headers = fake._handle(body, headers_in, gone=lambda: _client_gone(self.connection))
        finally:
            fake._leave()
        if anthropic and status == 200:
            payload = to_anthropic_message(payload)
        if body.get("stream") and status == 200 and not anthropic:
            self._send_stream(payload)
            return
        self._send(status, payload, headers)

    def _send_stream(self, completion: dict[str, Any]) -> None:
        """The completion as OpenAI's SSE chunks: one per word, then the finish reason and ``[DONE]``."""
        choice = completion["choices"][0]
        words = re.findall(r"\S+\s*|\s+", choice["message"]["content"] or "")
        base = {"id": completion["id"], "object": "chat.completion.chunk", "model": completion["model"]}
        deltas = [{"role": "assistant", "content": ""}] + [{"content": w} for w in words]
        events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
        events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]})
        data = "".join(f"data: {json.dumps(e)}\n\n" for e in events).encode() + b"data: [DONE]\n\n"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test): fine
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # 64+ concurrent connections must not be refused
    fake: FakeOpenAI


class FakeOpenAI:
    """A local OpenAI-compatible ``/v1/chat/completions`` server running in a background thread."""

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency: float = 0.0,
        fault_rate: float = 0.0,
        seed: int = 0,
        faults: tuple[str, ...] = FAULT_KINDS,
        retry_after: float = 0.01,
        timeout_sleep: float = 2.0,
        finish_reason: str | None = None,
        model: str = "fake-model",
        require_key: str | None = None,
        slots: int | None = None,
        token_delay: float = 0.0,
    ) -> None:
        self.responder = responder or default_responder
        self.latency = latency
        self.fault_rate = fault_rate
        self.seed = seed
        self.faults = tuple(faults)
        self.retry_after = retry_after
        self.timeout_sleep = timeout_sleep
        self.finish_reason = finish_reason
        self.model = model
        self.require_key = require_key
        self.slots = slots  # None: no slot limit, and no /props or /slots route
        self.token_delay = token_delay  # seconds per answer token, spent holding a slot
        self._slot_free = threading.BoundedSemaphore(slots) if slots is not None else None
        self.generating = 0
        self.max_generating = 0  # the most generations at the same time (at most ``slots``)
        self.generations_started = 0
        self.generations_finished = 0
        self.generations_cancelled = 0  # the client hung up while queued or generating
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # request headers, names lower-cased
        self.faults_sent: dict[str, int] = {kind: 0 for kind in (*FAULT_KINDS, "400")}
        self.in_flight = 0
        self.max_in_flight = 0  # the most requests handled at the same time (proves concurrency)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------------------
    def start(self) -> FakeOpenAI:
        """Start serving on 127.0.0.1 on a free port."""
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for the Anthropic SDK, which appends ``/v1/messages`` itself."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def completed(self) -> int:
        """Requests answered with 200 (faults excluded)."""
        with self._lock:
            return len(self.requests) - sum(self.faults_sent.values()) - self.generations_cancelled

    def slot_states(self) -> list[dict[str, Any]]:
        """What ``GET /slots`` lists: one entry per slot, busy or idle."""
        with self._lock:
            busy = self.generating
        return [{"id": i, "is_processing": i < busy} for i in range(self.slots or 0)]

    # --- request handling ------------------------------------------------------------------------------
    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def _fault_for(self, index: int) -> str | None:
        """The fault of request number ``index``, drawn deterministically from the seed."""
        if self.fault_rate <= 0 or not self.faults:
            return None
        rng = random.Random(f"{self.seed}:{index}")
        if rng.random() >= self.fault_rate:
            return None
        return rng.choice(self.faults)

    def _handle(
        self, body: dict[str, Any], headers: dict[str, str], gone: Callable[[], bool] = lambda: False
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self._lock:
            index = len(self.requests)
            self.requests.append(body)
            self.headers.append(headers)
        if self.require_key is not None:
            auth = headers.get("authorization", "")
            if auth != f"Bearer {self.require_key}":
                return 401, {"error": {"message": "bad key", "type": "invalid_api_key"}}, {}
        fault = self._fault_for(index)
        if fault is not None:
            with self._lock:
                self.faults_sent[fault] += 1
            return self._fault_response(fault)
        if self.latency:
            time.sleep(self.latency)
        try:
            result = self.responder(body)
        except FakeHTTPError as exc:
            return exc.status, {"error": {"message": exc.message, "type": exc.error_type}}, {}
        except Exception as exc:  # a responder bug should surface as a 500, not a hung client
            return 500, {"error": {"message": f"responder failed: {exc}", "type": "server_error"}}, {}
        if (self._slot_free is not None or self.token_delay) and not self._generate(body, result, gone):
            return 499, {"error": {"message": "client closed the request", "type": "cancelled"}}, {}
        return 200, self._completion(body, result), {}

    def _generate(self, body: dict[str, Any], result: str | dict[str, Any], gone: Callable[[], bool]) -> bool:
        """Wait for a free slot, then spend ``token_delay`` per answer token; False: the client hung up first."""
        while self._slot_free is not None and not self._slot_free.acquire(timeout=SLOT_POLL_S):
            if gone():  # a queued request whose client gave up never starts (llama.cpp cancels it too)
                return self._cancelled()
        if gone():  # its client left while it waited: the slot goes to the next one
            if self._slot_free is not None:
                self._slot_free.release()
            return self._cancelled()
        with self._lock:
            self.generations_started += 1
            self.generating += 1
            self.max_generating = max(self.max_generating, self.generating)
        try:
            for _ in range(_answer_tokens(body, result)):
                if gone():
                    return self._cancelled()
                time.sleep(self.token_delay)
            with self._lock:
                self.generations_finished += 1
            return True
        finally:
            with self._lock:
                self.generating -= 1
            if self._slot_free is not None:
                self._slot_free.release()

    def _cancelled(self) -> bool:
        with self._lock:
            self.generations_cancelled += 1
        return False

    def _fault_response(self, fault: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        if fault == "429":
            error = {"error": {"message": "rate limited", "type": "rate_limit_exceeded"}}
            return 429, error, {"Retry-After": f"{self.retry_after:g}"}
        if fault == "400":  # opt-in (faults=("400",)): a request the server refuses, e.g. an unsupported option
            return 400, {"error": {"message": "unsupported parameter", "type": "invalid_request_error"}}, {}
        if fault == "timeout":
            time.sleep(self.timeout_sleep)
            return 200, self._completion({}, "too late"), {}
        return 500, {"error": {"message": "internal error", "type": "server_error"}}, {}

    def _completion(self, body: dict[str, Any], result: str | dict[str, Any]) -> dict[str, Any]:
        if isinstance(result, dict):
            return result
        prompt_text = " ".join(str(m.get("content", "")) for m in body.get("messages") or [])
        prompt_tokens, completion_tokens = _count_tokens(prompt_text), _count_tokens(result)
        return {
            "id": f"chatcmpl-fake-{len(self.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result},
                    "finish_reason": self.finish_reason or "stop",
                    "logprobs": None,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }


def _answer_tokens(body: dict[str, Any], result: str | dict[str, Any]) -> int:
    """Tokens a server would generate for ``result``: its whitespace tokens, at most the request's max_tokens."""
    if isinstance(result, dict):
        choices = result.get("choices") or [{}]
        result = str((choices[0].get("message") or {}).get("content") or "")
    limit = body.get("max_tokens") or body.get("max_completion_tokens")
    tokens = _count_tokens(result)
    return min(tokens, int(limit)) if limit else tokens


ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "content_filter": "refusal"}


def to_anthropic_message(completion: dict[str, Any]) -> dict[str, Any]:
    """The same answer in Anthropic's Messages API shape (served on ``/v1/messages``)."""
    choice = completion["choices"][0]
    usage = completion.get("usage") or {}
    return {
        "id": completion.get("id", "msg_fake"),
        "type": "message",
        "role": "assistant",
        "model": completion.get("model", "fake-model"),
        "content": [{"type": "text", "text": choice["message"]["content"]}],
        "stop_reason": ANTHROPIC_STOP.get(choice["finish_reason"], choice["finish_reason"]),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.get("prompt_tokens", 0), "output_tokens": usage.get("completion_tokens", 0)},
    }


def completion_dict(content: str, *, finish_reason: str = "stop", model: str = "fake-model") -> dict[str, Any]:
    """A full chat.completion dict, for responders that need a per-request finish_reason."""
    tokens = _count_tokens(content)
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": 1 + tokens},
    }
