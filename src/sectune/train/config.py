"""Config of the train stage (owned by sectune.train)."""

from __future__ import annotations

from typing import Literal

from sectune.schema import StrictModel


class LoraConfig(StrictModel):
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | Literal["registry", "all-linear"] = "registry"


class TrainConfig(StrictModel):
    method: Literal["full", "lora", "qlora", "qlora-8bit"] = "lora"
    lora: LoraConfig = LoraConfig()
    learning_rate: float = 2e-4
    epochs: float = 3
    max_steps: int = -1
