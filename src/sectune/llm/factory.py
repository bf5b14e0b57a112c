"""``get_provider``: one factory from a provider name to a provider object."""

from __future__ import annotations

import os
from typing import Any

from sectune.errors import UserError, unknown_name_error
from sectune.llm.base import Provider
from sectune.llm.keys import api_key_from_env, load_dotenv_once

PROVIDERS = ("local", "openai", "anthropic", "litellm")
DEFAULT_KEY_ENV = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY", "litellm": None, "local": None}


def get_provider(
    name: str = "local",
    *,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    timeout: float = 60.0,
    local_batch_size: int = 8,
    seed: int = 0,
) -> Provider:
    """Build a provider. Keys come only from the environment (or ``.env``), named by ``api_key_env``.

    ``openai`` honours ``OPENAI_BASE_URL`` like the official client when ``base_url`` is not given.
    ``local`` runs ``model`` (a registry key, HF folder or train run; default the embedded model) in process.
    """
    if name not in PROVIDERS:
        raise unknown_name_error("provider", name, PROVIDERS)
    load_dotenv_once()
    if name == "local":
        from sectune.llm.local import LocalProvider

        return LocalProvider(model or "smollm2-135m", batch_size=local_batch_size, seed=seed)
    if not model:
        raise UserError(
            f"provider '{name}' needs a model name", field="generate.model", fix="set e.g. generate.model=gpt-4o-mini"
        )
    key_env = api_key_env or DEFAULT_KEY_ENV[name]
    api_key = api_key_from_env(key_env) if key_env else None
    if name == "openai":
        from sectune.llm.openai_compat import OpenAIProvider

        return OpenAIProvider(
            model, base_url=base_url or os.environ.get("OPENAI_BASE_URL"), api_key=api_key, timeout=timeout
        )
    if name == "anthropic":
        from sectune.llm.anthropic_native import AnthropicProvider

        return AnthropicProvider(model, base_url=base_url, api_key=api_key, timeout=timeout)
    from sectune.llm.litellm_provider import LiteLLMProvider

    return LiteLLMProvider(model, base_url=base_url, api_key=api_key, timeout=timeout)


def provider_key(name: str, api_key_env: str | None = None) -> str | None:
    """The key provider ``name`` uses (from ``api_key_env`` or its usual variable), to scrub it from text."""
    key_env = api_key_env or DEFAULT_KEY_ENV.get(name)
    return api_key_from_env(key_env) if key_env else None


def provider_label(provider: Any) -> str:
    """ "openai:gpt-4o-mini" — safe to log (never contains a key)."""
    return f"{getattr(provider, 'name', type(provider).__name__)}:{getattr(provider, 'model', '?')}"
