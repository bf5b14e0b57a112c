"""Log-likelihoods from an OpenAI-compatible server: ``/v1/completions`` with ``echo`` and ``logprobs``.

The request is the one lm-evaluation-harness's ``local-completions`` model sends (token-id prompt, ``echo``,
``max_tokens: 1``, ``logprobs: 1``, temperature 0), which sectune serve, vLLM and other servers answer: the
echoed prompt's ``token_logprobs`` hold the log-probability of every prompt token after the first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from sectune.errors import UserError
from sectune.llm.base import ProviderError


class EndpointScorer:
    """Per (token ids, prompt length), the log-probs of the ids after the prompt, as a server computes them."""

    def __init__(
        self, url: str, model: str, *, max_in_flight: int = 8, max_retries: int = 5, timeout_s: float = 120.0
    ) -> None:
        self.url, self.model = url, model
        self.max_in_flight, self.max_retries, self.timeout_s = max_in_flight, max_retries, timeout_s
        self.requests = 0

    def continuations(self, sequences: Sequence[tuple[list[int], int]]) -> list[list[float]]:
        return asyncio.run(self._all(sequences))

    async def _all(self, sequences: Sequence[tuple[list[int], int]]) -> list[list[float]]:
        from sectune.llm.factory import get_provider
        from sectune.llm.requests import Caller, Limits

        provider = get_provider("openai", model=self.model, base_url=self.url, timeout=self.timeout_s)
        limits = Limits(max_retries=self.max_retries, max_in_flight=self.max_in_flight, timeout_s=self.timeout_s)
        caller = Caller(provider, limits)
        try:
            return await asyncio.gather(*(self._one(caller, ids, n) for ids, n in sequences))
        finally:
            await provider.aclose()

    async def _one(self, caller: Any, ids: list[int], prompt_len: int) -> list[float]:
        body = {"model": self.model, "prompt": ids, "max_tokens": 1, "echo": True, "logprobs": 1, "temperature": 0}
        self.requests += 1
        try:
            answer = await caller.post("/completions", body)
        except ProviderError as exc:
            raise UserError(
                f"log-likelihood request failed ({exc.kind}): {exc}".splitlines()[0],
                field=self.url,
                fix="check that the server is up and answers /v1/completions with echo and logprobs",
            ) from None
        return _echoed_logprobs(answer, ids, prompt_len, self.url)


def _echoed_logprobs(answer: Any, ids: list[int], prompt_len: int, url: str) -> list[float]:
    try:
        values = answer["choices"][0]["logprobs"]["token_logprobs"]
    except (KeyError, IndexError, TypeError):
        values = None
    if not isinstance(values, list) or len(values) < len(ids):
        raise UserError(
            "the server's answer has no echoed prompt logprobs",
            field=url,
            fix="score through a server that supports echo with logprobs on /v1/completions (sectune serve, vLLM)",
        )
    return [float(v) for v in values[prompt_len : len(ids)]]
