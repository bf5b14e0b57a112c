"""LiteLLM (optional extra ``sectune[litellm]``): imported only when chosen."""

from __future__ import annotations

import os
from typing import Any

from sectune.errors import UserError
from sectune.llm.base import Completion, Messages, ProviderError
from sectune.llm.keys import redact


class LiteLLMProvider:
    """Any model LiteLLM routes to, e.g. ``model: bedrock/...``; LiteLLM's own retries are off."""

    name = "litellm"
    supports_json = True

    def __init__(
        self, model: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        # Never let LiteLLM fetch its price map from the network at import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        try:
            import litellm
        except ImportError:
            raise UserError(
                "the litellm provider is an optional extra and is not installed",
                field="generate.provider",
                fix="pip install 'sectune[litellm]' (pinned past its compromised releases)",
            ) from None
        self._litellm = litellm
        self.model = model
        self._key = api_key
        self._base_url = base_url
        self._timeout = timeout

    async def complete(self, messages: Messages, **params: Any) -> Completion:
        request = {k: v for k, v in params.items() if v is not None and k in ("max_tokens", "temperature", "seed")}
        try:
            response = await self._litellm.acompletion(
                model=self.model,
                messages=messages,
                api_base=self._base_url,
                api_key=self._key,
                timeout=params.get("timeout") or self._timeout,
                num_retries=0,
                **request,
            )
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            kind = {429: "rate_limit"}.get(status or 0, "server_error" if (status or 0) >= 500 else "bad_request")
            if "timeout" in type(exc).__name__.lower():
                kind = "timeout"
            raise ProviderError(kind, redact(str(exc), self._key)[:300], status=status) from None
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        return Completion(
            text=choice.message.content or "",
            finish_reason=choice.finish_reason or "unknown",
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
            completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
        )

    async def aclose(self) -> None:
        return None
