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
