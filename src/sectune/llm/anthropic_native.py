"""Anthropic's Messages API through the native SDK (optional extra ``sectune[anthropic]``)."""

from __future__ import annotations

from typing import Any

from sectune.errors import UserError
from sectune.llm.base import Completion, Messages, ProviderError
from sectune.llm.openai_compat import aiohttp_client, classify_sdk_error

# Anthropic's stop reasons in OpenAI's vocabulary, so one guard handles every provider.
STOP_REASONS = {"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length", "refusal": "content_filter"}


class AnthropicProvider:
    """Claude models; the system message goes in ``system`` as the API wants."""

    name = "anthropic"
    supports_json = True  # asked for in the prompt; parsed and repaired like any answer

    def __init__(
        self, model: str, *, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0
    ) -> None:
        try:
            import anthropic
        except ImportError:
            raise UserError(
                "the anthropic provider needs the anthropic SDK",
                field="generate.provider",
                fix="pip install 'sectune[anthropic]'",
            ) from None
        self.model = model
        self._key = api_key
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            timeout=timeout,
            max_retries=0,
            http_client=aiohttp_client(anthropic, timeout),
        )

    async def complete(self, messages: Messages, **params: Any) -> Completion:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        turns = [m for m in messages if m["role"] != "system"]
        request: dict[str, Any] = {"max_tokens": params.get("max_tokens") or 1024}
        if system:
            request["system"] = system
        if params.get("temperature") is not None:
            request["temperature"] = params["temperature"]
        if params.get("timeout") is not None:
            request["timeout"] = params["timeout"]
        try:
            response = await self._client.messages.create(
                model=self.model,
                messages=turns,  # type: ignore[arg-type]
                **request,
            )
        except Exception as exc:
            raise _classify(exc, self._key) from None
        text = "".join(getattr(block, "text", "") for block in response.content)
        return Completion(
            text=text,
            finish_reason=STOP_REASONS.get(response.stop_reason or "", response.stop_reason or "unknown"),
            prompt_tokens=response.usage.input_tokens,
            completion_tokens=response.usage.output_tokens,
        )

    async def aclose(self) -> None:
        await self._client.close()


def _classify(exc: Exception, key: str | None) -> ProviderError:
    import anthropic

    return classify_sdk_error(anthropic, exc, key)
