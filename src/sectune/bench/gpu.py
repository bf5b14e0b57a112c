"""GPU: the train bench on CUDA, with random-init weights of real registry architectures (nothing downloaded).

1. ``llama-3.2-1b-instruct``'s architecture: sectune LoRA, QLoRA and full against the plain trl script with
   trl's defaults (train.py's children), tokens/s, MFU against a bf16 matmul peak measured on this GPU, and
   ``sectune plan`` against ``torch.cuda.max_memory_allocated``.
2. ``mistral-7b``'s architecture, QLoRA at batch 1, rows of about 1024 tokens, gradient checkpointing on: the
   peak allocated memory against the seed's claim that 7B QLoRA fits in 9 GB, and the plan beside it.

Random weights train at the speed and memory of trained ones; the tokenizer is sectune's tiny offline BPE
(ChatML, 512 tokens), whose ids fit any registry vocabulary. Without CUDA the area is one skipped row.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sectune.bench.measure import BenchContext, Measure
from sectune.bench.train import (
    PLAN_TOLERANCE,
    SECTUNE_METHODS,
    Job,
    Sizes,
    compare,
    longest_row_tokens,
    matmul_params,
    measures,
    plan_for,
    row_tokens,
    run_variant,
    synthetic_rows,
)
from sectune.registry.models import REGISTRY, Architecture

AREA = "gpu"
SPEED_MODEL = "llama-3.2-1b-instruct"
CLAIM_MODEL = "mistral-7b"
CLAIM_GB = 9.0  # the seed's QLoRA table: "7B → 9 GB" (batch 1 × 1024 tokens)
CLAIM_TOKENS = 1024
ATTENTION = "[q_proj,k_proj,v_proj,o_proj]"  # the registry's LoRA targets (a folder model has no registry entry)


def run(ctx: BenchContext) -> list[Measure]:
    import torch

    if not torch.cuda.is_available():
        return [Measure(AREA, "CUDA training", None, "", met=None, note="no CUDA device: skipped")]
    ctx.say(f"gpu: {torch.cuda.get_device_name(0)}")
    peak = cuda_matmul_peak()
    rows = speed_rows(ctx, peak)
    return rows + claim_rows(ctx)


# ---------------------------------------------------------------- inputs


def cuda_matmul_peak(size: int = 8192, repeats: int = 20) -> dict[str, float]:
    """GFLOP/s of a size² matmul on GPU 0 in bf16, fp16 and fp32 (TF32 off: the fp32 figure is true fp32)."""
    import torch

    results = {}
    for name in ("bfloat16", "float16", "float32"):
        a = torch.randn(size, size, device="cuda", dtype=getattr(torch, name))
        b = torch.randn(size, size, device="cuda", dtype=getattr(torch, name))
        torch.matmul(a, b)  # warm up
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(repeats):
            torch.matmul(a, b)
        end.record()
        torch.cuda.synchronize()
        seconds = start.elapsed_time(end) / 1000
        results[name] = round(2 * size**3 * repeats / seconds / 1e9, 1)
        del a, b
    torch.cuda.empty_cache()
    return results


def random_model(key: str, cache: Path, arch: Architecture | None = None) -> Path:
    """A folder with random bf16 weights of registry model ``key``'s architecture (or ``arch``) and the tiny
    tokenizer.

    Built on the GPU where there is one (seconds) and kept in ``cache`` between runs (a 7B folder is ~14.5 GB).
    """
    import torch
    from transformers import AutoModelForCausalLM

    from sectune.testing.tiny import build_tiny_tokenizer
    from sectune.train.plan import llama_config

    folder = cache / f"random-{key}"
    if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(folder)
    config = llama_config(
        arch or REGISTRY[key].arch,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cuda = torch.cuda.is_available()
    torch.manual_seed(0)
    with torch.device("cuda" if cuda else "cpu"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(str(folder))
    del model
    if cuda:
        torch.cuda.empty_cache()
    return folder


def fitted_dataset(folder: Path, model: Path, rows: int, tokens: int) -> Path:
    """A dataset folder of two-turn rows of at most ``tokens`` tokens each (most within a few) under the model's
    tokenizer: answers sized by a two-point linear fit, then each row's last answer cut to fit."""
    from sectune.models.load import load_tokenizer

    tokenizer = load_tokenizer(model)

    def mean_tokens(words: int) -> float:
        probe = synthetic_rows(8, (words, words))
        return sum(row_tokens(tokenizer, row) for row in probe) / len(probe)

    small, large = mean_tokens(20), mean_tokens(120)
    per_word = (large - small) / 100
    words = max(5, int(20 + (tokens - small) / per_word * 1.05))  # a little over: the cut brings each row down
    fitted = [_cut_to_fit(tokenizer, row, tokens) for row in synthetic_rows(rows, (words, words))]
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) for row in fitted]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def _cut_to_fit(tokenizer: Any, row: dict[str, Any], tokens: int) -> dict[str, Any]:
    """The row with its answers cut evenly to the most words that keep it within ``tokens`` (binary search)."""
    answers = [i for i, turn in enumerate(row["messages"]) if turn["role"] == "assistant"]
    words = {i: row["messages"][i]["content"].split() for i in answers}
    most = max(len(w) for w in words.values())

    def with_words(count: int) -> dict[str, Any]:
        messages = [
            {**turn, "content": " ".join(words[i][: max(1, len(words[i]) * count // most)])} if i in words else turn
            for i, turn in enumerate(row["messages"])
        ]
        return {**row, "messages": messages}

    low, high = 1, most
    while low < high:
        middle = (low + high + 1) // 2
        if row_tokens(tokenizer, with_words(middle)) <= tokens:
            low = middle
        else:
            high = middle - 1
    return with_words(low)


def folder_sets(extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Overrides every run on a random folder needs: the registry's LoRA targets, room for the row lengths."""
    return (f"train.lora.target_modules={ATTENTION}", "prep.max_length=4096", *extra)


# ---------------------------------------------------------------- 1. speed on a 1B architecture


def speed_rows(ctx: BenchContext, peak: dict[str, float]) -> list[Measure]:
    ctx.say(f"gpu: building random weights of {SPEED_MODEL}")
    model = random_model(SPEED_MODEL, ctx.cache)
    sizes = Sizes(steps=2 if ctx.quick else 8, rows=16 if ctx.quick else 100, seed_data=False)
    dataset = fitted_dataset(ctx.work / "dataset-1b", model, sizes.rows, tokens=512)
    arch = REGISTRY[SPEED_MODEL].arch
    compared = compare(
        ctx.work / "1b",
        sizes,
        variants=("trl", *SECTUNE_METHODS),  # bf16 is native on the GPUs this runs on: no bf16-off trl run
        model=str(model),
        sets=folder_sets(),
        arch=arch,
        dataset=dataset,
        say=ctx.say,
    )
    rows = measures(AREA, compared, peak, matmul_params(arch), sizes)
    return [_named(m, f"{SPEED_MODEL} (random init): ") for m in rows]


def _named(measure: Measure, prefix: str) -> Measure:
    from dataclasses import replace

    return replace(measure, name=prefix + measure.name)


# ---------------------------------------------------------------- 2. the 7B QLoRA claim


def claim_rows(ctx: BenchContext) -> list[Measure]:
    ctx.say(f"gpu: building random weights of {CLAIM_MODEL} (~14.5 GB, once)")
    model = random_model(CLAIM_MODEL, ctx.cache)
    dataset = fitted_dataset(ctx.work / "dataset-7b", model, rows=8, tokens=CLAIM_TOKENS)
    sets = folder_sets(("train.batch_size=1", "train.grad_accum=8", "train.gradient_checkpointing=true"))
    job = Job("qlora", dataset, ctx.work / "7b-qlora", steps=1 if ctx.quick else 2, model=str(model), sets=sets)
    result = run_variant(job, ctx.say)
    longest = longest_row_tokens(str(model), dataset)
    arch: Architecture = REGISTRY[CLAIM_MODEL].arch
    planned = plan_for(job, result, longest, arch)["for_longest_row"]
    measured = result["cuda_max_allocated_gb"]
    plan_value = planned["total_gb"] - planned["overhead_gb"]  # the allocator peak holds no CUDA context
    details: dict[str, Any] = {"result": result, "plan": planned, "longest_row_tokens": longest}
    return [
        Measure(
            AREA,
            f"{CLAIM_MODEL} QLoRA peak (random init)",
            measured,
            "GB",
            baseline="claim: 7B QLoRA fits in",
            baseline_value=CLAIM_GB,
            target=f"≤ {CLAIM_GB:g} GB",
            met=measured <= CLAIM_GB,
            note=f"torch.cuda.max_memory_allocated; batch 1 × {longest} tokens, gradient checkpointing, "
            f"reserved {result.get('cuda_max_reserved_gb')} GB",
            details=details,
        ),
        Measure(
            AREA,
            f"plan vs peak, {CLAIM_MODEL} QLoRA",
            round(plan_value, 2),
            "GB",
            baseline="CUDA max allocated",
            baseline_value=measured,
            ratio=plan_value / measured,
            target=f"within ±{100 * PLAN_TOLERANCE:.0f} %",
            met=abs(plan_value / measured - 1) <= PLAN_TOLERANCE,
            note=f"plan {planned['total_gb']} GB less its {planned['overhead_gb']} GB CUDA overhead",
            details=planned,
        ),
    ]
