"""2-process training (torchrun, gloo on CPU) of `sectune train` matches the 1-process run.

Same global batch (per-device batch × processes × grad_accum), seed and data order: the trainer's seeded
sampler draws one permutation and accelerate hands each process every other per-device batch of it, so the
two processes together see exactly the 1-process batch. The loss is summed over tokens and divided by the
token count gathered across processes (transformers' ``average_tokens_across_devices``), so per-step losses
agree up to fp32 summation order. Dropout is off: its masks are drawn per process.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest

from sectune.runs import read_json
from sectune.train.api import is_finished, partial_dir

pytestmark = [
    pytest.mark.slow,
]

STEPS = 4
COMMON = [
    f"train.max_steps={STEPS}",
    "train.save_steps=2",
    "train.logging_steps=1",
    "train.learning_rate=5e-3",
    "train.precision=fp32",
    "train.grad_accum=1",
    "train.lora.dropout=0",  # dropout masks are per process: the one source of run-to-run difference
    "train.early_stopping_patience=null",
    "train.stop_check.enabled=false",
]
TOLERANCE = 1e-4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_command(dataset, out, sets, processes):
    train = ["-m", "sectune", "train", str(dataset), "--out", str(out)]
    for item in sets:
        train += ["--set", item]
    if processes == 1:
        return [sys.executable, *train]
    # accelerate launch --cpu runs one process (simple_launcher): torchrun starts the ranks (gloo on CPU)
    launch = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes)]
    launch += ["--master_addr", "127.0.0.1", "--master_port", str(_free_port())]
    return [*launch, *train]


def _run(command):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_CONFIG_FILE": os.devnull}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def _losses(run) -> dict[int, float]:
    summary = read_json(run / "summary.json")
    return {e["step"]: e["loss"] for e in summary["log_history"] if "loss" in e}


@pytest.mark.parametrize("method", ["lora", "full"])
def test_two_processes_match_one_process(method, tiny_model_dir, train_only_dataset, tmp_path):
    sets = [f"model={tiny_model_dir}", "seed=7", f"train.method={method}", *COMMON]
    single, double = tmp_path / "one", tmp_path / "two"
    _run(_train_command(train_only_dataset, single, [*sets, "train.batch_size=4"], 1))
    _run(_train_command(train_only_dataset, double, [*sets, "train.batch_size=2"], 2))

    assert is_finished(double) and not partial_dir(double).exists()
    one, two = read_json(single / "summary.json"), read_json(double / "summary.json")
    assert (one["world_size"], one["effective_batch_size"]) == (1, 4)
    assert (two["world_size"], two["effective_batch_size"], two["batch_size"]) == (2, 4, 2)
    expected, got = _losses(single), _losses(double)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    worst = max(abs(got[step] - expected[step]) for step in expected)
    assert worst < TOLERANCE, (expected, got)
    assert two["tokens_seen"] == one["tokens_seen"]  # the same rows, counted over both processes
