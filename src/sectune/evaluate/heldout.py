"""Held-out generation: read a dataset's test split, answer each prompt, score against the references."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.jsonl import JsonlError, iter_jsonl
from sectune.errors import UserError
from sectune.evaluate import metrics
from sectune.evaluate.stats import mean_with_interval

if TYPE_CHECKING:
    from sectune.config.evaluate import EvalConfig

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Example:
    prompt: Messages  # every turn before the last assistant answer
    reference: str  # the last assistant answer
    meta: dict[str, Any] = field(default_factory=dict, compare=False)  # the row's provenance (topic, domain type)


def load_examples(dataset: str | Path, *, limit: int | None = None) -> list[Example]:
    """The test split of a dataset folder (``test.jsonl``) or a JSONL file of canonical rows."""
    path = Path(dataset)
    file = path / "test.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise UserError("no test split found", file=file, fix="pass a dataset folder from sectune prep or a JSONL file")
    examples = []
    try:
        for line_no, row in iter_jsonl(file):  # read as it goes: ``limit`` rows of a large file cost little
            examples.append(_example(row, file, line_no))
            if limit is not None and len(examples) >= limit:
                break
    except JsonlError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=file, field=f"line {exc.line}", fix="fix the row") from None
    if not examples:
        raise UserError("the test split is empty", file=file, fix="re-run sectune prep with a test fraction above 0")
    return examples


def _example(row: Any, file: Path, line_no: int) -> Example:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        raise UserError(
            "a test row must end with an assistant answer",
            file=file,
            field=f"line {line_no}.messages",
            fix='write {"messages": [..., {"role": "assistant", "content": "..."}]}',
        )
    meta = row.get("meta") if isinstance(row.get("meta"), dict) else {}
    return Example(prompt=messages[:-1], reference=str(messages[-1].get("content", "")), meta=meta)


def score_generations(
    examples: Sequence[Example],
    predictions: Sequence[str],
    wanted: Sequence[str],
    *,
    encoder: Any = None,
    tokenizer: Any = None,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """The reference-based metrics named in ``wanted`` (perplexity is computed separately: it needs logits).

    ``per_row`` holds each row's ROUGE-L and embedding similarity (those computed), and ``breakdown`` the same
    scores by the rows' topic and domain type (``sectune.evaluate.breakdown``), worst first.
    """
    from sectune.evaluate.breakdown import meta_breakdown

    refs = [ex.reference for ex in examples]
    result: dict[str, Any] = {}
    per_row: dict[str, list[float]] = {}
    if "rouge_l" in wanted:
        per_row["rouge_l"] = metrics.rouge_l_scores(predictions, refs)
        result["rouge_l"] = mean_with_interval(per_row["rouge_l"], samples=samples, seed=seed)
    if "chrf" in wanted:
        result["chrf"] = {"value": metrics.chrf(predictions, refs)}
    if "bleu" in wanted:
        result["bleu"] = {"value": metrics.bleu(predictions, refs)}
    if "embedding" in wanted and encoder is not None:
        per_row["embedding"] = metrics.embedding_similarities(predictions, refs, encoder)
        result["embedding"] = mean_with_interval(per_row["embedding"], samples=samples, seed=seed)
    if "length" in wanted:
        result["length"] = metrics.answer_length(predictions, tokenizer)
        result["length"]["reference_mean_words"] = metrics.answer_length(refs)["mean_words"]
    result["per_row"] = per_row
    breakdown = meta_breakdown([ex.meta for ex in examples], per_row, samples=samples, seed=seed)
    if breakdown:
        result["breakdown"] = breakdown
    return result


def generate_local(
    model: Any, tokenizer: Any, examples: Sequence[Example], eval_cfg: EvalConfig, seed: int, *, label: str = "model"
) -> list[Any]:
    """Greedy answers from a local model, batched, with progress lines."""
    from sectune.models.generation import generate_chat

    return generate_chat(
        model,
        tokenizer,
        [ex.prompt for ex in examples],
        max_new_tokens=eval_cfg.max_new_tokens,
        batch_size=eval_cfg.batch_size,
        seed=seed,
        progress=f"eval {label}: held-out answers",
    )


def generate_endpoint(
    url: str,
    model_name: str,
    examples: Sequence[Example],
    eval_cfg: EvalConfig,
    seed: int,
    *,
    api_key_env: str | None = None,
) -> list[Any]:
    """Answers from an OpenAI-compatible endpoint through sectune's request layer (``sectune.llm.requests``).

    At most ``eval.endpoint_max_in_flight`` requests at once; rate limits, 5xx, timeouts and connection errors
    are retried up to ``eval.endpoint_max_retries`` times (backoff, Retry-After), as in generation. Not cached.
    """
    from sectune.llm import Completion, get_provider
    from sectune.llm.requests import Caller, Limits

    provider = get_provider("openai", model=model_name, base_url=url, api_key_env=api_key_env)
    limits = Limits(
        max_tokens=eval_cfg.max_new_tokens,
        max_retries=eval_cfg.endpoint_max_retries,
        max_in_flight=eval_cfg.endpoint_max_in_flight,
    )

    async def run() -> list[Any]:
        caller = Caller(provider, limits)

        async def one(example: Example) -> Any:
            result = await caller.call(example.prompt, {"temperature": 0.0, "seed": seed})
            if result.error is not None:  # one failed request is excluded and counted, not a crash
                return Completion(text="", finish_reason=f"error:{result.error.kind}")
            return result.completion

        try:
            return await asyncio.gather(*(one(ex) for ex in examples))
        finally:
            await provider.aclose()

    return asyncio.run(run())
