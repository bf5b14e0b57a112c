"""Config of ``sectune serve`` (``serve:``): where it listens and the limits every request is held to."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sectune.config.base import StrictModel


class ServeConfig(StrictModel):
    """An OpenAI-compatible server for one base model and its adapters."""

    host: str = Field("127.0.0.1", min_length=1)  # loopback by default: opening it to a network is a choice
    port: int = Field(8000, ge=0, le=65535)  # 0: any free port (printed at start)
    api_key_env: str = Field("SECTUNE_API_KEY", min_length=1)  # the variable holding the key; unset: no key needed
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on a GPU that has it, else fp32
    max_batch: int = Field(16, ge=1, le=256)  # requests decoded together
    batch_wait_ms: float = Field(5.0, ge=0, le=1000)  # how long the first request waits for company
    max_tokens_limit: int = Field(2048, ge=1)  # the most a request may ask for (max_tokens)
    max_body_bytes: int = Field(1_048_576, ge=1024)  # larger request bodies get 413
    max_stop: int = Field(4, ge=0, le=16)  # stop strings per request, as OpenAI allows
