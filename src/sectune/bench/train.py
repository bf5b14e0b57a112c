"""Training: sectune's LoRA, QLoRA and full fine-tuning against a plain trl SFTTrainer script with trl's defaults.

Same model (the embedded SmolLM2-135M unless a caller names another), same rows, same rows per optimizer update,
same number of steps. Each variant runs in its own subprocess (``python -m sectune.bench.train --child …``) so
that its peak RSS is its own: the parent reads it with ``os.wait4`` (``ru_maxrss`` of that child: the whole
process, loading included). Figures:

- tokens/s: every non-padding token of the batches (context *and* trained answer tokens) per second of
  ``trainer.train()``, as trl counts them (``num_input_tokens_seen``);
- MFU: model FLOPs/s ÷ a matmul peak measured in the same run at the precision the run used (see ``flops_per_token``);
- peak memory, and ``sectune plan`` (``sectune.train.api.plan``) for the same run beside it.

``gpu.py`` reuses the children on CUDA with random-init weights of a bigger registry architecture.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sectune.bench.measure import BenchContext, Measure
from sectune.registry.models import Architecture

AREA = "train"
SECTUNE_METHODS = ("lora", "qlora", "full")
# trl: the plain script with trl's defaults (LoRA); trl-fp32: the same with bf16=False, for CPUs that emulate bf16
# (trl turns bf16 on by default even there, which makes its default slow for a reason of hardware, not of method)
VARIANTS = ("trl", "trl-fp32", *SECTUNE_METHODS)
TRL_VARIANTS = {"trl": {}, "trl-fp32": {"bf16": False}}  # variant → SFTConfig arguments beyond trl's defaults
LABELS = {
    "trl": "trl defaults (LoRA)",
    "trl-fp32": "trl defaults, bf16 off",
    "lora": "sectune LoRA",
    "qlora": "sectune QLoRA",
    "full": "sectune full",
}
# a repository checkout sits next to ../shared, which holds the seed's GPT-4o rows; installed, synthetic rows are used
SEED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "seed" / "output_01.jsonl"
GB = 1024**3
DEFAULT_ROWS_PER_UPDATE = 8  # sectune.train.model.ROWS_PER_UPDATE; also trl's default per_device_train_batch_size

# targets of issue 21
LORA_SPEEDUP = 3.0  # LoRA tokens/s ≥ 3× trl defaults'
MFU_TARGET = 0.40  # LoRA model FLOPs/s ≥ 40 % of the measured matmul peak
QLORA_MEMORY = 0.6  # QLoRA peak ≤ 0.6× LoRA peak
PLAN_TOLERANCE = 0.20  # sectune plan within ±20 % of each measured peak


@dataclass(frozen=True)
class Sizes:
    """How much each variant trains. ``rows_per_update`` is the same for every variant (sectune: 1 row × accum)."""

    steps: int = 8
    rows: int = 100
    timeout_s: float = 900  # per variant: a slower one reports the steps it finished (trl) or fails alone
    emulated_timeout_s: float = 240  # trl's default bf16 on a CPU that emulates it (~10× slower than fp32)
    rows_per_update: int = DEFAULT_ROWS_PER_UPDATE  # sectune's CPU auto (1 × 8) = trl's default batch (8)
    answer_words: tuple[int, int] = (60, 230)  # synthetic rows only
    seed_data: bool = True  # the seed's rows when ../shared has them

    @classmethod
    def quick(cls) -> Sizes:
        """Tiny: 2 steps of 1 short synthetic row, every code path in about 2 minutes."""
        return cls(
            steps=2,
            rows=8,
            rows_per_update=1,
            answer_words=(5, 12),
            seed_data=False,
            timeout_s=120,
            emulated_timeout_s=60,
        )


# ---------------------------------------------------------------- data


def write_dataset(folder: Path, sizes: Sizes) -> tuple[Path, str]:
    """A dataset folder (train.jsonl only): the seed's rows when present and asked for, else synthetic rows."""
    if sizes.seed_data and SEED_DATA.is_file():
        lines = SEED_DATA.read_text(encoding="utf-8").splitlines()[: sizes.rows]
        source = f"{SEED_DATA.name} (seed, {len(lines)} rows)"
    else:
        lines = [json.dumps(row) for row in synthetic_rows(sizes.rows, sizes.answer_words)]
        source = f"synthetic rows shaped like the seed's ({len(lines)} rows, answers {sizes.answer_words} words)"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, source


