"""Prices per million tokens, USD (input, output). Edit this table or pass ``generate.prices`` in a config.

Unknown models cost "unknown" (None), never zero; local models cost nothing.
Prices drift: check your provider's page before trusting a budget.
"""

from __future__ import annotations

from collections.abc import Mapping

PRICES_PER_MTOK: dict[str, tuple[float, float]] = {
    "gpt-4o": (2.50, 10.00),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "o4-mini": (1.10, 4.40),
    "claude-3-5-haiku-latest": (0.80, 4.00),
    "claude-sonnet-4-0": (3.00, 15.00),
    "claude-opus-4-0": (15.00, 75.00),
    "gemini-2.0-flash": (0.10, 0.40),
}


def price_for(
    provider: str, model: str, overrides: Mapping[str, tuple[float, float]] | None = None
) -> tuple[float, float] | None:
    """(input, output) USD per million tokens, or None when unknown."""
    if provider == "local":
        return (0.0, 0.0)
    table = {**PRICES_PER_MTOK, **(overrides or {})}
    if model in table:
        return tuple(table[model])  # type: ignore[return-value]
    bare = model.split("/")[-1]  # "openai/gpt-4o-mini" as LiteLLM writes it
    return tuple(table[bare]) if bare in table else None  # type: ignore[return-value]


def cost_usd(price: tuple[float, float] | None, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The cost of some tokens, or None when the price is unknown."""
    if price is None:
        return None
    return (prompt_tokens * price[0] + completion_tokens * price[1]) / 1_000_000


# Hosted fine-tuning: USD per million *training* tokens (tokens in the training file × epochs), from the providers'
# price pages (OpenAI's fine-tuning prices; Together's LoRA SFT price for models up to 16B). Used for the
# estimate of `sectune train --dry-run`; a provider missing here gets "unknown", never zero.
TRAINING_PRICES_PER_MTOK: dict[str, dict[str, float]] = {
    "openai": {
        "gpt-4o-mini": 3.00,
        "gpt-4o": 25.00,
        "gpt-4.1": 25.00,
        "gpt-4.1-mini": 5.00,
        "gpt-4.1-nano": 1.50,
        "gpt-3.5-turbo": 8.00,
    },
    "together": {
        "mistralai/Mistral-7B-Instruct-v0.2": 0.48,
        "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference": 0.48,
        "meta-llama/Meta-Llama-3-8B-Instruct": 0.48,
        "meta-llama/Llama-3.2-1B-Instruct": 0.48,
        "google/gemma-2-2b-it": 0.48,
        "Qwen/Qwen2.5-0.5B-Instruct": 0.48,
        "Qwen/Qwen2.5-1.5B-Instruct": 0.48,
    },
}


def training_price_for(provider: str, model: str) -> float | None:
    """USD per million training tokens for a provider's base model (a dated snapshot matches its family)."""
    table = TRAINING_PRICES_PER_MTOK.get(provider, {})
    if model in table:
        return table[model]
    family = max((name for name in table if model.startswith(name + "-")), key=len, default=None)
    return table[family] if family else None
