"""The evaluate stage's Python API: ``evaluate`` (one or more targets: base models, runs, endpoints).

from sectune.config import load_config
from sectune.api import evaluate
cfg = load_config("configs/eval-smoke.yaml")
evaluate(cfg, ["smollm2-135m", "runs/lora"], "runs/lora-eval", dataset="runs/dataset")
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.progress import track
from sectune.runs import atomic_output_dir, write_run_metadata

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

Target = str | Path


def evaluate(
    cfg: ExperimentConfig,
    target: Target | Sequence[Target],
    out: str | Path,
    *,
    dataset: str | Path | None = None,
    overwrite: bool = False,
) -> Path:
    """Evaluate one or more targets (base + adapters…) and write ``out`` (summary.json, predictions/).

    Each target is a registry key, an HF folder, a train run, a PEFT adapter folder or an http(s) endpoint.
    With ``dataset`` the held-out generation metrics run on its test split; MCQ benchmarks come from
    ``cfg.eval.benchmarks``. Every adapter is checked to change the logits before anything is scored.
    """
    from sectune.evaluate.targets import target_label

    targets = [target] if isinstance(target, (str, Path)) else list(target)
    if not targets:
        raise UserError("nothing to evaluate", field="target", fix="pass a model, run folder or endpoint")
    _check_inputs_early(cfg, dataset, targets)  # a bad benchmark or dataset fails before any model is loaded
    used: set[str] = set()
    labelled = [(target_label(t, used), t) for t in targets]
    with (
        atomic_output_dir(out, overwrite=overwrite) as tmp,
        track("eval", len(labelled), unit="targets", show_rate=False) as progress,
    ):
        results = {}
        for done, (label, t) in enumerate(labelled):
            progress.update(done, note=f"{label}: loading and scoring")
            results[label] = evaluate_target(cfg, t, dataset=dataset, out=tmp, label=label)
        progress.update(len(labelled), note="judging" if cfg.eval.judge.enabled and dataset is not None else "")
        if cfg.eval.judge.enabled and dataset is not None:
            _judge_all(cfg, results, tmp)
        summary = {
            "targets": results,
            "order": [label for label, _ in labelled],  # the first is the baseline of pairwise judging
            "dataset": str(dataset) if dataset else None,
            "seed": cfg.seed,
        }
        write_run_metadata(tmp, cfg, summary)
        plot_weak_spots(results, tmp / WEAK_SPOTS_PLOT)
    return Path(out)


WEAK_SPOTS_PLOT = "weak_spots.png"


def weak_spot_panels(results: dict[str, Any]) -> list[tuple[str, dict[str, list[dict[str, Any]]]]]:
    """The breakdowns worth a picture: each held-out dimension's first metric (ROUGE-L unless it was not
    computed) and each benchmark's first method by category; one series per target."""
    panels: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, result in results.items():
        for dimension, metrics in ((result.get("generation") or {}).get("breakdown") or {}).items():
            metric, groups = next(iter(metrics.items()))
            panels.setdefault(f"held-out {metric} by {dimension}", {})[label] = groups
        for bench, scored in (result.get("mcq") or {}).items():
            method, data = next(iter(scored["methods"].items()))
            if data.get("by_category"):
                panels.setdefault(f"{bench} {method} accuracy by category", {})[label] = data["by_category"]
    return [(f"{title} (worst first, 95 % intervals)", series) for title, series in panels.items()]


def plot_weak_spots(results: dict[str, Any], path: Path) -> bool:
    """Write ``weak_spots.png`` when any result has a breakdown; False when there was nothing to plot."""
    from sectune.evaluate.breakdown import plot_breakdowns

    return plot_breakdowns(weak_spot_panels(results), path)