def synthetic_rows(count: int, answer_words: tuple[int, int] = (60, 230), seed: int = 0) -> list[dict]:
    """Two-turn rows like the seed's (questions ~16 words, answers 60-230 words), words from the packaged MCQ set.

    Throughput depends on lengths and turns, not on meaning; this keeps the benchmark runnable without ../shared.
    """
    from importlib.resources import files

    questions = json.loads((files("sectune.resources") / "benchmarks" / "cyber-mini.json").read_text())["questions"]
    words = sorted({w for q in questions for text in [q["question"], *q["answers"].values()] for w in text.split()})
    rng = random.Random(seed)

    def turn() -> list[dict]:
        question = rng.choice(questions)["question"]
        answer = " ".join(rng.choices(words, k=rng.randint(*answer_words)))
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    system = {"role": "system", "content": "You are a helpful cybersecurity and IT support assistant."}
    return [{"messages": [system, *turn(), *turn()]} for _ in range(count)]


def longest_row_tokens(model: str, dataset: Path) -> int:
    """Tokens of the longest row under the model's chat template: one row per step is what a padding-free
    micro-batch of sectune's CPU default holds, so this is the length to plan for."""
    from sectune.models.load import load_tokenizer
    from sectune.train.data import read_dataset

    tokenizer = load_tokenizer(model)
    rows, _, _ = read_dataset(dataset)
    return max(row_tokens(tokenizer, row) for row in rows)


def row_tokens(tokenizer: Any, row: dict[str, Any]) -> int:
    """Tokens of one row as the trainer sees it (the rendered chat template, its own special tokens only)."""
    text = tokenizer.apply_chat_template(row["messages"], tokenize=False)
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


# ---------------------------------------------------------------- FLOPs and the matmul peak


def matmul_params(arch: Architecture) -> int:
    """Weights a token is multiplied with: every decoder linear layer plus the LM head (the embedding lookup of a
    tied model costs no FLOPs; its matrix is counted once, as the head)."""
    from sectune.train.plan import LINEAR_LAYERS, layer_params

    shapes = layer_params(arch)
    body = arch.num_layers * sum(i * o for name, (i, o) in shapes.items() if name in LINEAR_LAYERS)
    return body + arch.vocab_size * arch.hidden_size


def flops_per_token(method: str, params: int) -> int:
    """Model FLOPs per trained token (forward 2·N; backward 2·N for activation gradients, 2·N for weight gradients).

    full: 6·N. LoRA/QLoRA with a frozen base: ≈ 4·N (no weight gradients for the base; the rank-16 adapters add
    < 1 %). Attention scores (∝ sequence length) and recomputation under gradient checkpointing are not counted:
    that is the usual model-FLOPs convention, so the MFU of a checkpointed run does not gain from recomputing.
    """
    return (6 if method == "full" else 4) * params


def cpu_matmul_peak(quick: bool) -> dict[str, float]:
    """GFLOP/s of the best of a 512² and a 1024² matmul, fp32 and bf16 (``sectune.hardware.measure_matmul``)."""
    from sectune.hardware import measure_matmul

    best: dict[str, float] = {}
    for size in (512, 1024):
        for dtype, gflops in measure_matmul(size, seconds=0.3 if quick else 1.0).items():
            best[dtype] = max(best.get(dtype, 0.0), gflops)
    return best


def best_of(*peaks: dict[str, float]) -> dict[str, float]:
    """The higher figure per dtype: the peak is measured before and after the runs (a busy moment reads low)."""
    return {key: max(peak.get(key, 0.0) for peak in peaks) for key in peaks[0]}


PEAK_KEY = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16"}


def mfu(result: dict[str, Any], params: int, peak: dict[str, float]) -> dict[str, Any]:
    """Model FLOPs/s of one variant and its fraction of the peak at the precision it trained in."""
    method = "lora" if result["variant"] in TRL_VARIANTS else result["variant"]
    gflops = result["tokens_per_s"] * flops_per_token(method, params) / 1e9
    key = PEAK_KEY.get(result["precision"], "float32")
    return {
        "model_gflops_per_s": round(gflops, 2),
        "peak_gflops_per_s": peak.get(key),
        "peak_dtype": key,
        "mfu": round(gflops / peak[key], 4) if peak.get(key) else None,
        "formula": f"{6 if method == 'full' else 4}·N·tokens/s, N = {params:,} matmul weights",
    }


