"""Config of the generate stage: topics, provider, engine limits, quality filters, outputs.

Fields marked "limit" (max_tokens, timeout_s, max_retries, in-flight and rate limits, budget) do not shape an
answer's content, so they are left out of the response cache key: changing them reuses every answer that
finished normally.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from sectune.config.base import StrictModel

DEFAULT_SYSTEM_PROMPT = (
    "You are a helpful, knowledgeable assistant and support expert in cybersecurity and IT support. "
    "Give precise, complete and user-friendly answers."
)
DEFAULT_ROOT = "Cybersecurity and IT support"

NonNegative = Annotated[float, Field(ge=0)]

EXPORT_FORMATS = ("jsonl", "csv", "xlsx", "parquet", "hf", "sharegpt", "alpaca")


class TopicsConfig(StrictModel):
    """Where the topics come from: an LLM-built tree/graph from ``root``, or a file (topics JSONL or xlsx)."""

    root: str = DEFAULT_ROOT
    system_prompt: str = "You are an expert who organises a domain into clear, distinct subtopics."
    degree: int = Field(3, ge=1, le=50)  # subtopics per node
    depth: int = Field(2, ge=0, le=6)  # levels below the root (0: the root alone)
    mode: Literal["tree", "graph"] = "tree"
    file: str | None = None  # a topics JSONL (from `sectune topics`) or a spreadsheet (Id, Domain Topic, ...)
    # A spreadsheet's rows and per-topic Samples Count (which replace num_samples): pick, scale, cap.
    sheet_rows: str | int | list[int | str] | None = None  # rows by Id: "1-20,25" or [1, 2, 5]; default all
    sheet_scale: float | None = Field(None, gt=0)  # × each count, rounded (a topic asking for any keeps ≥ 1)
    sheet_max_per_topic: int | None = Field(None, ge=1)  # at most this many samples per topic (after the scale)


class JudgeConfig(StrictModel):
    """Optional LLM-judge scoring 1–5; samples below ``threshold`` are rejected (reason judge_low).

    With provider, model, base_url and api_key_env all unset the generator judges its own samples. Otherwise
    the judge has its own provider: an unset ``base_url`` / ``api_key_env`` is that provider's default
    (OPENAI_BASE_URL / OPENAI_API_KEY…), never the generator's ``generate.base_url`` / ``generate.api_key_env``.
    """

    enabled: bool = False
    threshold: int = Field(3, ge=1, le=5)
    provider: str | None = None  # default: the generation provider
    model: str | None = None  # default: the generator's model when the provider is the generator's
    base_url: str | None = None  # the judge's server; default: its provider's (OPENAI_BASE_URL or api.openai.com)
    api_key_env: str | None = None  # NAME of the env variable with the judge's key (default OPENAI_API_KEY/...)


class QualityConfig(StrictModel):
    """Filters and deduplication; every rejection is counted by reason in summary.json."""

    dedup: bool = True
    near_duplicate_threshold: float = Field(0.8, gt=0, le=1)  # MinHash Jaccard estimate
    against: list[str] = []  # existing JSONL datasets: samples too close to their rows are rejected
    min_question_chars: int = Field(10, ge=0)
    min_answer_chars: int = Field(20, ge=0)
    max_answer_chars: int = Field(8000, ge=1)
    reject_refusals: bool = True
    judge: JudgeConfig = JudgeConfig()

    @model_validator(mode="after")
    def _answer_bounds_overlap(self) -> QualityConfig:
        if self.min_answer_chars > self.max_answer_chars:
            raise ValueError(
                f"min_answer_chars ({self.min_answer_chars}) is above max_answer_chars ({self.max_answer_chars}):"
                " every answer would be rejected"
            )
        return self


class FocusPlanConfig(StrictModel):
    """How ``generate.focus`` turns an evaluation's weakest topics into samples (the rule: docs/generate.md).

    Each topic scoring below the best one gets ``num_samples`` × its gap to the best ÷ the sum of the gaps
    (largest remainder rounding), then at least ``floor`` and at most ``cap``.
    """

    target: str | None = None  # the evaluation's target label; default: the last one it evaluated
    metric: Literal["rouge_l", "embedding"] = "rouge_l"  # the per-row held-out score the topics are ranked by
    floor: int = Field(1, ge=0)  # every weak topic gets at least this many samples
    cap: int | None = Field(None, ge=1)  # and at most this many (None: no cap)
    max_topics: int | None = Field(None, ge=1)  # only the N weakest topics (None: every topic below the best)
    min_rows: int = Field(1, ge=1)  # topics with fewer scored test rows are left out (too noisy to act on)


class GenerateConfig(StrictModel):
    provider: Literal["local", "openai", "anthropic", "litellm"] = "local"
    # provider model name; for "local" (a registry key or model folder) default the experiment's top-level model
    model: str | None = Field(None, min_length=1)
    base_url: str | None = None  # OpenAI-compatible servers; default OPENAI_BASE_URL or api.openai.com
    api_key_env: str | None = None  # NAME of the env variable holding the key (default OPENAI_API_KEY/...)
    num_samples: int = Field(20, ge=1)  # total; a topics spreadsheet's Samples Count overrides it
    system_prompt: str = DEFAULT_SYSTEM_PROMPT  # the system message of every generated sample
    instructions: str = ""  # extra guidance appended to every generation prompt
    temperature: float = Field(0.9, ge=0, le=2)
    # auto: JSON for remote providers; two_step for local (ask a question, then let the model answer it);
    # text: one request asking for "Question: … Answer: …" labelled text.
    output: Literal["auto", "json", "text", "two_step"] = "auto"
    # How JSON answers are asked of an OpenAI-compatible server: json_schema sends the sample schema (strict
    # structured output; JSON mode for the rest of the run after a server's 400), json_object is JSON mode.
    response_format: Literal["json_schema", "json_object"] = "json_schema"
    turns: int = Field(1, ge=1, le=8)  # user/assistant turns per sample: follow-ups build on the answer (JSON)
    topics: TopicsConfig = TopicsConfig()
    quality: QualityConfig = QualityConfig()
    # --- limits (not in the cache key) ---
    max_tokens: int = Field(512, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_retries: int = Field(5, ge=0)
    backoff_initial_s: float = Field(0.5, ge=0)
    backoff_max_s: float = Field(30.0, ge=0)
    max_in_flight: int = Field(16, ge=1)
    ramp_up_s: float = Field(0.2, ge=0)  # the first max_in_flight requests start spread over this time
    rpm: int | None = Field(None, ge=1)  # requests per minute
    tpm: int | None = Field(None, ge=1)  # tokens per minute (prompt estimate + max_tokens per request)
    max_requests_factor: float = Field(3.0, ge=1)  # stop after num_samples × this many answers
    budget_usd: float | None = Field(None, gt=0)  # stop cleanly (resumable) once this much is spent
    prices: dict[str, tuple[NonNegative, NonNegative]] = {}  # model → (input, output) USD per million tokens
    local_batch_size: int = Field(8, ge=1)
    cache_dir: str | None = None  # share a response cache between runs (default: inside the run folder)
    formats: list[Literal["jsonl", "csv", "xlsx", "parquet", "hf", "sharegpt", "alpaca"]] = ["jsonl", "csv"]
    # An evaluation folder (`sectune eval --dataset ...`): its weakest topics replace the topics of this run,
    # with more samples where the gap to the best topic is larger (generate.focus_plan).
    focus: str | None = Field(None, min_length=1)
    focus_plan: FocusPlanConfig = FocusPlanConfig()

    @model_validator(mode="after")
    def _backoff_grows(self) -> GenerateConfig:
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s:g}) is below backoff_initial_s ({self.backoff_initial_s:g})"
            )
        return self
