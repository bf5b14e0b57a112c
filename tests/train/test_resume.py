"""A run killed mid-training (SIGKILL after a checkpoint) and resumed ends like an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from sectune.errors import UserError
from sectune.runs import read_json, write_config
from sectune.train.api import is_finished, partial_dir, train

SETS = [
    "train.method=lora",
    "train.max_steps=12",
    "train.save_steps=4",
    "train.early_stopping_patience=null",
]


def _cli(dataset, out, sets, *extra):
    command = [sys.executable, "-m", "sectune", "train", str(dataset), "--out", str(out)]
    for item in sets:
        command += ["--set", item]
    return [*command, *extra]


def _kill_after_first_checkpoint(command, checkpoint_state, timeout=120.0):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.monotonic() + timeout
    try:
        while not checkpoint_state.is_file():
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint appeared"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stderr.close()
    return process.returncode


def test_killed_run_resumes_to_the_same_final_loss(tiny_config, train_only_dataset, tmp_path):
    sets = _base_sets(tiny_config) + SETS
    reference = train(tiny_config(*SETS), train_only_dataset, tmp_path / "uninterrupted")
    expected = read_json(reference / "summary.json")

    out = tmp_path / "killed"
    state = partial_dir(out) / "checkpoints" / "checkpoint-4" / "trainer_state.json"
    assert _kill_after_first_checkpoint(_cli(train_only_dataset, out, sets), state) == -signal.SIGKILL
    assert not out.exists() and partial_dir(out).is_dir()  # killed: only the partial folder is left

    done = subprocess.run(_cli(train_only_dataset, out, sets, "--resume"), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert is_finished(out) and not partial_dir(out).exists()
    resumed = read_json(out / "summary.json")
    assert resumed["resumed_from"] is not None and resumed["global_step"] == expected["global_step"] == 12
    assert abs(resumed["final_train_loss"] - expected["final_train_loss"]) < 1e-4
    assert resumed["tokens_seen"] == expected["tokens_seen"]  # counted across the kill (trainer state)
    losses = {e["step"]: e["loss"] for e in resumed["log_history"] if "loss" in e}
    for entry in expected["log_history"]:
        if "loss" in entry:
            assert abs(losses[entry["step"]] - entry["loss"]) < 1e-4, entry["step"]


def test_resume_of_a_finished_run_returns_it_at_once(tiny_config, train_only_dataset, tmp_path, monkeypatch):
    import sectune.train.run as run_module

    out = train(tiny_config("train.stop_check.enabled=false"), train_only_dataset, tmp_path / "run")
    stamp = (out / "summary.json").stat().st_mtime_ns

    def no_session(*args, **kwargs):
        raise AssertionError("a finished run must be returned without opening a training session")

    monkeypatch.setattr(run_module, "open_session", no_session)  # proves no model load or training starts
    assert train(tiny_config("train.stop_check.enabled=false"), train_only_dataset, out, resume=True) == out
    assert (out / "summary.json").stat().st_mtime_ns == stamp


def _base_sets(tiny_config):
    """The fixture's overrides as CLI --set items (same config in and out of process)."""
    cfg = tiny_config()
    return [
        f"model={cfg.model}",
        f"seed={cfg.seed}",
        f"train.batch_size={cfg.train.batch_size}",
        f"train.grad_accum={cfg.train.grad_accum}",
        f"train.learning_rate={cfg.train.learning_rate}",
        f"train.logging_steps={cfg.train.logging_steps}",
        f"train.precision={cfg.train.precision}",
        f"train.stop_check.enabled={str(cfg.train.stop_check.enabled).lower()}",
    ]


def test_resume_with_a_different_training_config_is_refused(tiny_config, train_only_dataset, tmp_path):
    out = tmp_path / "run"
    partial_dir(out).mkdir()
    write_config(partial_dir(out), tiny_config("train.learning_rate=1e-3"))
    with pytest.raises(UserError, match="differs") as err:
        train(tiny_config(), train_only_dataset, out, resume=True)
    assert err.value.field == "train"