def _check_inputs_early(cfg: ExperimentConfig, dataset: str | Path | None, targets: Sequence[Target] = ()) -> None:
    from sectune.evaluate.heldout import load_examples
    from sectune.evaluate.mcq import load_benchmark
    from sectune.evaluate.targets import check_target

    for target in targets:  # every target, before the first one is loaded: a typo in the last fails at once
        check_target(target)
        _check_hosted_run(cfg, dataset, target)

    for ref in cfg.eval.benchmarks:
        load_benchmark(ref, limit=cfg.eval.max_questions)
    if dataset is not None:
        load_examples(dataset, limit=cfg.eval.max_examples)


def _check_hosted_run(cfg: ExperimentConfig, dataset: str | Path | None, target: Target) -> None:
    """A hosted run without weights is asked at its chat endpoint: held-out generations only."""
    from sectune.evaluate.targets import hosted_target

    hosted = hosted_target(target)
    if hosted is None:
        return
    if cfg.eval.benchmarks:
        raise UserError(
            f"this run's model stays at {hosted.backend} ({hosted.model}); its chat endpoint gives no token "
            "log-likelihoods, so MCQ benchmarks cannot be scored",
            file=target,
            field="eval.benchmarks",
            fix="evaluate it on held-out generations only: --dataset DIR --set eval.benchmarks=[]",
        )
    if dataset is None:
        raise UserError(
            f"this run's model stays at {hosted.backend}: it is evaluated on held-out generations",
            file=target,
            field="--dataset",
            fix="pass --dataset DIR (the prepared dataset it trained on)",
        )


def evaluate_target(
    cfg: ExperimentConfig, target: Target, *, dataset: str | Path | None, out: Path, label: str
) -> dict[str, Any]:
    """All configured measurements for one target; predictions go to ``out/predictions/<label>.jsonl``."""
    from sectune.evaluate.targets import hosted_target, is_endpoint

    if is_endpoint(target):
        return _evaluate_endpoint(cfg, str(target), dataset=dataset, out=out, label=label)
    hosted = hosted_target(target)
    if hosted is not None:  # the provider keeps the weights: ask its endpoint for the run's model
        _check_hosted_run(cfg, dataset, target)
        result = _evaluate_endpoint(
            cfg, hosted.url, dataset=dataset, out=out, label=label, model=hosted.model, key_env=hosted.key_env
        )
        return {**result, "target": str(target), "kind": "hosted", "backend": hosted.backend, "model": hosted.model}
    return _evaluate_local(cfg, target, dataset=dataset, out=out, label=label)


def _evaluate_local(
    cfg: ExperimentConfig, target: Target, *, dataset: str | Path | None, out: Path, label: str
) -> dict[str, Any]:
    import gc

    from sectune.evaluate import heldout
    from sectune.evaluate.metrics import reference_perplexity
    from sectune.evaluate.targets import check_adapter_changes_logits, load_target, resolve_dtype

    started = time.perf_counter()
    model, tokenizer = load_target(target, dtype=resolve_dtype(cfg.eval.dtype))
    result: dict[str, Any] = {"target": str(target), "kind": "local"}
    result["adapter_logit_change"] = check_adapter_changes_logits(model, tokenizer, target)
    if dataset is not None:
        examples = heldout.load_examples(dataset, limit=cfg.eval.max_examples)
        gen_started = time.perf_counter()
        outputs = heldout.generate_local(model, tokenizer, examples, cfg.eval, cfg.seed, label=label)
        seconds = time.perf_counter() - gen_started
        result["generation"], row_scores = _generation_result(cfg, examples, outputs, tokenizer, seconds)
        if "perplexity" in cfg.eval.metrics:
            refs = [ex.reference for ex in examples]
            ppl = reference_perplexity(
                model, tokenizer, [ex.prompt for ex in examples], refs, batch_size=cfg.eval.batch_size
            )
            result["generation"]["perplexity"] = {"value": ppl["perplexity"], "answer_tokens": ppl["answer_tokens"]}
        _write_predictions(out, label, examples, outputs, row_scores)
    result["mcq"] = _score_benchmarks(cfg, model, tokenizer, label)
    result["seconds"] = time.perf_counter() - started
    del model
    gc.collect()
    return result


