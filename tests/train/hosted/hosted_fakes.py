"""Local fakes of the three fine-tuning services, speaking the HTTP their pinned SDKs send (stdlib only).

Each fake runs a ThreadingHTTPServer on 127.0.0.1 (a free port) and keeps what a test checks: every request
(method, path), the Authorization headers, the files uploaded (rows per file), the job creation requests and
the cancellations. A job moves one step per status request (the poll): queued, then ``Script.steps`` training
steps with a falling loss, then the script's end: ``succeed``, ``fail`` (with ``Script.error``, the provider's
words) or ``never`` (it keeps training: the timeout tests). ``hold = True`` freezes every job where it is (the
kill-then-resume tests); ``on_poll(job, polls)`` runs inside each status request (a test can send the process a
SIGINT there: Ctrl-C during the follow loop).

Routes and bodies are read from the SDK sources: ``openai`` 3.57.0 (files, fine_tuning.jobs), ``together``
2.36.0 (files.upload's 302 + PUT + preprocess, fine-tunes, models/limits, estimate-price, events, metrics,
finetune/download) and ``predibase`` 2025.10.3 (users/current, datasets upload, repos, finetuning jobs, the
metrics websocket, the adapter version and its zip download).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import struct
import tarfile
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import default as email_policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Script:
    """How every job of a fake goes: ``end`` is succeed, fail or never."""

    end: str = "succeed"
    steps: int = 3
    error: str = "the training file has too few examples for this model"


def loss_at(step: int) -> float:
    return round(2.0 / step + 0.1, 4)


@dataclass
class Job:
    id: str
    request: dict[str, Any]
    polls: int = 0
    step: int = 0
    phase: str = "waiting"  # waiting, running, succeeded, failed, cancelled
    created: float = field(default_factory=time.time)

    @property
    def final(self) -> bool:
        return self.phase in ("succeeded", "failed", "cancelled")


@dataclass
class Reply:
    status: int
    body: bytes | dict[str, Any] | list[Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    websocket: Callable[[Any], None] | None = None  # answer with a websocket session instead


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def do_GET(self) -> None:
        self._serve("GET")

    def do_POST(self) -> None:
        self._serve("POST")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            reply = self.server.fake.dispatch(method, self.path, dict(self.headers.items()), body)
        except Exception as exc:  # a bug in the fake shows as a 400 the test sees, not a hung client
            reply = Reply(400, {"error": {"message": f"fake failed: {type(exc).__name__}: {exc}"}})
        if reply.websocket is not None:
            self._websocket(reply.websocket)
            return
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        self.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    # ------------------------------------------------------------ a minimal websocket (RFC 6455, server side)

    def _websocket(self, session: Callable[[Any], None]) -> None:
        key = self.headers["Sec-WebSocket-Key"]
        accept = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        self.send_response(101, "Switching Protocols")
        self.send_header("Upgrade", "websocket")
        self.send_header("Connection", "Upgrade")
        self.send_header("Sec-WebSocket-Accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        try:
            session(self.ws_send)
            self._frame(0x8, struct.pack("!H", 1000))  # close, normal
            self.connection.settimeout(2)
            self.rfile.read(8)  # the client's (masked) close frame
        except (OSError, BrokenPipeError):
            pass

    def ws_send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def _frame(self, opcode: int, payload: bytes) -> None:
        size = len(payload)
        head = bytes([0x80 | opcode])
        if size < 126:
            head += bytes([size])
        elif size < 65536:
            head += bytes([126]) + struct.pack("!H", size)
        else:
            head += bytes([127]) + struct.pack("!Q", size)
        self.wfile.write(head + payload)
        self.wfile.flush()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeService

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (a Ctrl-C, a killed process) is no error of the fake."""
        return


