"""Config of the study stage (``study:``): the comparative study of models × training variants."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sectune.config.base import StrictModel

Variant = Literal["base", "lora", "qlora", "full"]
ALL_VARIANTS: list[Variant] = ["base", "lora", "qlora", "full"]


class StudyConfig(StrictModel):
    """The comparative study: models × variants, each trained (or reused) then evaluated."""

    models: list[str] = Field(default_factory=list)  # empty: the top-level ``model``
    variants: list[Variant] = Field(default_factory=lambda: list(ALL_VARIANTS))
    price_per_hour: float = 0.0  # hardware price (USD/hour) for the cost estimate; 0 on your own laptop
    reuse: bool = True  # reuse finished runs (summary.json present)
