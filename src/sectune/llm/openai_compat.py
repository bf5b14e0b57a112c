"""Any OpenAI-compatible server (OpenAI, vLLM, Ollama, llama.cpp, LM Studio, ...): plain JSON POSTs for chat
completions, the official client for streaming."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import os
from typing import Any
from urllib.parse import urlsplit

from sectune.llm.base import Completion, Messages, ProviderError
from sectune.llm.keys import redact

log = logging.getLogger(__name__)
JSON_OBJECT = {"type": "json_object"}  # OpenAI JSON mode: what a server without structured outputs gets
SLOT_PROBE_TIMEOUT_S = 3.0


class OpenAIProvider:
    """Chat completions as plain JSON POSTs on one aiohttp session (:class:`JsonPoster`); streaming through
    ``openai.AsyncOpenAI``. Neither retries: the request layer does (sectune.llm.requests).

    Why not the SDK for every request: at 64 requests in flight its POST path (httpx2 request and URL models,
    header merging, auth hooks, response wrappers) costs ~2.1 ms CPU per request on a 2-core AVX2 EPYC, more
    than the 2 ms sectune's whole per-sample budget allows; the same POST on a bare aiohttp session costs a
    fraction of that (``sectune bench --only generate``; docs/performance.md). Its semantics are the SDK's: the
    same base URL (``OPENAI_BASE_URL`` included), headers, timeout, and the same error kinds.
    """

    name = "openai"
    supports_json = True

    def __init__(
        self, model: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        import openai

        self.model = model
        self._key = api_key
        # No key anywhere is fine for local servers (vLLM, Ollama): the client insists on a non-empty string.
        self._client = openai.AsyncOpenAI(
            base_url=base_url,
            api_key=api_key or "not-needed",
            timeout=timeout,
            max_retries=0,
            http_client=aiohttp_client(openai, timeout),
        )
        self.base_url = str(self._client.base_url)
        self._poster = JsonPoster(self.base_url, api_key or "not-needed", timeout, key=api_key)
        self.json_schema_refused = False  # the server answered 400 to a json_schema response_format
        self._slots: int | None = None
        self._slots_probed = False

    async def complete(self, messages: Messages, **params: Any) -> Completion:
        """One chat completion; errors become :class:`ProviderError`.

        A ``json_schema`` response_format the server refuses with a 400 is asked again once in JSON mode
        (``json_object``), and every later request of this provider goes out in JSON mode straight away.
        """
        request = _request_params(params)
        if self.json_schema_refused and is_json_schema(request.get("response_format")):
            request["response_format"] = JSON_OBJECT
        try:
            return await self._chat(messages, request)
        except ProviderError as exc:
            if exc.status != 400 or not is_json_schema(request.get("response_format")):
                raise
        completion = await self._chat(messages, {**request, "response_format": JSON_OBJECT})
        # Remembered only now: a 400 that JSON mode does not cure was about something else.
        if not self.json_schema_refused:
            self.json_schema_refused = True
            log.warning(
                "the server at %s refused response_format json_schema (400): asking in JSON mode (json_object)"
                " for the rest of the run",
                self.base_url,
            )
        return completion

    async def _chat(self, messages: Messages, request: dict[str, Any]) -> Completion:
        body = {key: value for key, value in request.items() if key != "timeout"}
        response = await self._poster.post(
            "/chat/completions", {"model": self.model, "messages": messages, **body}, timeout=request.get("timeout")
        )
        return completion_from_json(response)

    async def stream(self, messages: Messages, on_text: Any, **params: Any) -> Completion:
        """One chat completion streamed (SSE): ``on_text`` gets each piece as it comes; the whole at the end."""
        request = _request_params(params)
        request.pop("timeout", None)
        pieces: list[str] = []
        finish = "stop"
        try:
            chunks: Any = await self._client.chat.completions.create(
                model=self.model,
                messages=messages,  # type: ignore[arg-type]
                stream=True,
                **request,
            )
            async for chunk in chunks:
                if not chunk.choices:
                    continue
                piece = chunk.choices[0].delta.content or ""
                if piece:
                    pieces.append(piece)
                    on_text(piece)
                finish = chunk.choices[0].finish_reason or finish
        except Exception as exc:
            raise classify_openai_error(exc, self._key) from None
        return Completion(text="".join(pieces), finish_reason=finish)

    async def post_json(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
        """A plain JSON POST to the server (e.g. ``/completions``); errors become :class:`ProviderError`."""
        answer = await self._poster.post(path, body, timeout=timeout)
        if not isinstance(answer, dict):
            raise ProviderError("empty_response", f"{path} answered {type(answer).__name__}, not a JSON object")
        return answer

    async def server_slots(self) -> int | None:
        """How many requests a local server generates at once, where it says so (llama.cpp's ``/props``
        ``total_slots``, else its ``/slots`` list); None for remote servers and servers that do not say.

        Asked once per provider; remote servers are never asked (OpenAI has no such route).
        """
        if not self._slots_probed:
            self._slots_probed = True
            if is_local_url(self.base_url):
                self._slots = await asyncio.to_thread(probe_slots, server_root(self.base_url), self._key)
        return self._slots

    async def aclose(self) -> None:
        await self._poster.aclose()
        await self._client.close()


class JsonPoster:
    """JSON POSTs to one server on one aiohttp session; HTTP and transport errors become :class:`ProviderError`
    with the kinds the SDK's exceptions map to (:func:`status_error`, :func:`transport_error`).

    The session opens on the first request, in the event loop that sends it; a later event loop (a second
    ``asyncio.run``) gets a session of its own. Its connector has no connection limit: the request layer
    bounds the requests in flight.
    """

    def __init__(self, base_url: str, api_key: str, timeout: float, *, key: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._timeout = timeout
        self._key = key  # redacted from every error message
        self._headers = {
            "Authorization": f"Bearer {api_key}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": user_agent(),
        }
        for header, variable in (("OpenAI-Organization", "OPENAI_ORG_ID"), ("OpenAI-Project", "OPENAI_PROJECT_ID")):
            if os.environ.get(variable):  # what the SDK sends when these are set
                self._headers[header] = os.environ[variable]
        self._session: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def post(self, path: str, body: dict[str, Any], *, timeout: float | None = None) -> Any:
        """The decoded JSON answer to a POST of ``body`` to ``path`` (under the base URL)."""
        import aiohttp

        limit = aiohttp.ClientTimeout(total=timeout if timeout is not None else self._timeout)
        try:
            async with self._session_here().post(
                self._base + path, data=json.dumps(body), headers=self._headers, timeout=limit
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    text = raw.decode("utf-8", "replace")
                    retry_after = parse_retry_after(response.headers.get("retry-after"))
                    raise status_error(
                        response.status, f"Error code: {response.status} - {text}", retry_after, self._key
                    )
        except ProviderError:
            raise
        except Exception as exc:
            raise transport_error(exc, self._key) from None
        try:
            return json.loads(raw)
        except ValueError:
            raise ProviderError("empty_response", f"{path} answered {len(raw)} bytes that are not JSON") from None

    def _session_here(self) -> Any:
        import aiohttp

        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop:
            if self._session is not None:
                self._session.detach()  # bound to an event loop that has ended: nothing left to close
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._loop = loop
        return self._session

    async def aclose(self) -> None:
        if self._session is not None and self._loop is asyncio.get_running_loop():
            await self._session.close()
        self._session = self._loop = None


def user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"sectune/{version('sectune')}"
    except PackageNotFoundError:  # a source tree that is not installed
        return "sectune"


def transport_error(exc: BaseException, key: str | None = None) -> ProviderError:
    """A failure before any HTTP status: a timeout, or a refused, reset or dropped connection."""
    if isinstance(exc, TimeoutError):  # asyncio's and aiohttp's timeouts are TimeoutErrors
        return ProviderError("timeout", "Request timed out.")
    refused = connection_failure(exc)
    cause = refused if refused is not None else exc
    return ProviderError("connection", redact(f"cannot connect ({type(cause).__name__}: {cause})", key)[:300])


def is_json_schema(response_format: Any) -> bool:
    return isinstance(response_format, dict) and response_format.get("type") == "json_schema"


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine or the local network (a llama.cpp, Ollama or vLLM box)."""
    host = (urlsplit(url).hostname or "").lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a name: localhost, a local domain, or a bare name ("llama", a compose service)
        return bool(host) and (host.endswith((".localhost", ".local", ".lan", ".internal")) or "." not in host)
    return address.is_loopback or address.is_private or address.is_link_local


