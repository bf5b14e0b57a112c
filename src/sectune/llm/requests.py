"""One place where LLM requests go out: bounded in flight, RPM/TPM limits, retries with backoff, the cache.

Generation, the LLM judge (every stage's) and endpoint evaluation all send their requests through
:class:`Caller`. Retries (tenacity) cover rate limits, 5xx, timeouts and connection errors, with exponential
backoff and jitter; a server's Retry-After is honoured. Every error seen is counted by kind, retried or not.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sectune.llm.base import Completion, Messages, Provider, ProviderError
from sectune.llm.cache import ResponseCache, cache_key

MAX_RETRY_AFTER_S = 120.0
T = TypeVar("T")


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
            async with self._semaphore:
                if self._rpm is not None:
                    await self._rpm.acquire()
                self.sent += 1
                try:
                    return await self.provider.post_json(path, body, timeout=self.limits.timeout_s)  # type: ignore[attr-defined]
                except ProviderError as exc:
                    self.errors[exc.kind] += 1
                    raise

        answer, _ = await self._retrying(send)
        return answer

    async def _retrying(self, send: Callable[[], Awaitable[T]]) -> tuple[T, int]:
        from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt

        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.limits.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(lambda exc: isinstance(exc, ProviderError) and exc.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
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
        async with self._semaphore:
            if self._rpm is not None:
                await self._rpm.acquire()
            if self._tpm is not None:
                estimate = estimate_tokens(messages) + max_tokens
                await self._tpm.acquire(min(estimate, self.limits.tpm or estimate))
            self.sent += 1
            try:
                return await self.provider.complete(
                    messages, max_tokens=max_tokens, timeout=self.limits.timeout_s, **params
                )
            except ProviderError as exc:
                self.errors[exc.kind] += 1
                raise


def estimate_tokens(messages: Messages) -> int:
    """About 4 characters per token: enough for rate limits and cost estimates."""
    return sum(len(m.get("content") or "") for m in messages) // 4 + 4 * len(messages)