def _evaluate_endpoint(
    cfg: ExperimentConfig,
    url: str,
    *,
    dataset: str | Path | None,
    out: Path,
    label: str,
    model: str | None = None,
    key_env: str | None = None,
) -> dict[str, Any]:
    """``model`` (default eval.endpoint_model) at ``url``; the key from ``key_env`` (default OPENAI_API_KEY)."""
    from sectune.evaluate import heldout

    model = model or cfg.eval.endpoint_model
    if not model:
        raise UserError(
            "an endpoint target needs a model name",
            field="eval.endpoint_model",
            fix="pass --set eval.endpoint_model=NAME (the model the server serves)",
        )
    scores_mcq = bool(cfg.eval.benchmarks and cfg.eval.endpoint_tokenizer)
    if dataset is None and not scores_mcq:
        raise UserError(
            "an endpoint is evaluated on held-out generations (--dataset) or on MCQ benchmarks through its "
            "/v1/completions, which needs the served model's tokenizer",
            field="eval.endpoint_tokenizer",
            fix="pass --dataset DIR, or --set eval.endpoint_tokenizer=MODEL (registry key, folder or train run)",
        )
    result: dict[str, Any] = {"target": url, "kind": "endpoint", "mcq": {}}
    started = time.perf_counter()
    if dataset is not None:
        examples = heldout.load_examples(dataset, limit=cfg.eval.max_examples)
        outputs = heldout.generate_endpoint(url, model, examples, cfg.eval, cfg.seed, api_key_env=key_env)
        result["generation"], row_scores = _generation_result(
            cfg, examples, outputs, None, time.perf_counter() - started
        )
        _write_predictions(out, label, examples, outputs, row_scores)
    if scores_mcq:
        result["mcq"] = _score_endpoint_benchmarks(cfg, url, label)
    result["seconds"] = time.perf_counter() - started
    return result


def _score_endpoint_benchmarks(cfg: ExperimentConfig, url: str, label: str) -> dict[str, Any]:
    """MCQ log-likelihood scoring through the server: the same prompts and candidates as in process."""
    from sectune.evaluate.targets import load_target_tokenizer
    from sectune.llm.scoring import EndpointScorer

    assert cfg.eval.endpoint_model and cfg.eval.endpoint_tokenizer
    methods = [m for m in cfg.eval.mcq_scoring if m != "generate"]
    if not methods:
        raise UserError(
            "an endpoint's MCQ scores come from log-likelihoods",
            field="eval.mcq_scoring",
            fix="use letter and/or option scoring for an endpoint target",
        )
    scorer = EndpointScorer(
        url,
        cfg.eval.endpoint_model,
        max_in_flight=cfg.eval.endpoint_max_in_flight,
        max_retries=cfg.eval.endpoint_max_retries,
    )
    tokenizer = load_target_tokenizer(cfg.eval.endpoint_tokenizer)
    return _score_benchmarks(cfg, scorer, tokenizer, label, methods=methods)


def _generation_result(
    cfg: ExperimentConfig, examples: list, outputs: list, tokenizer: Any, seconds: float
) -> tuple[dict[str, Any], list[dict[str, float]]]:
    """Reference metrics over the answers that came back (failed requests are excluded and counted), and each
    row's own scores (empty for a failed row), for the predictions file."""
    from sectune.evaluate import heldout

    failed = [o.finish_reason.startswith("error") for o in outputs]
    kept = [(ex, o) for ex, o, bad in zip(examples, outputs, failed, strict=True) if not bad]
    texts = [o.text for _, o in kept]
    encoder = _encoder(cfg) if "embedding" in cfg.eval.metrics and kept else None
    scored = heldout.score_generations(
        [ex for ex, _ in kept],
        texts,
        cfg.eval.metrics,
        encoder=encoder,
        tokenizer=tokenizer,
        samples=cfg.eval.bootstrap_samples,
        seed=cfg.seed,
    )
    scored["examples"] = len(kept)
    scored["failed_requests"] = len(outputs) - len(kept)
    scored["cut_at_max_tokens_rate"] = sum(o.finish_reason == "length" for _, o in kept) / max(len(kept), 1)
    scored["seconds"] = seconds
    per_row = scored.pop("per_row")
    scores = iter([{name: values[i] for name, values in per_row.items()} for i in range(len(kept))])
    return scored, [{} if bad else next(scores) for bad in failed]


