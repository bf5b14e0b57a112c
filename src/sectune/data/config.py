"""Config of the prep stage (owned by sectune.data)."""

from __future__ import annotations

from sectune.schema import StrictModel


class PrepConfig(StrictModel):
    test_size: float = 0.1
    validation_size: float = 0.1
    max_length: int = 1024
