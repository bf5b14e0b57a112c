"""Held-out generation: read a dataset's test split, answer each prompt, score against the references."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.errors import UserError
from sectune.evaluate import metrics
from sectune.evaluate.stats import mean_with_interval

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Example:
    prompt: Messages  # every turn before the last assistant answer
    reference: str  # the last assistant answer


def load_examples(dataset: str | Path, *, limit: int | None = None) -> list[Example]:
    """The test split of a dataset folder (``test.jsonl``) or a JSONL file of canonical rows."""
    path = Path(dataset)
    file = path / "test.jsonl" if path.is_dir() else path
    if not file.is_file():
        raise UserError("no test split found", file=file, fix="pass a dataset folder from sectune prep or a JSONL file")
    examples = []
    with file.open(encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            examples.append(_example(line, file, line_no))
            if limit is not None and len(examples) >= limit:
                break
    if not examples:
        raise UserError("the test split is empty", file=file, fix="re-run sectune prep with a test fraction above 0")
    return examples


def _example(line: str, file: Path, line_no: int) -> Example:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON: {exc.msg}", file=file, field=f"line {line_no}", fix="fix the row") from None
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages or messages[-1].get("role") != "assistant":
        raise UserError(
            "a test row must end with an assistant answer",
            file=file,
            field=f"line {line_no}.messages",
            fix='write {"messages": [..., {"role": "assistant", "content": "..."}]}',
        )
    return Example(prompt=messages[:-1], reference=str(messages[-1].get("content", "")))


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
    """The reference-based metrics named in ``wanted`` (perplexity is computed separately: it needs logits)."""
    refs = [ex.reference for ex in examples]
    result: dict[str, Any] = {}
    if "rouge_l" in wanted:
        result["rouge_l"] = mean_with_interval(metrics.rouge_l_scores(predictions, refs), samples=samples, seed=seed)
    if "chrf" in wanted:
        result["chrf"] = {"value": metrics.chrf(predictions, refs)}
    if "bleu" in wanted:
        result["bleu"] = {"value": metrics.bleu(predictions, refs)}
    if "embedding" in wanted and encoder is not None:
        sims = metrics.embedding_similarities(predictions, refs, encoder)
        result["embedding"] = mean_with_interval(sims, samples=samples, seed=seed)
    if "length" in wanted:
        result["length"] = metrics.answer_length(predictions, tokenizer)
        result["length"]["reference_mean_words"] = metrics.answer_length(refs)["mean_words"]
    return result


def generate_local(
    model: Any, tokenizer: Any, examples: Sequence[Example], eval_cfg: Any, seed: int, *, label: str = "model"
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


def generate_endpoint(url: str, model_name: str, examples: Sequence[Example], eval_cfg: Any, seed: int) -> list[Any]:
    """Answers from an OpenAI-compatible endpoint through sectune's provider."""
    from sectune.llm import Completion, ProviderError, get_provider

    provider = get_provider("openai", model=model_name, base_url=url)

    async def run() -> list[Any]:
        semaphore = asyncio.Semaphore(8)

        async def one(example: Example) -> Any:
            async with semaphore:
                try:
                    return await provider.complete(
                        example.prompt, max_tokens=eval_cfg.max_new_tokens, temperature=0.0, seed=seed
                    )
                except ProviderError as exc:  # one failed request is excluded and counted, not a crash
                    return Completion(text="", finish_reason=f"error:{exc.kind}")

        try:
            return await asyncio.gather(*(one(ex) for ex in examples))
        finally:
            await provider.aclose()

    return asyncio.run(run())
