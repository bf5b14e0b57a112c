"""The provider interface: one async ``complete`` returning a :class:`Completion`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

Messages = list[dict[str, str]]

# Error kinds worth retrying: the server or the network will likely answer next time.
RETRYABLE_KINDS = frozenset({"rate_limit", "server_error", "timeout", "connection"})


@dataclass(frozen=True)
class Completion:
    """One answer. ``finish_reason`` is "stop" when the model ended on its own; "length" means cut off."""

    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0


class ProviderError(Exception):
    """A failed request, classified so the engine can retry or count it."""

    def __init__(self, kind: str, message: str, *, retry_after: float | None = None, status: int | None = None):
        self.kind = kind
        self.retry_after = retry_after
        self.status = status
        super().__init__(f"{kind}: {message}")

    @property
    def retryable(self) -> bool:
        return self.kind in RETRYABLE_KINDS


@runtime_checkable
class Provider(Protocol):
    """What the engine and the judge need from a provider."""

    name: str
    model: str

    async def complete(self, messages: Messages, **params: Any) -> Completion:
        """Answer a conversation. ``params``: max_tokens, temperature, timeout, seed, response_format."""
        ...

    async def aclose(self) -> None:
        """Release connections or models."""
        ...

    @property
    def supports_json(self) -> bool:
        """Whether the provider can be asked for JSON output (the local 135M model cannot)."""
        ...
