"""Evaluation: MCQ log-likelihood scoring against lm-evaluation-harness, and batched held-out generation.

MCQ: sectune's in-process scorer (``evaluate.mcq.option_scores``, ``letter`` and ``option`` modes) and
lm-eval (its own venv under ``ctx.cache``, driven by ``lm_eval_peer.py``) score the same embedded model
(SmolLM2-135M-Instruct, fp32, CPU), the same packaged questions (cyber-mini), with sectune's exact prompt and
continuation strings and the same batch size. Per mode: questions/s (target ≥ 2×) and whether both pick the
same option for every question. Only the scoring is timed (median of the repeats, after a warm-up); model
loads are not.

Held-out generation: ``evaluate.heldout.generate_local`` over the same rows in batches of ``eval.batch_size``
against one row at a time: answers/s (no fixed target; batching should win).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from sectune.bench.measure import BenchContext, Measure

AREA = "eval"
LM_EVAL_VERSION = "0.4.13"
BENCHMARK = "cyber-mini"  # packaged, single-answer, 4 options
METHODS = ("letter", "option")
BATCH_SIZE = 8  # sectune's eval.batch_size default
PEER_SCRIPT = Path(__file__).with_name("lm_eval_peer.py")
INSTALL_TIMEOUT_S = 1200
PEER_TIMEOUT_S = 900


@dataclass(frozen=True)
class Size:
    questions: int | None  # the first questions of the benchmark (None: all)
    repeats: int  # timed scoring passes (median), after an untimed warm-up
    heldout_rows: int
    max_new_tokens: int


# Sized so a default run of the area takes about 4 min on 2 cores (option scoring: ~0.4 questions/s a side).
FULL = Size(questions=16, repeats=1, heldout_rows=8, max_new_tokens=64)
QUICK = Size(questions=3, repeats=1, heldout_rows=2, max_new_tokens=8)


@dataclass(frozen=True)
class SectuneRun:
    seconds: float  # median over the repeats
    all_seconds: list[float]
    predictions: list[str]  # the predicted letter per question
    scores: list[dict[str, float]]


def run(ctx: BenchContext) -> list[Measure]:
    import torch

    from sectune.evaluate.mcq import load_benchmark
    from sectune.models.load import load_for_inference
    from sectune.registry.embedded import ensure_embedded_model

    size = QUICK if ctx.quick else FULL
    model_dir = ensure_embedded_model(quiet=True)
    model, tokenizer = load_for_inference(model_dir, dtype=torch.float32)
    questions = load_benchmark(BENCHMARK, limit=size.questions).questions
    ctx.say(f"eval: {len(questions)} {BENCHMARK} questions, sectune scoring ({', '.join(METHODS)})")
    ours = {method: _score_sectune(model, tokenizer, questions, method, size.repeats) for method in METHODS}
    peer = _run_peer(ctx, model_dir, tokenizer, questions, size)
    measures = [m for method in METHODS for m in _mcq_measures(method, len(questions), ours[method], peer)]
    ctx.say(f"eval: held-out generation, {size.heldout_rows} rows batched and one at a time")
    measures.append(_heldout_measure(ctx, model, tokenizer, questions, size))
    return measures


# ---------------------------------------------------------------- sectune's MCQ scorer


def _score_sectune(model: Any, tokenizer: Any, questions: list[Any], method: str, repeats: int) -> SectuneRun:
    """Time ``option_scores`` (tokenising, forward passes, log-softmax) after one untimed warm-up batch."""
    from sectune.evaluate.mcq import option_scores, predict

    option_scores(model, tokenizer, questions[:2], method, multi=False, batch_size=BATCH_SIZE)
    times, scores = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        scores = option_scores(model, tokenizer, questions, method, multi=False, batch_size=BATCH_SIZE)
        times.append(time.perf_counter() - started)
    predictions = ["".join(sorted(predict(s, method, multi=False))) for s in scores]
    return SectuneRun(statistics.median(times), times, predictions, scores)


def _peer_docs(tokenizer: Any, questions: list[Any], method: str) -> list[dict[str, Any]]:
    """lm-eval's docs: sectune's rendered prompt, its continuation strings, the gold index, token counts."""
    from sectune.evaluate.mcq import _candidates, prompt_and_prefix

    docs = []
    for question in questions:
        prompt, prefix = prompt_and_prefix(tokenizer, question)
        candidates = _candidates(question, method, multi=False, prefix=prefix)
        letters = [letter for letter, _ in candidates]
        docs.append(
            {
                "prompt": prompt,
                "choices": [text for _, text in candidates],
                "letters": letters,
                "target": letters.index(next(iter(question.answers))),
                "tokens": [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for _, text in candidates],
            }
        )
    return docs


# ---------------------------------------------------------------- lm-evaluation-harness in its own venv


def _pins() -> list[str]:
    """lm-eval pinned, with sectune's torch and transformers so that both sides run the same kernels."""

    def base(name: str) -> str:
        return metadata.version(name).split("+")[0]

    # the [hf] extra brings accelerate and peft, which lm_eval.models.huggingface imports
    return [f"lm-eval[hf]=={LM_EVAL_VERSION}", f"torch=={base('torch')}", f"transformers=={base('transformers')}"]


