"""Config of hosted fine-tuning (``train.backend`` other than ``local``, settings in ``train.hosted``).

The same experiment trains locally or on a hosted service: ``train.backend`` picks where, and ``train.hosted``
holds the few settings only a hosted service has. API keys are never part of a config: they come from the
environment or ``.env`` (PREDIBASE_API_TOKEN, OPENAI_API_KEY, TOGETHER_API_KEY). What each service can and
cannot do is checked one floor up (``sectune.train.hosted``), before anything is uploaded.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sectune.config.base import StrictModel

Backend = Literal["local", "predibase", "openai", "together"]


class HostedConfig(StrictModel):
    # The service's own name of the base model; None: sectune's table for the registry key in `model`.
    base_model: str | None = Field(None, min_length=1)
    base_url: str | None = Field(None, min_length=1)  # the service's API (None: its usual address or env variable)
    poll_s: float = Field(10.0, gt=0)  # seconds between two looks at the job
    timeout_s: float | None = Field(86_400.0, gt=0)  # stop following (exit 1, job left running) after this; None: never
    # OpenAI takes a multiplier of its own default learning rate, not train.learning_rate
    learning_rate_multiplier: float | Literal["auto"] = "auto"
    # the result's name (OpenAI/Together suffix, Predibase repo); None: the experiment's name
    suffix: str | None = Field(None, min_length=1, max_length=40)