class FakeService:
    """What the three fakes share: the server, the record of requests, the jobs and their script."""

    name = "fake"
    no_auth = ("/blob/", "/upload/")  # presigned upload URLs carry no key

    def __init__(self, key: str, adapter_dir: Path | None = None, script: Script | None = None) -> None:
        self.key = key
        self.adapter_dir = adapter_dir
        self.script = script or Script()
        self.hold = False
        self.on_poll: Callable[[Job, int], None] | None = None
        self.requests: list[tuple[str, str]] = []
        self.authorizations: list[str] = []
        self.uploads: list[tuple[str, int]] = []  # (file name, JSONL rows)
        self.creations: list[dict[str, Any]] = []  # the job creation requests, in order
        self.cancels: list[str] = []
        self.unknown: list[tuple[str, str]] = []  # requests no route answered (a fake out of step with the SDK)
        self.jobs: dict[str, Job] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        self._server: _Server | None = None
        self.routes: list[tuple[str, re.Pattern[str], Callable[..., Reply]]] = []

    # ------------------------------------------------------------ life cycle

    def start(self) -> FakeService:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        threading.Thread(target=self._server.serve_forever, name=f"fake-{self.name}", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stopped.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def root(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def route(self, method: str, pattern: str, handler: Callable[..., Reply]) -> None:
        self.routes.append((method, re.compile(pattern + "$"), handler))

    # ------------------------------------------------------------ requests

    def dispatch(self, method: str, target: str, headers: dict[str, str], body: bytes) -> Reply:
        parts = urlsplit(target)
        path, query = parts.path, {k: v[0] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.requests.append((method, path))
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        if not path.startswith(self.no_auth):
            self.authorizations.append(auth)
            if auth != f"Bearer {self.key}":
                return Reply(401, {"error": {"message": "invalid API key", "type": "invalid_api_key"}})
        for wanted, pattern, handler in self.routes:
            match = pattern.match(path)
            if wanted == method and match:
                return handler(*match.groups(), query=query, headers=headers, body=body)
        self.unknown.append((method, path))
        return Reply(404, {"error": {"message": f"no route {method} {path}"}})

    def count(self, method: str, pattern: str) -> int:
        regex = re.compile(pattern + "$")
        return sum(1 for m, p in self.requests if m == method and regex.match(p))

    def new_job(self, prefix: str, request: dict[str, Any]) -> Job:
        with self.lock:
            self.creations.append(request)
            job = Job(f"{prefix}{len(self.creations):04d}", request)
            self.jobs[job.id] = job
        return job

    def poll(self, job_id: str) -> Job:
        """One status request: the job moves one step (unless held or ended), then the test's hook runs."""
        job = self.jobs[job_id]
        with self.lock:
            job.polls += 1
            if not self.hold and not job.final:
                self._advance(job)
        if self.on_poll is not None:
            self.on_poll(job, job.polls)
        return job

    def _advance(self, job: Job) -> None:
        if job.phase == "waiting":
            job.phase = "running"
        elif job.step < self.script.steps:
            job.step += 1
        elif self.script.end == "succeed":
            job.phase = "succeeded"
        elif self.script.end == "fail":
            job.phase = "failed"
        # "never": keeps running at its last step

    def cancel(self, job_id: str) -> Job:
        job = self.jobs[job_id]
        with self.lock:
            self.cancels.append(job_id)
            if not job.final:
                job.phase = "cancelled"
        return job

    def record_upload(self, name: str, data: bytes) -> None:
        rows = sum(1 for line in data.decode("utf-8").splitlines() if line.strip())
        with self.lock:
            self.uploads.append((name, rows))


def multipart(headers: dict[str, str], body: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The parts of a multipart/form-data body: field name → (file name, bytes)."""
    ctype = next(v for k, v in headers.items() if k.lower() == "content-type")
    message = BytesParser(policy=email_policy).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
    parts = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        parts[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
    return parts


def zipped(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(folder.iterdir()):
            archive.write(path, path.name)
    return buffer.getvalue()


def tar_zst(folder: Path, inside: str) -> bytes:
    """A .tar.zst with the adapter one folder down, the way Together packs a checkpoint."""
    import zstandard

    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        archive.add(folder, arcname=inside)
    return zstandard.ZstdCompressor().compress(buffer.getvalue())


# ---------------------------------------------------------------- OpenAI


class FakeOpenAIFineTuning(FakeService):
    """``/v1/files``, ``/v1/fine_tuning/jobs[/{id}[/events|/cancel]]`` and ``/v1/chat/completions``."""

    name = "openai"
    STATUS = {
        "waiting": "validating_files",
        "running": "running",
        "succeeded": "succeeded",
        "failed": "failed",
        "cancelled": "cancelled",
    }

    def __init__(self, key: str, script: Script | None = None) -> None:
        super().__init__(key, script=script)
        self.chats: list[dict[str, Any]] = []
        self.route("POST", r"/v1/files", self._upload)
        self.route("POST", r"/v1/fine_tuning/jobs", self._create)
        self.route("GET", r"/v1/fine_tuning/jobs/([\w-]+)", self._get)
        self.route("GET", r"/v1/fine_tuning/jobs/([\w-]+)/events", self._events)
        self.route("POST", r"/v1/fine_tuning/jobs/([\w-]+)/cancel", self._cancel)
        self.route("POST", r"/v1/chat/completions", self._chat)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def model_of(self, job: Job) -> str:
        return f"ft:{job.request['model']}:sectune:{job.request.get('suffix', '')}:{job.id[-4:]}"

    def _upload(self, *, headers: dict[str, str], body: bytes, **_: Any) -> Reply:
        parts = multipart(headers, body)
        filename, data = parts["file"]
        assert parts["purpose"][1] == b"fine-tune", parts["purpose"]
        self.record_upload(str(filename), data)
        file_id = f"file-{len(self.uploads)}"
        return Reply(
            200,
            {
                "id": file_id,
                "object": "file",
                "bytes": len(data),
                "created_at": int(time.time()),
                "filename": filename,
                "purpose": "fine-tune",
                "status": "processed",
            },
        )

    def _create(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        if request["model"] not in ("gpt-4o-mini-2024-07-18", "gpt-4.1-mini-2025-04-14"):
            return Reply(
                400,
                {
                    "error": {
                        "message": f"Model {request['model']} is not available for fine-tuning",
                        "type": "invalid_request_error",
                        "param": "model",
                    }
                },
            )
        return Reply(200, self._job(self.new_job("ftjob-", request)))

    def _job(self, job: Job) -> dict[str, Any]:
        request = job.request
        hyper = request.get("method", {}).get("supervised", {}).get("hyperparameters", {})
        error = {"code": "invalid_training_file", "message": self.script.error, "param": "training_file"}
        return {
            "id": job.id,
            "object": "fine_tuning.job",
            "created_at": int(job.created),
            "error": error if job.phase == "failed" else None,
            "fine_tuned_model": self.model_of(job) if job.phase == "succeeded" else None,
            "finished_at": int(time.time()) if job.final else None,
            "hyperparameters": {
                "n_epochs": hyper.get("n_epochs", "auto"),
                "batch_size": hyper.get("batch_size"),
                "learning_rate_multiplier": hyper.get("learning_rate_multiplier"),
            },
            "model": request["model"],
            "organization_id": "org-fake",
            "result_files": [],
            "seed": request.get("seed", 0),
            "status": self.STATUS[job.phase],
            "trained_tokens": 120_000 if job.phase == "succeeded" else None,
            "training_file": request["training_file"],
            "validation_file": request.get("validation_file"),
            "method": request.get("method"),
        }

    def _get(self, job_id: str, **_: Any) -> Reply:
        return Reply(200, self._job(self.poll(job_id)))

    def _events(self, job_id: str, **_: Any) -> Reply:
        job = self.jobs[job_id]
        events = [self._event(job, 0, "info", "Validating training file", "message")]
        for step in range(1, job.step + 1):
            data = {"step": step, "train_loss": loss_at(step), "total_steps": self.script.steps}
            events.append(self._event(job, step, "info", f"Step {step}/{self.script.steps}", "metrics", data))
        if job.phase == "failed":
            events.append(self._event(job, job.step + 1, "error", self.script.error, "message"))
        return Reply(200, {"object": "list", "data": events[::-1], "has_more": False})  # newest first

    @staticmethod
    def _event(job: Job, n: int, level: str, message: str, kind: str, data: Any = None) -> dict[str, Any]:
        return {
            "id": f"ftevent-{job.id}-{n}",
            "object": "fine_tuning.job.event",
            "created_at": int(job.created) + n,
            "level": level,
            "message": message,
            "type": kind,
            "data": data,
        }

    def _cancel(self, job_id: str, **_: Any) -> Reply:
        return Reply(200, self._job(self.cancel(job_id)))

    def _chat(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        self.chats.append(request)
        question = request["messages"][-1]["content"]
        answer = f"{request['model']} answers: {question}"
        return Reply(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": request["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
            },
        )


# ---------------------------------------------------------------- Together


TOGETHER_MODELS = {"Qwen/Qwen2.5-0.5B-Instruct": {"max_rank": 64, "full": True}}


class FakeTogether(FakeService):
    """Together's fine-tuning routes under ``/v1`` plus the presigned ``/upload/{id}`` PUT."""

    name = "together"
    STATUS = {
        "waiting": "queued",
        "running": "running",
        "succeeded": "completed",
        "failed": "error",
        "cancelled": "cancelled",
    }

    def __init__(self, key: str, adapter_dir: Path, script: Script | None = None) -> None:
        super().__init__(key, adapter_dir, script)
        self.files: dict[str, str] = {}  # file id → name
        self.route("POST", r"/v1/files", self._begin_upload)
        self.route("PUT", r"/upload/([\w.-]+)", self._put)
        self.route("POST", r"/v1/files/([\w.-]+)/preprocess", self._preprocess)
        self.route("GET", r"/v1/fine-tunes/models/limits", self._limits)
        self.route("POST", r"/v1/fine-tunes/estimate-price", self._estimate)
        self.route("POST", r"/v1/fine-tunes", self._create)
        self.route("GET", r"/v1/fine-tunes/([\w-]+)", self._get)
        self.route("GET", r"/v1/fine-tunes/([\w-]+)/events", self._events)
        self.route("GET", r"/v1/fine-tunes/([\w-]+)/metrics", self._metrics)
        self.route("POST", r"/v1/fine-tunes/([\w-]+)/cancel", self._cancel)
        self.route("GET", r"/v1/finetune/download", self._download)

    @property
    def base_url(self) -> str:
        return f"{self.root}/v1"

    def _begin_upload(self, *, headers: dict[str, str], body: bytes, **_: Any) -> Reply:
        parts = multipart(headers, body)
        file_id = f"file-{len(self.files) + 1:03d}"
        self.files[file_id] = parts["file_name"][1].decode()
        return Reply(302, b"", {"Location": f"{self.root}/upload/{file_id}", "X-Together-File-Id": file_id})

    def _put(self, file_id: str, *, body: bytes, **_: Any) -> Reply:
        self.record_upload(self.files[file_id], body)
        return Reply(200, b"")

    def _preprocess(self, file_id: str, **_: Any) -> Reply:
        return Reply(
            200,
            {
                "id": file_id,
                "bytes": 1,
                "created_at": int(time.time()),
                "filename": self.files[file_id],
                "FileType": "jsonl",
                "object": "file",
                "Processed": True,
                "purpose": "fine-tune",
            },
        )

    def _limits(self, *, query: dict[str, str], **_: Any) -> Reply:
        model = TOGETHER_MODELS.get(query.get("model_name", ""))
        if model is None:
            return Reply(
                404, {"error": {"message": f"model {query.get('model_name')} is not available for fine-tuning"}}
            )
        lora = {
            "default_rank": 8,
            "max_batch_size": 32,
            "max_batch_size_dpo": 16,
            "max_rank": model["max_rank"],
            "min_batch_size": 1,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        }
        full = {"max_batch_size": 16, "max_batch_size_dpo": 8, "min_batch_size": 1}
        return Reply(
            200,
            {
                "model_name": query["model_name"],
                "default_gradient_accumulation_steps": 1,
                "lora_training": lora,
                "full_training": full if model["full"] else None,
                "max_learning_rate": 1.0,
                "min_learning_rate": 1e-8,
                "max_num_checkpoints": 10,
                "max_num_epochs": 20,
                "max_num_evals": 10,
                "max_seq_length_dpo": 4096,
                "max_seq_length_sft": 8192,
                "min_max_seq_length": 32,
                "merge_output_lora": True,
                "supports_full_training": model["full"],
                "supports_reasoning": False,
                "supports_tools": False,
                "supports_vision": False,
            },
        )

    def _estimate(self, **_: Any) -> Reply:
        return Reply(
            200,
            {
                "estimation_available": True,
                "allowed_to_proceed": True,
                "estimated_total_price": 0.37,
                "estimated_train_token_count": 30_000,
                "estimated_eval_token_count": 0,
            },
        )

    def _create(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        job = self.new_job("ft-0000aaaa-", request)
        return Reply(200, self._job(job))

    def _job(self, job: Job) -> dict[str, Any]:
        suffix = job.request.get("suffix") or "ft"
        return {
            "id": job.id,
            "status": self.STATUS[job.phase],
            "user_id": "user-fake",
            "created_at": "2026-11-24T10:00:00Z",
            "updated_at": "2026-11-24T10:00:00Z",
            "model": job.request["model"],
            "model_output_name": f"fake-user/{job.request['model'].split('/')[-1]}-{suffix}-{job.id[-4:]}",
            "total_price": 370_000_000 if job.phase == "succeeded" else None,  # nanodollars
            "training_file": job.request["training_file"],
            "training_type": job.request.get("training_type"),
            "training_method": job.request.get("training_method"),
            "n_epochs": job.request.get("n_epochs"),
        }

    def _get(self, job_id: str, **_: Any) -> Reply:
        return Reply(200, self._job(self.poll(job_id)))

    def _events(self, job_id: str, **_: Any) -> Reply:
        job = self.jobs[job_id]
        events = [self._event("JOB_PENDING", "Fine tune request created", "info")]
        for step in range(1, job.step + 1):
            events.append(
                self._event(
                    "TRAINING_START" if step == 1 else "CHECKPOINT_SAVE",
                    f"step {step}",
                    "info",
                    step=step,
                    total_steps=self.script.steps,
                )
            )
        if job.phase == "failed":
            events.append(self._event("JOB_ERROR", self.script.error, "error"))
        return Reply(200, {"data": events})  # oldest first

    @staticmethod
    def _event(kind: str, message: str, level: str, **extra: Any) -> dict[str, Any]:
        return {
            "object": "fine-tune-event",
            "created_at": "2026-11-24T10:00:00Z",
            "message": message,
            "type": kind,
            "level": level,
            **extra,
        }

    def _metrics(self, job_id: str, **_: Any) -> Reply:
        job = self.jobs[job_id]
        return Reply(200, {"metrics": [{"global_step": s, "train_loss": loss_at(s)} for s in range(1, job.step + 1)]})

    def _cancel(self, job_id: str, **_: Any) -> Reply:
        return Reply(200, self._job(self.cancel(job_id)))

    def _download(self, *, query: dict[str, str], **_: Any) -> Reply:
        job = self.jobs[query["ft_id"]]
        if job.phase != "succeeded" or query.get("checkpoint") != "adapter":
            return Reply(400, {"error": {"message": "job is not downloadable"}})
        assert self.adapter_dir is not None
        data = tar_zst(self.adapter_dir, "fake-user-adapter")
        return Reply(200, data, {"Content-Type": "application/octet-stream"})


# ---------------------------------------------------------------- Predibase


class FakePredibase(FakeService):
    """Predibase's v1/v2 routes, the presigned ``/blob/{token}`` PUT and the metrics websocket."""

    name = "predibase"
    STATUS = {
        "waiting": "queued",
        "running": "training",
        "succeeded": "completed",
        "failed": "errored",
        "cancelled": "canceled",
    }
    MODELS = ("qwen2-5-1-5b-instruct", "mistral-7b-instruct-v0-3")

    def __init__(self, key: str, adapter_dir: Path, script: Script | None = None) -> None:
        super().__init__(key, adapter_dir, script)
        self.datasets: dict[str, str] = {}  # upload token → file name, then dataset name → status
        self.blobs: dict[str, bytes] = {}
        self.route("GET", r"/users/current", self._user)
        self.route("POST", r"/v2/datasets/upload", self._begin_upload)
        self.route("PUT", r"/blob/([\w-]+)", self._put)
        self.route("PUT", r"/v2/datasets/upload", self._register)
        self.route("GET", r"/v1/datasets/name/([\w.-]+)", self._dataset)
        self.route("POST", r"/v2/repos", self._repo)
        self.route("GET", r"/v2/finetuning/jobs/cost-estimate", self._estimate)
        self.route("POST", r"/v2/finetuning/jobs", self._create)
        self.route("GET", r"/v2/finetuning/jobs/([\w-]+)", self._get)
        self.route("GET", r"/v2/finetuning/jobs/([\w-]+)/metrics/stream", self._stream)
        self.route("POST", r"/v2/finetuning/jobs/([\w-]+)/cancel", self._cancel)
        self.route("GET", r"/v2/repos/([\w-]+)/version/(\d+)", self._version)
        self.route("GET", r"/v2/repos/([\w-]+)/version/(\d+)/download", self._download)

    @property
    def base_url(self) -> str:
        return self.root

    def _user(self, **_: Any) -> Reply:
        subscription = {
            "id": 1,
            "tier": "paid",
            "isTrial": False,
            "expiration": None,
            "daysRemainingInPlan": None,
            "active": True,
        }
        return Reply(
            200,
            {
                "id": 1,
                "username": "tester",
                "uuid": "user-uuid",
                "tenant": {"name": "fake", "shortCode": "fk", "subscription": subscription},
            },
        )

    def _begin_upload(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        token = f"tok-{len(self.blobs) + 1}"
        self.blobs[token] = b""
        self.datasets[token] = request["fileName"]
        return Reply(200, {"presignedUrl": f"{self.root}/blob/{token}", "uploadToken": token, "requiredHeaders": {}})

    def _put(self, token: str, *, body: bytes, **_: Any) -> Reply:
        self.blobs[token] = body
        self.record_upload(self.datasets[token], body)
        return Reply(200, b"")

    def _register(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        self.datasets[request["name"]] = "connected"
        return Reply(200, {})

    def _dataset(self, name: str, **_: Any) -> Reply:
        if name not in self.datasets:
            return Reply(404, {"error": f"dataset {name} not found"})
        return Reply(
            200,
            {
                "uuid": f"ds-{name}",
                "name": name,
                "status": "connected",
                "connection": {"type": "file", "name": "file_uploads"},
            },
        )

    def _repo(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        return Reply(200, {"uuid": f"repo-{request['name']}", "name": request["name"], "versions": []})

    def _estimate(self, **_: Any) -> Reply:
        return Reply(200, {"estimatedCost": 0.42})

    def _create(self, *, body: bytes, **_: Any) -> Reply:
        request = json.loads(body)
        if request["params"]["base_model"] not in self.MODELS:
            return Reply(400, {"error": f"base model {request['params']['base_model']} is not supported"})
        return Reply(200, self._job(self.new_job("pbjob-", request)))

    def _job(self, job: Job) -> dict[str, Any]:
        request = job.request
        return {
            "uuid": job.id,
            "baseModel": request["params"]["base_model"],
            "datasetName": request["dataset"],
            "targetRepoName": request["repo"],
            "targetVersionTag": 1,
            "accelerator": {"id": "a100_80gb_100"},
            "status": self.STATUS[job.phase],
            "params": request["params"],
            "description": request.get("description"),
        }

    def _get(self, job_id: str, **_: Any) -> Reply:
        return Reply(200, self._job(self.poll(job_id)))

    def _cancel(self, job_id: str, **_: Any) -> Reply:
        self.cancel(job_id)
        return Reply(200, {})

    def _job_of_repo(self, repo: str) -> Job:
        return next(job for job in reversed(list(self.jobs.values())) if job.request["repo"] == repo)

    def _version(self, repo: str, tag: str, **_: Any) -> Reply:
        job = self._job_of_repo(repo)
        error = self.script.error if job.phase == "failed" else None
        return Reply(
            200,
            {
                "repo": repo,
                "tag": int(tag),
                "archived": False,
                "baseModel": job.request["params"]["base_model"],
                "adapterPath": "s3://fake/adapter" if job.phase == "succeeded" else None,
                "finetuningJob": {"uuid": job.id, "error": error},
            },
        )

    def _download(self, repo: str, tag: str, **_: Any) -> Reply:
        job = self._job_of_repo(repo)
        if job.phase != "succeeded":
            return Reply(400, {"error": {"message": "adapter is not ready"}})
        assert self.adapter_dir is not None
        return Reply(200, zipped(self.adapter_dir), {"Content-Type": "application/zip"})

    def _stream(self, job_id: str, **_: Any) -> Reply:
        """The metrics websocket: every step so far, then each new one, until the job ends."""
        job = self.jobs[job_id]

        def session(send: Callable[[str], None]) -> None:
            sent = 0
            while not self.stopped.is_set():
                while sent < job.step:
                    sent += 1
                    send(self._metrics(job, sent, completed=False))
                if job.final:
                    send(self._metrics(job, sent, completed=True))
                    return
                time.sleep(0.01)

        return Reply(101, websocket=session)

    def _metrics(self, job: Job, step: int, *, completed: bool) -> str:
        data = {"steps": step, "checkpoint_number": step, "train_metrics_loss": loss_at(step) if step else None}
        meta = {
            "is_completed": completed,
            "model_uuid": job.id,
            "run_id": "run-1",
            "steps": step,
            "steps_per_epoch": self.script.steps,
            "total_steps": self.script.steps,
        }
        return json.dumps({"data": data, "meta": meta})