def peer_venv(ctx: BenchContext) -> Path:
    return ctx.cache / f"lm-eval-{LM_EVAL_VERSION}"


def peer_python(ctx: BenchContext, *, install: bool) -> tuple[Path | None, str]:
    """lm-eval's interpreter, installed once and reused while its pins match; or None and why not."""
    venv = peer_venv(ctx)
    python, stamp = venv / "bin" / "python", venv / "sectune-pins.txt"
    pins = "\n".join(_pins())
    if python.is_file() and stamp.is_file() and stamp.read_text(encoding="utf-8") == pins:
        return python, ""
    if not install:
        return None, f"lm-eval venv not built (quick runs only reuse {venv}; a default run builds it)"
    ctx.say(f"eval: installing {' '.join(_pins())} into {venv} (once, ~2 min)")
    shutil.rmtree(venv, ignore_errors=True)
    log = ctx.cache / "lm-eval-install.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    # torch first and pinned (as the Makefile does) so a CPU machine takes the CPU wheel, not a CUDA build
    steps = [[sys.executable, "-m", "venv", str(venv)], [*pip, _pins()[1]], [*pip, *_pins()]]
    with log.open("w", encoding="utf-8") as handle:
        for step in steps:
            try:
                done = subprocess.run(step, stdout=handle, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S)
            except (OSError, subprocess.TimeoutExpired) as exc:
                return None, f"lm-eval {LM_EVAL_VERSION} could not be installed: {type(exc).__name__} (log: {log})"
            if done.returncode != 0:
                return None, f"lm-eval {LM_EVAL_VERSION} could not be installed: pip exit {done.returncode} ({log})"
    stamp.write_text(pins, encoding="utf-8")  # last: a half-built venv is rebuilt next time
    return python, ""