def server_root(base_url: str) -> str:
    """The server's root: llama.cpp serves ``/props`` and ``/slots`` beside ``/v1``, not under it."""
    root = base_url.rstrip("/")
    return root.removesuffix("/v1")


def probe_slots(root: str, key: str | None = None) -> int | None:
    """Slots a llama.cpp server reports (``/props`` total_slots, else the length of ``/slots``), or None."""
    props = _get_json(f"{root}/props", key)
    if isinstance(props, dict) and isinstance(props.get("total_slots"), int) and props["total_slots"] > 0:
        return int(props["total_slots"])
    slots = _get_json(f"{root}/slots", key)
    return len(slots) if isinstance(slots, list) and slots else None


def _get_json(url: str, key: str | None) -> Any:
    """A GET answered with JSON, or None on any failure (404, refused, not JSON): the probe is best effort."""
    import urllib.request

    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # a local server: never via a proxy
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with opener.open(request, timeout=SLOT_PROBE_TIMEOUT_S) as answer:
            return json.loads(answer.read())
    except (OSError, ValueError):  # URLError and HTTPError are OSErrors; bad JSON a ValueError
        return None


def aiohttp_client(sdk: Any, timeout: float) -> Any:
    """The SDK's aiohttp-backed client (openai or anthropic), or None (the SDK's default) without aiohttp.

    Its aiohttp session opens on the first request, in the event loop that sends it.
    """
    try:
        return sdk.DefaultAioHttpClient(timeout=timeout)
    except RuntimeError:  # installed without the aiohttp extra
        return None


