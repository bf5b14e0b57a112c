"""``OUT.partial/metrics.jsonl``: one line per trainer log while training runs, for whoever follows the folder.

The trainer's own state (trainer_state.json) appears only inside checkpoints, and the tracking backends are
optional; this file is always there, so the web UI draws a live loss curve from the run folder alone. Each line is
``{"step", "loss", "eval_loss", "epoch", "time"}`` (a missing value is null), flushed at once. A resumed run appends
to the same file: its steps after the last checkpoint come again, and a reader keeps the last line of each step.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

METRICS_FILE = "metrics.jsonl"


def metrics_row(logs: dict[str, Any], step: int, epoch: float | None) -> dict[str, Any] | None:
    """The line for one trainer log, or None when it holds neither loss (the end-of-training totals)."""
    if "loss" not in logs and "eval_loss" not in logs:
        return None
    return {
        "step": step,
        "loss": logs.get("loss"),
        "eval_loss": logs.get("eval_loss"),
        "epoch": epoch,
        "time": round(time.time(), 3),
    }


def metrics_callback(work: Path) -> Any:
    """A TrainerCallback appending :func:`metrics_row` lines to ``work/metrics.jsonl`` (main process only)."""
    from transformers import TrainerCallback

    path = Path(work) / METRICS_FILE

    class MetricsLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            row = metrics_row(logs or {}, state.global_step, state.epoch) if state.is_world_process_zero else None
            if row is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                with path.open("a", encoding="utf-8") as handle:  # open per line: flushed and closed at once
                    handle.write(json.dumps(row) + "\n")

    return MetricsLog()