_ENCODERS: dict[str, Any] = {}


def _encoder(cfg: ExperimentConfig) -> Any:
    from sectune.evaluate.metrics import sentence_encoder

    key = cfg.eval.embedding_model or "default"
    if key not in _ENCODERS:
        _ENCODERS[key] = sentence_encoder(cfg.eval.embedding_model)
    return _ENCODERS[key]


def _score_benchmarks(
    cfg: ExperimentConfig, model: Any, tokenizer: Any, label: str = "model", *, methods: list | None = None
) -> dict[str, Any]:
    from sectune.evaluate.mcq import load_benchmark, score_benchmark

    results = {}
    for ref in cfg.eval.benchmarks:
        bench = load_benchmark(ref, limit=cfg.eval.max_questions)
        started = time.perf_counter()
        scored = score_benchmark(
            model,
            tokenizer,
            bench,
            methods=methods or cfg.eval.mcq_scoring,
            rotations=cfg.eval.rotations,
            batch_size=cfg.eval.batch_size,
            samples=cfg.eval.bootstrap_samples,
            seed=cfg.seed,
            progress=f"eval {label}: {bench.name}",
        )
        seconds = time.perf_counter() - started
        scored["seconds"] = seconds
        scored["questions_per_s"] = len(bench.questions) / seconds if seconds else None
        results[bench.name] = scored
    return results


def _write_predictions(out: Path, label: str, examples: list, outputs: list, scores: list[dict[str, float]]) -> None:
    """One line per held-out row: prompt, reference, prediction, the row's own scores and its ``meta`` (topic,
    domain type): what the study pairs between two evaluations of the same test split, row by row."""
    from sectune.data.jsonl import write_jsonl

    folder = out / "predictions"
    folder.mkdir(exist_ok=True)
    rows = (
        {
            "messages": example.prompt,
            "reference": example.reference,
            "prediction": output.text,
            "finish_reason": output.finish_reason,
            "scores": row_scores,
            "meta": example.meta,
        }
        for example, output, row_scores in zip(examples, outputs, scores, strict=True)
    )
    write_jsonl(folder / f"{label}.jsonl", rows)


def _judge_all(cfg: ExperimentConfig, results: dict[str, Any], out: Path) -> None:
    """Absolute scores for every target; pairwise first target (baseline) vs each other target.

    Rows whose generation request failed (``finish_reason: "error:<kind>"``, an empty prediction) are left out
    of judging as they are of the generation metrics, and counted (``skipped_failed``).
    """
    from sectune.llm.judge import Judge, judge_absolute_predictions, judge_pairwise_predictions, run_judge

    labels = list(results)
    rows = {
        label: _read_predictions(out, label) for label in labels if (out / "predictions" / f"{label}.jsonl").is_file()
    }
    if not rows:
        return
    first = rows[labels[0]]

    async def work(judge: Judge) -> None:
        for label, predictions in rows.items():
            if cfg.eval.judge.absolute:
                results[label]["judge_absolute"] = await judge_absolute_predictions(judge, predictions)
            if cfg.eval.judge.pairwise and label != labels[0]:
                results[label]["judge_pairwise_vs_" + labels[0]] = await judge_pairwise_predictions(
                    judge, first, predictions
                )

    run_judge(cfg.eval.judge, work)


def _read_predictions(out: Path, label: str) -> list[dict[str, Any]]:
    from sectune.data.jsonl import read_jsonl

    return read_jsonl(out / "predictions" / f"{label}.jsonl")