def completion_from_json(response: Any) -> Completion:
    """A Completion from a chat.completion JSON answer; a malformed answer is a ProviderError."""
    choices = response.get("choices") if isinstance(response, dict) else None
    if not choices or not isinstance(choices[0], dict):
        raise ProviderError("empty_response", "no choices in the answer")
    choice = choices[0]
    message, usage = choice.get("message"), response.get("usage")
    message = message if isinstance(message, dict) else {}
    usage = usage if isinstance(usage, dict) else {}
    return Completion(
        text=message.get("content") or "",
        finish_reason=choice.get("finish_reason") or "unknown",
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
    )


def _request_params(params: dict[str, Any]) -> dict[str, Any]:
    request: dict[str, Any] = {}
    for key in ("max_tokens", "temperature", "seed", "response_format", "top_p"):
        if params.get(key) is not None:
            request[key] = params[key]
    if params.get("timeout") is not None:
        request["timeout"] = params["timeout"]
    return request


def classify_openai_error(exc: Exception, key: str | None = None) -> ProviderError:
    """Map the openai client's exceptions to provider error kinds (Retry-After kept)."""
    import openai

    return classify_sdk_error(openai, exc, key)


def classify_sdk_error(sdk: Any, exc: Exception, key: str | None = None) -> ProviderError:
    """Map an official SDK's exceptions (openai or anthropic: same class names) to provider error kinds."""
    message = redact(str(exc), key)[:300]
    if isinstance(exc, sdk.APIConnectionError):  # APITimeoutError is one too
        refused = connection_failure(exc)
        if refused is not None:  # the aiohttp transport reports a refused connection as a connect timeout
            return ProviderError(
                "connection", redact(f"cannot connect ({type(refused).__name__}: {refused})", key)[:300]
            )
        kind = "timeout" if isinstance(exc, sdk.APITimeoutError) else "connection"
        return ProviderError(kind, message)
    if isinstance(exc, sdk.APIStatusError):
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        return status_error(exc.status_code, message, retry_after)
    return ProviderError(type(exc).__name__, message)


def status_error(status: int, message: str, retry_after: float | None, key: str | None = None) -> ProviderError:
    """The error kind of an HTTP error status (the request layer retries rate_limit and server_error)."""
    message = redact(message, key)[:300]
    if status == 429:
        return ProviderError("rate_limit", message, retry_after=retry_after, status=status)
    if status in (401, 403):
        return ProviderError("auth", message, status=status)
    if status >= 500:  # includes Anthropic's 529 "overloaded"
        return ProviderError("server_error", message, retry_after=retry_after, status=status)
    return ProviderError("bad_request", message, status=status)


def connection_failure(exc: BaseException) -> BaseException | None:
    """The refused, reset or unresolvable connection behind ``exc`` (its cause chain), or None."""
    import socket

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionError | socket.gaierror):
            return current
        current = current.__cause__ or current.__context__
    return None


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number; HTTP dates are rare from LLM servers and ignored)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
