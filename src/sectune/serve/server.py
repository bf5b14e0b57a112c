"""``sectune serve``: an OpenAI-compatible HTTP server (FastAPI on uvicorn) over the batching engine.

Endpoints: ``/v1/chat/completions`` (plain and SSE streaming), ``/v1/completions`` (text or token-id prompts,
``logprobs`` and ``echo`` for log-likelihood scoring), ``/v1/models`` and ``/health``. Every error is an
OpenAI-style ``{"error": {...}}`` body with its HTTP status; nothing a client sends can stop the server.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the route signatures at run time, and their
# ``Request`` is imported inside ``create_app`` (FastAPI stays an optional extra).
import asyncio
import hmac
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from sectune.config.serve import ServeConfig
from sectune.serve.engine import Batcher, Delta, Engine, Event, Failed, Finished, Job, Sampling, TokenLogprob
from sectune.serve.protocol import ApiError, ChatRequest, CompletionRequest, parse

log = logging.getLogger(__name__)

COMPLETIONS_DEFAULT_MAX_TOKENS = 16  # OpenAI's default for /v1/completions


class Server:
    """What the routes need: the engine behind its batcher, the limits, and the API key (if any)."""

    def __init__(self, engine: Engine, settings: ServeConfig, *, api_key: str | None = None) -> None:
        self.engine, self.settings, self._api_key = engine, settings, api_key
        self.batcher = Batcher(engine, max_batch=settings.max_batch, wait_ms=settings.batch_wait_ms)
        self.created = int(time.time())

    # ------------------------------------------------------------ checks

    def authorize(self, header: str | None) -> None:
        if self._api_key is None:
            return
        given = (header or "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self._api_key.encode()):
            raise ApiError(
                401,
                "Incorrect or missing API key: send it as 'Authorization: Bearer KEY'",
                code="invalid_api_key",
            )

    def model_name(self, name: str) -> str:
        if name not in self.engine.served:
            known = ", ".join(self.engine.served)
            raise ApiError(
                404, f"The model '{name}' does not exist (served: {known})", param="model", code="model_not_found"
            )
        return name

    def sampling(self, request: ChatRequest | CompletionRequest, prompt_len: int, max_tokens: int | None) -> Sampling:
        """The request's sampling, after the token limits: over-long prompts and budgets are refused."""
        context = self.engine.context_length
        limit = self.settings.max_tokens_limit
        if prompt_len >= context:
            raise ApiError(
                400,
                f"This model's maximum context length is {context} tokens; the prompt has {prompt_len}",
                param="messages" if isinstance(request, ChatRequest) else "prompt",
                code="context_length_exceeded",
            )
        if max_tokens is not None and max_tokens > limit:
            raise ApiError(400, f"max_tokens is {max_tokens}, this server allows at most {limit}", param="max_tokens")
        if max_tokens is not None and prompt_len + max_tokens > context:
            raise ApiError(
                400,
                f"This model's maximum context length is {context} tokens; you asked for {prompt_len + max_tokens} "
                f"({prompt_len} in the prompt, {max_tokens} in the completion)",
                param="max_tokens",
                code="context_length_exceeded",
            )
        if len(request.stops()) > self.settings.max_stop:
            raise ApiError(400, f"at most {self.settings.max_stop} stop strings", param="stop")
        budget = max_tokens if max_tokens is not None else min(limit, context - prompt_len)
        return Sampling(
            max_tokens=budget,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            stop=request.stops(),
            logprobs=_logprobs_wanted(request),
            echo=bool(getattr(request, "echo", False)),
        )

    # ------------------------------------------------------------ running

    async def events(self, model: str, prompt_ids: list[int], sampling: Sampling) -> AsyncIterator[Event]:
        """The job's events as they come from the worker thread; a client that goes away cancels its job."""
        loop = asyncio.get_running_loop()
        inbox: asyncio.Queue[Event] = asyncio.Queue()

        def emit(event: Event) -> None:
            loop.call_soon_threadsafe(inbox.put_nowait, event)

        job = Job(model, prompt_ids, sampling, emit)
        self.batcher.submit(job)
        try:
            while True:
                event = await inbox.get()
                if isinstance(event, Failed):
                    raise ApiError(500, f"generation failed: {event.message}", type="server_error")
                yield event
                if isinstance(event, Finished):
                    return
        finally:
            job.cancelled = True  # no effect once finished; stops the decode of a client that left

    async def collect(self, model: str, prompt_ids: list[int], sampling: Sampling) -> tuple[str, list, Finished]:
        text, logprobs, finished = [], [], None
        async for event in self.events(model, prompt_ids, sampling):
            if isinstance(event, Delta):
                text.append(event.text)
                logprobs.extend(event.logprobs)
            elif isinstance(event, Finished):
                finished = event
        assert finished is not None
        return "".join(text), logprobs, finished


