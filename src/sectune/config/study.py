"""Config of the study stage (``study:``): the comparative study of models × training variants."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from sectune.config.base import StrictModel

Variant = Literal["base", "lora", "qlora", "full"]
ALL_VARIANTS: list[Variant] = ["base", "lora", "qlora", "full"]


class StudyConfig(StrictModel):
    """The comparative study: models × variants, each trained (or reused) then evaluated."""

    models: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)  # empty: the top-level ``model``
    variants: list[Variant] = Field(default_factory=lambda: list(ALL_VARIANTS), min_length=1)
    price_per_hour: float = Field(0.0, ge=0)  # hardware price (USD/hour) for the cost estimate; 0 on your own laptop
    reuse: bool = True  # reuse finished runs (summary.json present)
    # 1: after the matrix, generate samples for the weak topics of one trained variant, train it again with
    # them, evaluate again, and report per-topic before/after (sectune.study.loop). Uses the generate section.
    loop: int = Field(0, ge=0, le=1)
    loop_variant: Literal["lora", "qlora", "full"] | None = None  # default: the first trained variant
    # local: the cells one after another in this process; ray: each cell (train + evaluate one variant) a Ray
    # task, as many at once as the cluster's resources allow (needs sectune[ray]).
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None  # None: start a local Ray instance; "auto" or "ray://host:10001": join a cluster
    ray_num_cpus: float = Field(1.0, gt=0)  # CPUs per cell task (also its torch threads)
    ray_num_gpus: float = Field(0.0, ge=0)  # GPUs per cell task (fractions share a GPU)

    @field_validator("models", "variants")
    @classmethod
    def _no_repeats(cls, values: list[str]) -> list[str]:
        repeated = sorted({value for value in values if values.count(value) > 1})
        if repeated:  # two cells would share one run folder
            raise ValueError(f"lists {', '.join(map(repr, repeated))} more than once")
        return values
