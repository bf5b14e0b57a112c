"""metrics.jsonl: the trainer's losses, line by line while it trains (what the UI draws its live curve from)."""

from __future__ import annotations

import json

import sectune.train.metrics_log as metrics_log
from sectune.train.api import train
from sectune.train.metrics_log import METRICS_FILE, metrics_row


def test_each_log_is_on_disk_in_the_partial_folder_at_once_and_stays_in_the_run(
    tiny_config, tiny_dataset, tmp_path, monkeypatch
):
    partial = tmp_path / "run.partial" / METRICS_FILE
    lines_on_disk = []  # what a reader of the folder sees right after each log
    make = metrics_log.metrics_callback

    def probed(work):
        callback = make(work)
        on_log = callback.on_log

        def on_log_then_read(*args, **kwargs):
            on_log(*args, **kwargs)
            lines_on_disk.append(len(partial.read_text().splitlines()) if partial.is_file() else 0)

        callback.on_log = on_log_then_read
        return callback

    monkeypatch.setattr(metrics_log, "metrics_callback", probed)
    run = train(
        tiny_config("train.max_steps=4", "train.save_steps=2", "train.eval_steps=2"), tiny_dataset, tmp_path / "run"
    )
    rows = [json.loads(line) for line in (run / METRICS_FILE).read_text().splitlines()]
    # each loss log is a line on disk before training goes on (the end-of-training totals add none)
    assert sorted(set(lines_on_disk)) == list(range(1, len(rows) + 1))
    train_rows = [r for r in rows if r["loss"] is not None]
    assert [r["step"] for r in train_rows] == [1, 2, 3, 4]
    # evaluations at steps 2 and 4, then the final evaluation after training (step 4 again: a reader keeps the last)
    assert [r["step"] for r in rows if r["eval_loss"] is not None] == [2, 4, 4]
    assert all(set(r) == {"step", "loss", "eval_loss", "epoch", "time"} for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert [r["loss"] for r in train_rows] == [e["loss"] for e in summary["log_history"] if "loss" in e]


def test_a_log_without_a_loss_is_no_line():
    assert metrics_row({"train_runtime": 3.0, "train_loss": 1.0}, 4, 1.0) is None
    assert metrics_row({"eval_loss": 2.5}, 4, 1.0)["eval_loss"] == 2.5