def _logprobs_wanted(request: ChatRequest | CompletionRequest) -> int | None:
    if isinstance(request, ChatRequest):
        return (request.top_logprobs or 0) if request.logprobs else None
    return request.logprobs


# ---------------------------------------------------------------- the app


def create_app(server: Server) -> Any:
    """The FastAPI app; the batcher runs while the app does."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import JSONResponse, StreamingResponse
    from starlette.exceptions import HTTPException

    @asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        server.batcher.start()
        yield
        server.batcher.stop()

    app = FastAPI(title="sectune serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        error = ApiError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None)
        return JSONResponse(error.body(), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def unexpected(_request: Request, exc: Exception) -> JSONResponse:
        log.exception("request failed")
        error = ApiError(500, f"internal error: {type(exc).__name__}", type="server_error")
        return JSONResponse(error.body(), status_code=500)

    async def body(request: Request, kind: type) -> Any:
        server.authorize(request.headers.get("authorization"))
        declared = request.headers.get("content-length")
        limit = server.settings.max_body_bytes
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiError(413, f"request body over {limit} bytes")
        raw = await request.body()
        if len(raw) > limit:
            raise ApiError(413, f"request body over {limit} bytes")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"the request body is not valid JSON: {exc}") from None
        return parse(kind, data)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        batcher = server.batcher
        counts = {"batches": batcher.batches, "largest_batch": batcher.largest, "joined": batcher.joined}
        return {"status": "ok", "models": list(server.engine.served), **counts}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        server.authorize(request.headers.get("authorization"))
        base = next(iter(server.engine.served))
        data = [
            {
                "id": served.name,
                "object": "model",
                "created": server.created,
                "owned_by": "sectune",
                "root": served.source,
                "parent": None if served.adapter is None else base,
            }
            for served in server.engine.served.values()
        ]
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Any:
        chat = await body(request, ChatRequest)
        name = server.model_name(chat.model)
        messages = [{"role": m.role, "content": m.text()} for m in chat.messages]
        prompt_ids = _checked_prompt(lambda: server.engine.chat_prompt_ids(name, messages), "messages")
        budget = chat.token_budget()
        if budget == 0:
            raise ApiError(400, "max_tokens must be at least 1", param="max_tokens")
        sampling = server.sampling(chat, len(prompt_ids), budget)
        reply_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if chat.stream:
            chunks = _chat_chunks(server, name, prompt_ids, sampling, reply_id, created, chat.include_usage())
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        text, logprobs, finished = await server.collect(name, prompt_ids, sampling)
        choice = {
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "logprobs": _chat_logprobs(logprobs) if sampling.logprobs is not None else None,
            "finish_reason": finished.finish_reason,
        }
        return _reply(reply_id, "chat.completion", created, name, [choice], _usage([finished]))

    @app.post("/v1/completions")
    async def completions(request: Request) -> Any:
        completion = await body(request, CompletionRequest)
        name = server.model_name(completion.model)
        prompts = [_prompt_ids(server.engine, prompt) for prompt in completion.prompts()]
        budget = completion.max_tokens if completion.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
        if budget == 0 and not completion.echo:
            raise ApiError(400, "max_tokens=0 needs echo=true (scoring the prompt)", param="max_tokens")
        samplings = [server.sampling(completion, len(ids), budget) for ids in prompts]
        reply_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        if completion.stream:
            if len(prompts) != 1 or completion.echo:
                raise ApiError(400, "streaming takes one prompt and no echo", param="stream")
            chunks = _completion_chunks(server, name, prompts[0], samplings[0], reply_id, created)
            return StreamingResponse(_sse(chunks), media_type="text/event-stream")
        results = await asyncio.gather(
            *(server.collect(name, ids, s) for ids, s in zip(prompts, samplings, strict=True))
        )
        choices = [
            _completion_choice(server.engine, index, ids, result, completion)
            for index, (ids, result) in enumerate(zip(prompts, results, strict=True))
        ]
        return _reply(reply_id, "text_completion", created, name, choices, _usage([r[2] for r in results]))

    return app


def _checked_prompt(render: Callable[[], list[int]], param: str) -> list[int]:
    from sectune.errors import UserError

    try:
        return render()
    except UserError as exc:
        raise ApiError(400, str(exc), param="model") from None
    except Exception as exc:  # a template that cannot render these messages (e.g. roles out of order)
        raise ApiError(400, f"the chat template cannot render these messages: {exc}", param=param) from None


def _prompt_ids(engine: Engine, prompt: str | list[int]) -> list[int]:
    if isinstance(prompt, str):
        ids = engine.text_ids(prompt)
    else:
        vocab = len(engine.tokenizer)
        if any(not isinstance(t, int) or t < 0 or t >= vocab for t in prompt):
            raise ApiError(400, f"prompt token ids must be integers in [0, {vocab})", param="prompt")
        ids = list(prompt)
    if not ids:
        raise ApiError(400, "prompt is empty", param="prompt")
    return ids


# ---------------------------------------------------------------- bodies


def _reply(reply_id: str, kind: str, created: int, model: str, choices: list, usage: dict) -> dict[str, Any]:
    return {"id": reply_id, "object": kind, "created": created, "model": model, "choices": choices, "usage": usage}


def _usage(finished: list[Finished]) -> dict[str, int]:
    prompt = sum(f.prompt_tokens for f in finished)
    completion = sum(f.completion_tokens for f in finished)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _chat_logprobs(logprobs: list[TokenLogprob]) -> dict[str, Any]:
    def entry(token: str, logprob: float) -> dict[str, Any]:
        return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}

    content = [
        {**entry(lp.token, float(lp.logprob or 0.0)), "top_logprobs": [entry(t, v) for t, v in lp.top]}
        for lp in logprobs
    ]
    return {"content": content}


def _completion_choice(engine: Engine, index: int, prompt_ids: list[int], result: tuple, request: Any) -> dict:
    text, logprobs, finished = result
    prompt_text = engine.tokenizer.decode(prompt_ids) if request.echo else ""
    tokens: list[TokenLogprob] = [*(finished.prompt_logprobs or []), *logprobs] if request.echo else logprobs
    return {
        "index": index,
        "text": prompt_text + text,
        "logprobs": _legacy_logprobs(tokens) if request.logprobs is not None else None,
        "finish_reason": finished.finish_reason,
    }


def _legacy_logprobs(tokens: list[TokenLogprob]) -> dict[str, Any]:
    """The completions API's logprobs: parallel lists; the first prompt token has logprob and top None."""
    offsets, at = [], 0
    for token in tokens:
        offsets.append(at)
        at += len(token.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [None if t.logprob is None else dict(t.top) for t in tokens],
        "text_offset": offsets,
    }


