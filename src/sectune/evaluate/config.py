"""Configs of the eval and study stages (owned by sectune.evaluate)."""

from __future__ import annotations

from sectune.schema import StrictModel


class EvalConfig(StrictModel):
    max_new_tokens: int = 128
    benchmarks: list[str] = []


class StudyConfig(StrictModel):
    models: list[str] = ["smollm2-135m"]
    variants: list[str] = ["base", "lora", "qlora", "full"]