# ---------------------------------------------------------------- running one variant in its own process


@dataclass(frozen=True)
class Job:
    """One variant's inputs. ``model``: a registry key or folder; ``sets``: extra ``key=value`` config overrides
    for sectune's runs; ``trl_batch``: per_device_train_batch_size of the trl script (None: trl's default)."""

    variant: str
    dataset: Path
    out: Path
    steps: int
    model: str = "smollm2-135m"
    sets: tuple[str, ...] = ()
    trl_batch: int | None = None
    trl_args: dict[str, Any] = field(default_factory=dict)  # further SFTConfig arguments for the trl script


def run_variant(job: Job, say: Callable[[str], None] = print, timeout_s: float | None = None) -> dict[str, Any]:
    """Run one variant in a fresh interpreter; its result plus ``peak_rss_gb`` (ru_maxrss of that child alone)."""
    job.out.mkdir(parents=True, exist_ok=True)
    result_file, log_file = job.out / "result.json", job.out / "child.log"
    command = [sys.executable, "-m", "sectune.bench.train", "--child", json.dumps(_job_dict(job))]
    say(f"train: {LABELS.get(job.variant, job.variant)}, {job.steps} steps (log: {log_file})")
    started = time.perf_counter()
    with open(log_file, "w", encoding="utf-8") as log:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = _wait(child, timeout_s)
    code = os.waitstatus_to_exitcode(status)
    partial = job.out / "partial.json"  # the trl script's figures after each step (see StepFigures)
    if code != 0 and partial.is_file() and timed_out(status):
        result = {**json.loads(partial.read_text(encoding="utf-8")), "timed_out_after_s": timeout_s}
    elif timed_out(status) and timeout_s is not None:
        raise RuntimeError(f"{job.variant}: no optimizer step finished within the {timeout_s:.0f} s timeout")
    elif code != 0 or not result_file.is_file():
        tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"{job.variant} child exited {code}: {tail[0]} (log: {log_file})")
    else:
        result = json.loads(result_file.read_text(encoding="utf-8"))
    result["peak_rss_gb"] = round(usage.ru_maxrss * 1024 / GB, 3)  # Linux: KiB
    result["process_wall_s"] = round(time.perf_counter() - started, 1)
    return result