# ---------------------------------------------------------------- streaming


async def _sse(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[str]:
    try:
        async for chunk in chunks:
            yield f"data: {json.dumps(chunk)}\n\n"
    except ApiError as exc:  # the status line is sent: the error goes in the stream, as OpenAI does
        yield f"data: {json.dumps(exc.body())}\n\n"
    yield "data: [DONE]\n\n"


async def _chat_chunks(
    server: Server, name: str, prompt_ids: list[int], sampling: Sampling, reply_id: str, created: int, usage: bool
) -> AsyncIterator[dict[str, Any]]:
    def chunk(delta: dict, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        return {
            "id": reply_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": name,
            "choices": [choice],
        }

    yield chunk({"role": "assistant", "content": ""})
    async for event in server.events(name, prompt_ids, sampling):
        if isinstance(event, Delta) and (event.text or event.logprobs):
            logprobs = _chat_logprobs(event.logprobs) if sampling.logprobs is not None else None
            yield chunk({"content": event.text}, logprobs=logprobs)
        elif isinstance(event, Finished):
            yield chunk({}, event.finish_reason)
            if usage:
                yield {**chunk({}), "choices": [], "usage": _usage([event])}


async def _completion_chunks(
    server: Server, name: str, prompt_ids: list[int], sampling: Sampling, reply_id: str, created: int
) -> AsyncIterator[dict[str, Any]]:
    def chunk(text: str, finish: str | None = None, logprobs: Any = None) -> dict[str, Any]:
        choice = {"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}
        return {"id": reply_id, "object": "text_completion", "created": created, "model": name, "choices": [choice]}

    async for event in server.events(name, prompt_ids, sampling):
        if isinstance(event, Delta) and (event.text or event.logprobs):
            logprobs = _legacy_logprobs(event.logprobs) if sampling.logprobs is not None else None
            yield chunk(event.text, logprobs=logprobs)
        elif isinstance(event, Finished):
            yield chunk("", event.finish_reason)


# ---------------------------------------------------------------- running it


def _server_libraries() -> Any:
    try:
        import fastapi  # noqa: F401
        import uvicorn
    except ImportError:
        from sectune.errors import UserError

        raise UserError(
            "sectune serve needs FastAPI and uvicorn", field="serve", fix="pip install 'sectune[serve]'"
        ) from None
    return uvicorn


def serve(cfg: Any, targets: list[str], *, on_ready: Callable[[str], None] | None = None) -> None:
    """Load ``targets`` (one base, its adapters) and serve them until interrupted (the API's ``serve``)."""
    import socket

    from sectune.evaluate.targets import resolve_dtype
    from sectune.llm.keys import api_key_from_env

    settings: ServeConfig = cfg.serve
    uvicorn = _server_libraries()
    engine = Engine.load(targets, dtype=resolve_dtype(settings.dtype))
    server = Server(engine, settings, api_key=api_key_from_env(settings.api_key_env))
    app = create_app(server)
    sock = socket.socket(socket.AF_INET6 if ":" in settings.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((settings.host, settings.port))
    host, port = sock.getsockname()[:2]
    url = f"http://{host}:{port}/v1"
    if on_ready:
        on_ready(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
