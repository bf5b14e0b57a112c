"""One place where LLM requests go out: bounded in flight, RPM/TPM limits, retries with backoff, the cache.

Generation, the LLM judge (every stage's) and endpoint evaluation all send their requests through
:class:`Caller`. Retries (tenacity) cover rate limits, 5xx, timeouts and connection errors, with exponential
backoff and jitter; a server's Retry-After is honoured. Every error seen is counted by kind, retried or not.

Two guards for slow local servers (issue 24): before the first request, a local server that reports how many
requests it generates at once (llama.cpp's slots) caps the requests in flight at that number; and when every
request in flight times out, round after round with none answered, the caller stops with
:class:`TimeoutStormError` (one line naming ``max_in_flight`` and ``timeout_s``) instead of retrying on.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sectune.errors import UserError
from sectune.llm.base import Completion, Messages, Provider, ProviderError
from sectune.llm.cache import ResponseCache, cache_key

log = logging.getLogger(__name__)
MAX_RETRY_AFTER_S = 120.0
# A timeout storm: this many rounds of the in-flight requests (at least STORM_MIN requests) timed out in a row.
STORM_ROUNDS = 2
STORM_MIN = 4
T = TypeVar("T")


class TimeoutStormError(UserError):
    """Every request timed out, round after round, none answered: the server cannot keep up with the settings
    (a one-slot llama.cpp server sent 16 requests at once). The CLI prints one line and exits 2."""


@dataclass(frozen=True)
class Limits:
    """Settings that bound a request without shaping its answer (never in the cache key)."""

    max_tokens: int = 512
    timeout_s: float = 60.0
    max_retries: int = 5
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_in_flight: int = 16
    rpm: int | None = None
    tpm: int | None = None


@dataclass(frozen=True)
class CallResult:
    completion: Completion | None
    cached: bool
    error: ProviderError | None = None
    attempts: int = 0


class Caller:
    """Sends conversations to a provider under the limits; answers come from the cache when present."""

    def __init__(self, provider: Provider, limits: Limits, cache: ResponseCache | None = None):
        from aiolimiter import AsyncLimiter

        self.provider = provider
        self.limits = limits
        self.cache = cache
        self._semaphore = asyncio.Semaphore(limits.max_in_flight)
        self.capacity = limits.max_in_flight  # requests in flight at most (lowered to a local server's slots)
        self._slots_checked = False
        self._slots_lock = asyncio.Lock()
        self._timeouts_in_a_row = 0  # timeouts since the last answer, over all requests
        self._storm: TimeoutStormError | None = None
        self._rpm = AsyncLimiter(limits.rpm, 60) if limits.rpm else None
        self._tpm = AsyncLimiter(limits.tpm, 60) if limits.tpm else None
        self.errors: Counter[str] = Counter()  # every error seen, by kind, including retried ones
        self.sent = 0  # requests that went over the wire (retries included)
        self.cache_hits = 0

    def key(self, messages: Messages, params: dict[str, Any]) -> str:
        return cache_key(provider=self.provider.name, model=self.provider.model, messages=messages, params=params)

    async def call(
        self, messages: Messages, params: dict[str, Any], *, bypass_cache: bool = False, max_tokens: int | None = None
    ) -> CallResult:
        """Answer ``messages``; ``params`` are the content-shaping settings (temperature, seed, response_format).

        ``max_tokens`` lowers the configured limit for this call (a limit: not part of the cache key).
        """
        key = self.key(messages, params)
        if self.cache is not None and not bypass_cache:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return CallResult(hit, cached=True)
        attempts = 0
        try:
            completion, attempts = await self._with_retries(messages, params, max_tokens or self.limits.max_tokens)
        except ProviderError as exc:
            return CallResult(None, cached=False, error=exc, attempts=attempts or self.limits.max_retries + 1)
        if self.cache is not None:
            self.cache.put(key, completion)
        return CallResult(completion, cached=False, attempts=attempts)

    async def _with_retries(
        self, messages: Messages, params: dict[str, Any], max_tokens: int
    ) -> tuple[Completion, int]:
        return await self._retrying(lambda: self._send(messages, params, max_tokens))

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """A plain JSON POST to the provider's server (e.g. ``/completions`` with ``echo`` for log-likelihoods)
        under the same in-flight bound, rate limits, retries and error counts as ``call``; never cached.

        Raises :class:`ProviderError` when the retries are spent.
        """

        async def send() -> dict[str, Any]:
            await self._check_server_slots()
            async with self._semaphore:
                if self._rpm is not None:
                    await self._rpm.acquire()
                post = self.provider.post_json(path, body, timeout=self.limits.timeout_s)  # type: ignore[attr-defined]
                return await self._over_the_wire(post)

        answer, _ = await self._retrying(send)
        return answer

    async def _retrying(self, send: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        """``send()`` with retries: the first attempt goes out directly (nearly every request needs no retry,
        and tenacity's loop costs ~0.1 ms CPU per request: a tenth of the engine's per-sample budget); a
        retryable failure enters tenacity as its attempt 1, so waits, stops and counts are tenacity's."""
        try:
            return await send(), 1
        except ProviderError as exc:
            if not exc.retryable:
                raise
            first_failure = exc
        return await self._retry_after(first_failure, send)

    async def _retry_after(self, first_failure: ProviderError, send: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                if attempt.retry_state.attempt_number == 1:
                    raise first_failure  # already sent: tenacity waits before attempt 2 as for any failure
                answer = await send()
        return answer, attempt.retry_state.attempt_number

    def _wait(self, retry_state: Any) -> float:
        """Retry-After when the server gave one, else exponential backoff with jitter."""
        from tenacity import wait_exponential_jitter

        exc = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(exc, ProviderError) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER_S)
        backoff = wait_exponential_jitter(
            initial=self.limits.backoff_initial_s, max=self.limits.backoff_max_s, jitter=self.limits.backoff_initial_s
        )
        return float(backoff(retry_state))

    async def _send(self, messages: Messages, params: dict[str, Any], max_tokens: int) -> Completion:
        await self._check_server_slots()
        async with self._semaphore:
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                estimate = estimate_tokens(messages) + max_tokens
                await self._tpm.acquire(min(estimate, self.limits.tpm or estimate))
            request = self.provider.complete(messages, max_tokens=max_tokens, timeout=self.limits.timeout_s, **params)
            return await self._over_the_wire(request)

    async def _over_the_wire(self, request: Awaitable[T]) -> T:
        """Send one request (counted, its error too), watching for a timeout storm."""
        if self._storm is not None:  # stopped: nothing more goes out (close the coroutine never awaited)
            getattr(request, "close", lambda: None)()
            raise self._storm_error()
        self.sent += 1
        try:
            answer = await request
        except ProviderError as exc:
            self.errors[exc.kind] += 1
            if exc.kind == "timeout":
                self._count_timeout()
            raise
        self._timeouts_in_a_row = 0
        return answer

    def _count_timeout(self) -> None:
        self._timeouts_in_a_row += 1
        if self._storm is None and self._timeouts_in_a_row >= max(STORM_MIN, STORM_ROUNDS * self.capacity):
            self._storm = TimeoutStormError(
                f"{self._timeouts_in_a_row} requests in a row timed out after {self.limits.timeout_s:g} s with"
                f" up to {self.capacity} in flight, and none was answered: the server does not answer in time",
                field="max_in_flight, timeout_s",
                fix=self._storm_fix(),
            )
        if self._storm is not None:
            raise self._storm_error()

    def _storm_fix(self) -> str:
        longer = "raise timeout_s to the time of a whole answer, or lower max_tokens"
        if self.capacity < self.limits.max_in_flight or self.capacity == 1:  # in flight is as low as it goes
            return f"{longer} (max_in_flight is already {self.capacity}, what the server runs at once)"
        return (
            "lower max_in_flight to the requests the server runs at once (llama.cpp --parallel, Ollama"
            f" OLLAMA_NUM_PARALLEL), or {longer}"
        )

    def _storm_error(self) -> TimeoutStormError:
        """A fresh copy for each request that meets the stop (one exception object raised in many tasks would
        pile their tracebacks onto one another)."""
        assert self._storm is not None
        storm = self._storm
        return TimeoutStormError(storm.message, field=storm.field, fix=storm.fix)

    async def _check_server_slots(self) -> None:
        """Once, before the first request: cap the requests in flight at the slots a local server reports."""
        if self._slots_checked:
            return
        async with self._slots_lock:
            if self._slots_checked:
                return
            probe = getattr(self.provider, "server_slots", None)
            slots = await probe() if callable(probe) else None
            if isinstance(slots, int) and 0 < slots < self.capacity:
                log.warning(
                    "the server reports %d slot%s: sending at most %d request%s at once (max_in_flight %d)",
                    slots, "" if slots == 1 else "s", slots, "" if slots == 1 else "s", self.capacity,
                )  # fmt: skip
                self.capacity = slots
                self._semaphore = asyncio.Semaphore(slots)  # no request holds the old one yet: all wait here
            self._slots_checked = True


def estimate_tokens(messages: Messages) -> int:
    """About 4 characters per token: enough for rate limits and cost estimates."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)