def timed_out(status: int) -> bool:
    """The child was ended by ``_wait``'s kill (SIGKILL)."""
    import signal

    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _wait(child: subprocess.Popen, timeout_s: float | None) -> tuple[int, int, Any]:
    """os.wait4 on the child (its own rusage), killing it after ``timeout_s``."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG if deadline else 0)
        if pid:
            child.returncode = os.waitstatus_to_exitcode(status)
            return pid, status, usage
        if deadline and time.monotonic() > deadline:
            child.kill()
            deadline = None  # the next wait4 collects it
        time.sleep(0.2)


def _job_dict(job: Job) -> dict[str, Any]:
    return {**asdict(job), "dataset": str(job.dataset), "out": str(job.out), "sets": list(job.sets)}


def child_main(payload: str) -> None:
    """In the child: train one variant and write ``result.json`` into its out folder."""
    data = json.loads(payload)
    job = Job(**{**data, "dataset": Path(data["dataset"]), "out": Path(data["out"]), "sets": tuple(data["sets"])})
    result = train_trl_defaults(job) if job.variant in TRL_VARIANTS else train_sectune(job)
    result.update(variant=job.variant, label=LABELS.get(job.variant, job.variant))
    (job.out / "result.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def sectune_config(job: Job) -> Any:
    from sectune.config import load_config

    method = job.variant
    overrides = [f"model={job.model}", f"train.method={method}", f"train.max_steps={job.steps}"]
    overrides += ["train.stop_check.enabled=false", *job.sets]  # the stop check generates: not training
    return load_config(None, overrides)


def train_sectune(job: Job) -> dict[str, Any]:
    """sectune's own API with its defaults: ``sectune.train.api.train`` on a config built like the demo's."""
    from sectune.train.api import train

    cfg = sectune_config(job)
    run = train(cfg, job.dataset, job.out / "run", overwrite=True)
    summary = json.loads((run / "summary.json").read_text(encoding="utf-8"))
    result = {
        key: summary[key]
        for key in (
            "method", "precision", "gradient_checkpointing", "batch_size", "grad_accum", "tokens_seen",
            "tokens_per_s", "train_runtime_s", "peak_memory_mb", "peak_memory_kind", "memory_at_start_mb",
            "trainable_params", "total_params", "global_step", "final_train_loss",
        )
    }  # fmt: skip
    result["settings"] = (
        f"sectune defaults: batch {summary['batch_size']}×{summary['grad_accum']}, padding_free="
        f"{cfg.train.padding_free}, precision={summary['precision']}, checkpointing={summary['gradient_checkpointing']}"
    )
    trained = summary.get("data_checks", {}).get("masks", {}).get("trained_fraction_median")
    if trained is not None:
        result["trained_token_fraction_median"] = trained  # the answer share of the counted tokens, per row
    result.update(_cuda_memory())
    return result


def train_trl_defaults(job: Job) -> dict[str, Any]:
    """A plain trl script: transformers model, peft LoRA (sectune's r/alpha/targets), SFTConfig defaults.

    Only what the task needs is set: steps, learning rate, the answer-only loss (sectune's ChatML template with
    generation markers, which SmolLM2's stock template lacks), no saving, no reporting. Everything else is
    trl's default: batch 8 × 1, gradient checkpointing on, padded batches, bf16 when not fp16, max_length 1024.
    """
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTConfig, SFTTrainer

    from sectune.models.load import load_tokenizer, resolve_model
    from sectune.train.data import read_dataset
    from sectune.train.model import lora_targets, peft_config

    cfg = sectune_config(Job(**{**asdict(job), "variant": "lora"}))
    resolved = resolve_model(cfg.model)
    tokenizer = load_tokenizer(cfg.model)
    rows, _, _ = read_dataset(job.dataset)
    extra: dict[str, Any] = {"per_device_train_batch_size": job.trl_batch} if job.trl_batch else {}
    extra.update({**TRL_VARIANTS.get(job.variant, {}), **job.trl_args})
    args = SFTConfig(
        output_dir=str(job.out / "trl"),
        max_steps=job.steps,
        learning_rate=cfg.train.learning_rate,
        seed=cfg.seed,
        assistant_only_loss=True,
        use_cpu=not torch.cuda.is_available(),
        report_to="none",
        save_strategy="no",
        include_num_input_tokens_seen="non_padding",
        **extra,
    )
    set_seed(cfg.seed)
    model = AutoModelForCausalLM.from_pretrained(resolved.path)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list([{"messages": row["messages"]} for row in rows]),
        processing_class=tokenizer,
        peft_config=peft_config(cfg.train.lora, lora_targets(cfg.train.lora, resolved)),
    )
    figures = StepFigures(job, lambda tokens, runtime: _trl_figures(args, trainer, job, tokens, runtime))
    trainer.add_callback(figures.callback())
    _reset_cuda_peak()
    started = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - started
    return _trl_figures(args, trainer, job, int(trainer.state.num_input_tokens_seen), runtime)


class StepFigures:
    """Writes the trl script's figures after every optimizer step to ``partial.json``, so that a run the parent
    stops at its timeout still reports the rate of the steps it finished."""

    def __init__(self, job: Job, figures: Callable[[int, float], dict[str, Any]]) -> None:
        self.path, self.figures, self.started = job.out / "partial.json", figures, 0.0
        self.label = LABELS.get(job.variant, job.variant)

    def callback(self) -> Any:
        from transformers import TrainerCallback

        owner = self

        class _Callback(TrainerCallback):
            def on_train_begin(self, args, state, control, **kwargs):
                owner.started = time.perf_counter()

            def on_step_end(self, args, state, control, **kwargs):
                data = owner.figures(int(state.num_input_tokens_seen), time.perf_counter() - owner.started)
                data["label"] = owner.label
                tmp = owner.path.with_suffix(".tmp")
                tmp.write_text(json.dumps(data) + "\n", encoding="utf-8")
                tmp.replace(owner.path)

        return _Callback()


def _trl_figures(args: Any, trainer: Any, job: Job, tokens: int, runtime: float) -> dict[str, Any]:
    precision = "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32"
    return {
        "variant": job.variant,
        "method": "lora",
        "precision": precision,
        "gradient_checkpointing": bool(args.gradient_checkpointing),
        "batch_size": args.per_device_train_batch_size,
        "grad_accum": args.gradient_accumulation_steps,
        "tokens_seen": tokens,
        "tokens_per_s": round(tokens / runtime, 2),
        "train_runtime_s": round(runtime, 3),
        "global_step": trainer.state.global_step,
        "max_steps": job.steps,
        "settings": (
            f"trl SFTConfig defaults: batch {args.per_device_train_batch_size}×{args.gradient_accumulation_steps}, "
            f"checkpointing={args.gradient_checkpointing}, bf16={args.bf16}, padded, max_length={args.max_length}"
        ),
        **_cuda_memory(),
    }


def _reset_cuda_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def _cuda_memory() -> dict[str, float]:
    import torch

    if not torch.cuda.is_available():
        return {}
    return {
        "cuda_max_allocated_gb": round(torch.cuda.max_memory_allocated() / GB, 3),
        "cuda_max_reserved_gb": round(torch.cuda.max_memory_reserved() / GB, 3),
    }


# ---------------------------------------------------------------- sectune plan for a measured run


def plan_for(job: Job, result: dict[str, Any], max_length: int, arch: Architecture | None = None) -> dict[str, Any]:
    """``sectune plan`` for exactly the run that was measured (its batch, precision, checkpointing), for the
    longest row (``max_length``) and, as the CLI prints it without --max-length, for the config's bound."""
    from sectune.train.api import plan

    cfg = sectune_config(job)
    fixed = {
        "batch_size": result["batch_size"],
        "precision": result["precision"],
        "gradient_checkpointing": result["gradient_checkpointing"],
    }
    measured = plan(cfg, max_length=max_length, arch=arch, **fixed)
    default = plan(cfg, arch=arch, **fixed)
    return {"for_longest_row": measured.as_dict(), "for_config_max_length": default.as_dict()}


# ---------------------------------------------------------------- the whole comparison


def compare(
    work: Path,
    sizes: Sizes,
    *,
    variants: Sequence[str] = VARIANTS,
    model: str = "smollm2-135m",
    sets: tuple[str, ...] = (),
    trl_args: dict[str, Any] | None = None,
    arch: Architecture | None = None,
    dataset: Path | None = None,
    say: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every variant on the same rows; {"data", "variants": {variant: result}}.

    ``arch``: the architecture numbers of a model folder outside the registry (for the plan); ``dataset``: a
    dataset folder to use instead of writing one.
    """
    if dataset is None:
        dataset, source = write_dataset(work / "dataset", sizes)
    else:
        source = f"{dataset} (given)"
    say(f"train: data {source}; {sizes.steps} steps × {sizes.rows_per_update} rows per update")
    # both sides default to 8 rows per update (sectune: auto batch × auto accumulation; trl: batch 8 × 1)
    own_batch = sizes.rows_per_update != DEFAULT_ROWS_PER_UPDATE
    batch_sets = ("train.batch_size=1", f"train.grad_accum={sizes.rows_per_update}") if own_batch else ()
    trl_batch = sizes.rows_per_update if own_batch else None
    results: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for variant in variants:
        job = Job(
            variant,
            dataset,
            work / variant,
            sizes.steps,
            model=model,
            sets=(*batch_sets, *sets),
            trl_batch=trl_batch,
            trl_args=trl_args or {},
        )
        emulated = variant == "trl" and emulated_bf16()
        try:
            timeout = sizes.emulated_timeout_s if emulated else sizes.timeout_s
            results[variant] = run_variant(job, say, timeout_s=timeout)
        except RuntimeError as exc:  # one variant's failure is one row; the others still run
            failed[variant] = str(exc)
            continue
        if variant in SECTUNE_METHODS:
            results[variant]["plan"] = plan_for(job, results[variant], longest_row_tokens(model, dataset), arch)
    return {"data": source, "dataset": str(dataset), "variants": results, "failed": failed}


def emulated_bf16() -> bool:
    """True on a CPU without native bf16, where trl's default bf16 autocast is emulated."""
    from sectune.hardware import fast_dtypes

    dtypes = fast_dtypes()
    return dtypes.device == "cpu" and dtypes.train_precision != "bf16"


def run(ctx: BenchContext) -> list[Measure]:
    """The train rows of ``sectune bench`` on the embedded model (CPU, or CUDA when present)."""
    from sectune.hardware import fast_dtypes
    from sectune.registry.models import REGISTRY

    sizes = Sizes.quick() if ctx.quick else Sizes()
    ctx.say("train: matmul peak (fp32, bf16)")
    before = cpu_matmul_peak(ctx.quick)
    # trl with bf16 off only where bf16 is not native (there trl's default bf16 is emulated)
    variants = [v for v in VARIANTS if v != "trl-fp32" or fast_dtypes().train_precision != "bf16"]
    compared = compare(ctx.work, sizes, variants=variants, say=ctx.say)
    after = cpu_matmul_peak(ctx.quick)
    peak = best_of(before, after)
    compared["peaks_measured"] = {"before": before, "after": after}
    params = matmul_params(REGISTRY["smollm2-135m"].arch)
    return measures(AREA, compared, peak, params, sizes)


def measures(area: str, compared: dict[str, Any], peak: dict[str, float], params: int, sizes: Sizes) -> list[Measure]:
    """The table rows of one comparison: speed, MFU, QLoRA memory and the plan for each sectune method."""
    results = compared["variants"]
    for result in results.values():
        result["mfu"] = mfu(result, params, peak)
    common = {"data": compared["data"], "steps": sizes.steps, "rows_per_update": sizes.rows_per_update}
    rows = _speed_rows(area, results, common) + _mfu_rows(area, results, peak, compared.get("peaks_measured"))
    rows += _memory_rows(area, results) + _plan_rows(area, results)
    for variant, message in compared.get("failed", {}).items():
        rows.append(Measure(area, f"{LABELS.get(variant, variant)} (failed)", None, "", note=message))
    return rows


def _speed_rows(area: str, results: dict[str, Any], common: dict[str, Any]) -> list[Measure]:
    base = results.get("trl")
    rows: list[Measure] = []
    for method in SECTUNE_METHODS:
        if method not in results:
            continue
        mine = results[method]
        ratio = mine["tokens_per_s"] / base["tokens_per_s"] if base else None
        is_lora = method == "lora"
        rows.append(
            Measure(
                area,
                f"{LABELS[method].removeprefix('sectune ')} tokens/s",
                mine["tokens_per_s"],
                "tokens/s",
                baseline=LABELS["trl"] if base else None,
                baseline_value=base["tokens_per_s"] if base else None,
                ratio=ratio,
                target=f"≥ {LORA_SPEEDUP:g}×" if is_lora else "",
                met=(ratio >= LORA_SPEEDUP) if is_lora and ratio is not None else None,
                note="context + trained tokens per second" + ("" if is_lora else "; no target") + _partial(base),
                details={**common, method: mine, "trl": base},
            )
        )
    return rows[:1] + _against_trl_fp32(area, results, common) + rows[1:]  # the target row first


def _partial(result: dict[str, Any] | None) -> str:
    """A note for a baseline the parent stopped at its timeout: its rate is that of the steps it finished."""
    if not result or "timed_out_after_s" not in result:
        return ""
    return (
        f"; {result['label']} stopped at the {result['timed_out_after_s']:.0f} s timeout after "
        f"{result['global_step']} of {result['max_steps']} steps (rate of those steps)"
    )


def _against_trl_fp32(area: str, results: dict[str, Any], common: dict[str, Any]) -> list[Measure]:
    """sectune LoRA against trl's defaults with bf16 off: what remains once trl's bf16 default is set aside."""
    if "lora" not in results or "trl-fp32" not in results:
        return []
    mine, base = results["lora"], results["trl-fp32"]
    return [
        Measure(
            area,
            "LoRA tokens/s (vs trl, bf16 off)",
            mine["tokens_per_s"],
            "tokens/s",
            baseline=LABELS["trl-fp32"],
            baseline_value=base["tokens_per_s"],
            note="no target; trl's default bf16 is emulated on this CPU, so this is the like-for-like precision"
            + _partial(base),
            details={**common, "lora": mine, "trl-fp32": base},
        )
    ]


def _mfu_rows(
    area: str, results: dict[str, Any], peak: dict[str, float], peaks_measured: dict[str, Any] | None = None
) -> list[Measure]:
    if "lora" not in results:
        return []
    figures = results["lora"]["mfu"]
    extra = {"peaks_measured": peaks_measured} if peaks_measured else {}
    value = None if figures["mfu"] is None else round(100 * figures["mfu"], 1)
    others = ", ".join(
        f"{v} {100 * results[v]['mfu']['mfu']:.0f} %" for v in results if v != "lora" and results[v]["mfu"]["mfu"]
    )  # trl's and the other methods' MFU, each at its own precision's peak
    return [
        Measure(
            area,
            "LoRA MFU",
            value,
            "%",
            target=f"≥ {100 * MFU_TARGET:.0f} % of peak",
            met=None if value is None or figures["mfu"] > 1 else figures["mfu"] >= MFU_TARGET,
            note=f"{figures['model_gflops_per_s']:.1f} of {figures['peak_gflops_per_s']} GFLOP/s "
            f"({figures['peak_dtype']} matmul peak), {figures['formula']}; {others}"
            + ("; ABOVE the measured peak: it read low (busy moment), not judged" if (value or 0) > 100 else ""),
            details={"peak_gflops_per_s": peak, **{v: r["mfu"] for v, r in results.items()}, **extra},
        )
    ]


def _peak_gb(result: dict[str, Any]) -> float:
    """The figure the memory rows compare: the CUDA allocator's peak on a GPU, else the child's peak RSS."""
    return result.get("cuda_max_allocated_gb", result["peak_rss_gb"])


def _memory_rows(area: str, results: dict[str, Any]) -> list[Measure]:
    rows = []
    kind = "CUDA max allocated" if "cuda_max_allocated_gb" in results.get("lora", {}) else "peak RSS"
    if "lora" in results and "trl" in results:
        rows.append(
            Measure(
                area,
                f"LoRA {kind}",
                _peak_gb(results["lora"]),
                "GB",
                baseline=LABELS["trl"],
                baseline_value=_peak_gb(results["trl"]),
                note="no target; whole child process (load, train, save)",
                details={v: {"peak_rss_gb": r["peak_rss_gb"], **_cuda_only(r)} for v, r in results.items()},
            )
        )
    if "lora" in results and "qlora" in results:
        ratio = _peak_gb(results["qlora"]) / _peak_gb(results["lora"])
        rows.append(
            Measure(
                area,
                f"QLoRA {kind}",
                _peak_gb(results["qlora"]),
                "GB",
                baseline="sectune LoRA",
                baseline_value=_peak_gb(results["lora"]),
                ratio=ratio,
                target=f"≤ {QLORA_MEMORY:g}× LoRA peak",
                met=ratio <= QLORA_MEMORY,
                note=f"training-only peak {_train_peak_gb(results['qlora']):.2f} GB vs "
                f"{_train_peak_gb(results['lora']):.2f} GB ({results['qlora'].get('peak_memory_kind')})",
            )
        )
    return rows


def _train_peak_gb(result: dict[str, Any]) -> float:
    """sectune's own peak during ``trainer.train()`` (sampled RSS on CPU, allocator peak on CUDA)."""
    return float(result.get("peak_memory_mb", 0.0)) / 1024


def _cuda_only(result: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if k.startswith("cuda_")}


def _plan_rows(area: str, results: dict[str, Any]) -> list[Measure]:
    rows = []
    for method in SECTUNE_METHODS:
        if method not in results:
            continue
        planned = results[method]["plan"]["for_longest_row"]
        measured = _peak_gb(results[method])
        # on a GPU the allocator peak holds no CUDA context: compare it with the plan less its overhead line
        cuda = "cuda_max_allocated_gb" in results[method]
        value = planned["total_gb"] - (planned["overhead_gb"] if cuda else 0.0)
        ratio = value / measured
        config_plan = results[method]["plan"]["for_config_max_length"]["total_gb"]
        rows.append(
            Measure(
                area,
                f"plan vs peak, {method}",
                round(value, 2),
                "GB",
                baseline="CUDA max allocated" if cuda else "measured peak RSS",
                baseline_value=measured,
                ratio=ratio,
                target=f"within ±{100 * PLAN_TOLERANCE:.0f} %",
                met=abs(ratio - 1) <= PLAN_TOLERANCE,
                note=f"plan for {planned['batch_size']}×{planned['max_length']} tokens (longest row)"
                + (" less its CUDA overhead" if cuda else "")
                + f"; {config_plan} GB at max_length {results[method]['plan']['for_config_max_length']['max_length']}",
                details=results[method]["plan"],
            )
        )
    return rows


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="one variant of the train bench (used by sectune bench)")
    parser.add_argument("--child", required=True, help="the job as JSON")
    child_main(parser.parse_args(argv).child)


if __name__ == "__main__":
    _main()
