"""2-process training (torchrun, gloo on CPU) of `sectune train` matches the 1-process run.

Same global batch (per-device batch × processes × grad_accum), seed and data order: the trainer's seeded
sampler draws one permutation and accelerate hands each process every other per-device batch of it, so the
two processes together see exactly the 1-process batch. The loss is summed over tokens and divided by the
token count gathered across processes (transformers' ``average_tokens_across_devices``), so per-step losses
agree up to fp32 summation order. Dropout is off: its masks are drawn per process.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

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

    assert_two_processes_match_one(single, double)


def assert_two_processes_match_one(single: Path, double: Path) -> None:
    """``double`` (2 processes × batch 2) finished with the losses and tokens of ``single`` (1 × batch 4)."""
    assert is_finished(double) and not partial_dir(double).exists()
    one, two = read_json(single / "summary.json"), read_json(double / "summary.json")
    assert (one["world_size"], one["effective_batch_size"]) == (1, 4)
    assert (two["world_size"], two["effective_batch_size"], two["batch_size"]) == (2, 4, 2)
    expected, got = _losses(single), _losses(double)
    assert sorted(got) == sorted(expected) == list(range(1, STEPS + 1))
    worst = max(abs(got[step] - expected[step]) for step in expected)
    assert worst < TOLERANCE, (expected, got)
    assert two["tokens_seen"] == one["tokens_seen"]  # the same rows, counted over both processes


def _launch_and_kill_after(command, checkpoint: Path, timeout: float = 600) -> None:
    """Start a launch in its own process group and SIGKILL the whole group once ``checkpoint`` is complete."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_CONFIG_FILE": os.devnull}
    launch = subprocess.Popen(command, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not (checkpoint / "trainer_state.json").is_file():  # the trainer writes its state last
            assert launch.poll() is None, f"the launch ended before {checkpoint.name}: {launch.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, f"no {checkpoint.name} within {timeout}s"
            time.sleep(0.2)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(launch.pid, signal.SIGKILL)  # torchrun and both ranks, as a scheduler's kill would
        launch.wait(60)
        launch.stderr.close()


def test_a_killed_two_process_launch_resumes_losing_and_repeating_nothing(tiny_model_dir, train_only_dataset, tmp_path):
    steps = 8  # a margin: the kill comes at checkpoint-2, far from the end
    sets = [f"model={tiny_model_dir}", "seed=7", "train.method=lora", *COMMON, f"train.max_steps={steps}"]
    reference, killed = tmp_path / "one", tmp_path / "two"
    _run(_train_command(train_only_dataset, reference, [*sets, "train.batch_size=4"], 1))
    two_process = _train_command(train_only_dataset, killed, [*sets, "train.batch_size=2"], 2)

    _launch_and_kill_after(two_process, partial_dir(killed) / "checkpoints" / "checkpoint-2")
    assert not is_finished(killed) and partial_dir(killed).is_dir()
    left = sorted(int(p.name.split("-")[1]) for p in (partial_dir(killed) / "checkpoints").glob("checkpoint-*"))
    assert left and left[-1] < steps, left  # killed mid-run: the resume has steps to do
    _run([*two_process, "--resume"])

    assert is_finished(killed) and not partial_dir(killed).exists()
    summary = read_json(killed / "summary.json")
    logged = [e["step"] for e in summary["log_history"] if "loss" in e]
    assert logged == list(range(1, steps + 1))  # each step once: none lost, none repeated
    live = [row["step"] for row in map(json.loads, (killed / "metrics.jsonl").read_text().splitlines()) if row["loss"]]
    assert live.count(1) == 1 and set(live) == set(logged)  # the resume went on from checkpoint-2, not from step 1
    expected, got = _losses(reference), _losses(killed)
    worst = max(abs(got[step] - expected[step]) for step in expected)
    assert worst < TOLERANCE, (expected, got)
    assert (summary["world_size"], summary["effective_batch_size"]) == (2, 4)
