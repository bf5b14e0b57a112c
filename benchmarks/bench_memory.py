"""Where a training step's memory goes, against `sectune plan`: one optimizer step of one row per run.

For each token length: the bytes autograd keeps for backward during the forward (a ``saved_tensors_hooks`` pack
hook over trl's ``compute_loss``, parameters left out, one count per storage, by dtype), the run's peak memory
(sectune's own sampling: RSS on CPU, ``max_memory_allocated`` on CUDA) and the plan's activations and total for
that row. The plan's activation line should match the saved bytes; the peak minus memory at start minus the
saved bytes is what backward and the optimizer add on top (transients, allocator retention).
Usage: .venv/bin/python benchmarks/bench_memory.py [--method lora] [--tokens 128,700] (SECTUNE_CPU_BF16=0/1
picks the CPU precision). Each length runs in its own process, so that each peak is its own.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

MB = 2**20


def measure(method: str, tokens: int, work: Path) -> dict[str, Any]:
    """In this process: one step on a row of about ``tokens`` tokens; the saved bytes, the peak and the plan."""
    import torch
    import trl

    from sectune.bench import gpu
    from sectune.bench.train import Job, longest_row_tokens, plan_for, train_sectune

    saved: list[dict[str, Any]] = []
    compute_loss = trl.SFTTrainer.compute_loss

    def counting_compute_loss(self, model, inputs, *args, **kwargs):
        params = {p.untyped_storage().data_ptr() for p in model.parameters()}
        storages: dict[int, tuple[int, str]] = {}

        def pack(tensor):
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in params:
                storages[storage.data_ptr()] = (storage.nbytes(), str(tensor.dtype).removeprefix("torch."))
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            result = compute_loss(self, model, inputs, *args, **kwargs)
        by_dtype: collections.Counter[str] = collections.Counter()
        for nbytes, dtype in storages.values():
            by_dtype[dtype] += nbytes
        saved.append({"tokens": int(inputs["input_ids"].numel()), "by_dtype_mb": _mb(by_dtype)})
        return result

    trl.SFTTrainer.compute_loss = counting_compute_loss
    data = gpu.fitted_dataset(work / "data", "smollm2-135m", rows=1, tokens=tokens)  # type: ignore[arg-type]
    job = Job(method, data, work / "run", 1, sets=("train.batch_size=1", "train.grad_accum=1"))
    result = train_sectune(job)
    planned = plan_for(job, {**result, "variant": method}, longest_row_tokens("smollm2-135m", data))
    plan = planned["for_longest_row"]
    first = saved[0]
    return {
        "method": method,
        "precision": result["precision"],
        "tokens": first["tokens"],
        "saved_mb": round(sum(first["by_dtype_mb"].values()), 1),
        "saved_by_dtype_mb": first["by_dtype_mb"],
        "plan_activations_mb": round(plan["activations_gb"] * 1024, 1),
        "peak_mb": result["peak_memory_mb"],
        "memory_at_start_mb": result["memory_at_start_mb"],
        "peak_kind": result["peak_memory_kind"],
        "plan_total_mb": round(plan["total_gb"] * 1024, 1),
    }


def _mb(counts: collections.Counter[str]) -> dict[str, float]:
    return {dtype: round(nbytes / MB, 1) for dtype, nbytes in counts.items() if nbytes >= MB / 20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora", choices=["lora", "qlora", "full"])
    parser.add_argument("--tokens", default="128,700", help="comma-separated row lengths")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        with tempfile.TemporaryDirectory() as work:
            print("RESULT " + json.dumps(measure(args.method, args.child, Path(work))))
        return
    lengths = [int(n) for n in args.tokens.split(",") if n.strip()]
    rows = [_run_child(args.method, n) for n in lengths]
    header = ("tokens", 6), ("saved MB", 9), ("plan act. MB", 12), ("peak MB", 8), ("start MB", 8), ("plan MB", 8)
    print(" ".join(f"{name:>{width}}" for name, width in header) + "  precision")
    for r in rows:
        print(
            f"{r['tokens']:>6} {r['saved_mb']:>9} {r['plan_activations_mb']:>12} {r['peak_mb']:>8} "
            f"{r['memory_at_start_mb']:>8} {r['plan_total_mb']:>8}  {r['precision']} {r['saved_by_dtype_mb']}"
        )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        span = last["tokens"] - first["tokens"]
        for key in ("saved_mb", "plan_activations_mb", "peak_mb"):
            print(f"per token, {key.removesuffix('_mb')}: {(last[key] - first[key]) / span:.2f} MB")


def _run_child(method: str, tokens: int) -> dict[str, Any]:
    command = [sys.executable, __file__, "--method", method, "--child", str(tokens)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SystemExit(f"bench_memory: {method} at {tokens} tokens failed: {tail}")
    return json.loads(lines[-1].removeprefix("RESULT "))


if __name__ == "__main__":
    main()
