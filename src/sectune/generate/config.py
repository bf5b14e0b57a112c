"""Config of the generate stage (owned by sectune.generate)."""

from __future__ import annotations

from sectune.schema import StrictModel


class GenerateConfig(StrictModel):
    provider: str = "local"
    model: str | None = None
    num_samples: int = 20