def _run_peer(ctx: BenchContext, model_dir: Path, tokenizer: Any, questions: list[Any], size: Size) -> dict | str:
    """lm-eval's result (see lm_eval_peer.py), or a one-line reason why there is none."""
    python, why = peer_python(ctx, install=not ctx.quick)
    if python is None:
        return why
    spec = {
        "model": str(model_dir),
        "batch_size": BATCH_SIZE,
        "repeats": size.repeats,
        "tasks": {method: _peer_docs(tokenizer, questions, method) for method in METHODS},
    }
    spec_file, out_file, log = (
        ctx.work / "lm-eval-spec.json",
        ctx.work / "lm-eval-result.json",
        ctx.work / "lm-eval.log",
    )
    spec_file.write_text(json.dumps(spec, indent=1), encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    ctx.say(f"eval: lm-eval {LM_EVAL_VERSION} on the same questions (log: {log})")
    command = [str(python), str(PEER_SCRIPT), str(spec_file), str(out_file)]
    try:
        with log.open("w", encoding="utf-8") as handle:
            done = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT, env=env, timeout=PEER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"lm-eval run exceeded {PEER_TIMEOUT_S} s (log: {log})"
    if done.returncode != 0 or not out_file.is_file():
        return f"lm-eval run failed with exit {done.returncode}: {_last_line(log)} (log: {log})"
    result = json.loads(out_file.read_text(encoding="utf-8"))
    result["docs"] = spec["tasks"]
    return result


def _last_line(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


# ---------------------------------------------------------------- measures


def _mcq_measures(method: str, n: int, ours: SectuneRun, peer: dict | str) -> list[Measure]:
    rate_name, same_name = f"MCQ {method} scoring questions/s", f"MCQ {method}: identical predictions"
    baseline = f"lm-eval {LM_EVAL_VERSION}"
    rate = n / ours.seconds
    ours_details = {"seconds": ours.all_seconds, "questions": n, "batch_size": BATCH_SIZE}
    if isinstance(peer, str):
        return [
            Measure(AREA, rate_name, rate, "q/s", baseline=baseline, target="≥ 2×", note=peer, details=ours_details),
            Measure(AREA, same_name, None, "questions", baseline=baseline, target="all equal", note=peer),
        ]
    task, docs = peer["tasks"][method], peer["docs"][method]
    peer_rate = n / statistics.median(task["seconds"])
    timed = (
        f"timed: sectune option_scores vs lm-eval evaluator.evaluate (requests, forwards, metrics), median of "
        f"{len(task['seconds'])}, model loads excluded; batch {BATCH_SIZE}, fp32, {peer['threads']} threads"
    )
    if method == "option":
        timed += f"; sectune's batch counts questions ({BATCH_SIZE}×4 option rows a forward), lm-eval's requests"
    details = {
        **ours_details,
        "lm_eval_seconds": task["seconds"],
        "lm_eval_loglikelihood_seconds": task["loglikelihood_seconds"],
        "lm_eval_load_s": peer["load_s"],
        "lm_eval_versions": peer["versions"],
    }
    speed = Measure(
        AREA, rate_name, rate, "q/s", baseline=baseline, baseline_value=peer_rate, target="≥ 2×",
        met=rate / peer_rate >= 2.0, note=timed, details=details,
    )  # fmt: skip
    return [speed, _agreement(same_name, baseline, ours, task, docs)]


def _agreement(name: str, baseline: str, ours: SectuneRun, task: dict, docs: list[dict]) -> Measure:
    """Per-question picks of both sides; lm-eval's by sectune's rule (mean log-prob per continuation token)."""

    def letters(picks: list[int]) -> list[str]:
        return [doc["letters"][i] for doc, i in zip(docs, picks, strict=True)]

    theirs = letters(task["predictions"])
    n = len(docs)
    differ = [i for i, (a, b) in enumerate(zip(ours.predictions, theirs, strict=True)) if a != b]
    gap = max(
        abs(ours.scores[q][letter] - task["mean_logprob"][q][k])
        for q, doc in enumerate(docs)
        for k, letter in enumerate(doc["letters"])
    )
    which = f" (questions {', '.join(map(str, differ))})" if differ else ""
    note = (
        f"{len(differ)} of {n} differ{which}; max |mean log-prob gap| {gap:.1e}; prompt mismatches "
        f"{task['prompt_mismatches']}, token-count mismatches {task['token_count_mismatches']}; lm-eval's "
        "newline log-prob (moved into its continuation) is subtracted before the per-token mean"
    )
    details = {
        "sectune": ours.predictions,
        "lm_eval": theirs,
        "lm_eval_acc": letters(task["acc_predictions"]),
        "lm_eval_acc_norm": letters(task["acc_norm_predictions"]),
        "gold": [doc["letters"][doc["target"]] for doc in docs],
        "max_score_gap": gap,
    }
    met = not differ and task["prompt_mismatches"] == 0 and task["token_count_mismatches"] == 0
    return Measure(
        AREA, name, float(n - len(differ)), "questions", baseline=f"{baseline}: all", baseline_value=float(n),
        target="all equal", met=met, note=note, details=details,
    )  # fmt: skip


def _heldout_rows(questions: list[Any], count: int) -> list[dict[str, Any]]:
    """Canonical rows from the packaged questions: the question as the user turn, the right option as answer."""
    rows = []
    for question in questions[:count]:
        answer = question.options[next(iter(question.answers))]
        messages = [{"role": "user", "content": question.question}, {"role": "assistant", "content": answer}]
        rows.append({"messages": messages, "meta": {"source": BENCHMARK, "id": question.id}})
    return rows


def _heldout_measure(ctx: BenchContext, model: Any, tokenizer: Any, questions: list[Any], size: Size) -> Measure:
    from sectune.config.evaluate import EvalConfig
    from sectune.evaluate.heldout import generate_local, load_examples
    from sectune.evaluate.mcq import load_benchmark

    pool = questions if len(questions) >= size.heldout_rows else load_benchmark(BENCHMARK).questions
    test = ctx.work / "heldout" / "test.jsonl"
    test.parent.mkdir(parents=True, exist_ok=True)
    test.write_text("".join(json.dumps(row) + "\n" for row in _heldout_rows(pool, size.heldout_rows)), "utf-8")
    examples = load_examples(test.parent)
    batched_cfg = EvalConfig(batch_size=BATCH_SIZE, max_new_tokens=size.max_new_tokens)
    single_cfg = EvalConfig(batch_size=1, max_new_tokens=size.max_new_tokens)
    generate_local(model, tokenizer, examples[:1], single_cfg, seed=0)  # warm-up, untimed
    timings = {}
    outputs = {}
    for name, cfg in (("batched", batched_cfg), ("single", single_cfg)):
        started = time.perf_counter()
        outputs[name] = generate_local(model, tokenizer, examples, cfg, seed=0)
        timings[name] = time.perf_counter() - started
    n = len(examples)
    same = sum(a.text == b.text for a, b in zip(outputs["batched"], outputs["single"], strict=True))
    tokens = {name: sum(out.completion_tokens for out in outs) for name, outs in outputs.items()}
    return Measure(
        AREA, f"held-out answers/s (batch {BATCH_SIZE} vs 1)", n / timings["batched"], "answers/s",
        baseline="one at a time", baseline_value=n / timings["single"], target="> 1×",
        met=timings["single"] > timings["batched"],
        note=f"{n} rows, greedy, ≤ {size.max_new_tokens} new tokens, fp32; {same} of {n} answers identical to "
        "one-at-a-time",
        details={"seconds": timings, "completion_tokens": tokens, "rows": n},
    )  # fmt: skip
