"""LLM providers behind one small interface.

    from sectune.llm import get_provider
    provider = get_provider("openai", model="gpt-4o-mini")            # OPENAI_BASE_URL / OPENAI_API_KEY honoured
    completion = await provider.complete([{"role": "user", "content": "hi"}], max_tokens=64)
    completion.text, completion.finish_reason, completion.prompt_tokens, completion.completion_tokens

Providers: ``openai`` (any OpenAI-compatible server through the official client), ``anthropic`` (native SDK),
``litellm`` (optional extra) and ``local`` (a transformers model in process, default the embedded model).
Every provider raises :class:`ProviderError` with a ``kind`` ("rate_limit", "server_error", "timeout",
"connection", "auth", "bad_request", ...) and ``retryable`` so the engine can decide what to retry.

Every stage sends its requests through the request layer on top: :mod:`sectune.llm.requests` (``Caller``:
limits, retries, the cache), :mod:`sectune.llm.cache` (the one response cache) and :mod:`sectune.llm.judge`
(the one LLM judge).
"""

from __future__ import annotations

from sectune.llm.base import Completion, Provider, ProviderError
from sectune.llm.factory import PROVIDERS, get_provider

__all__ = ["PROVIDERS", "Completion", "Provider", "ProviderError", "get_provider"]
