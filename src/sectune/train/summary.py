"""What a finished train run reports in its summary.json: one typed record instead of a hand-built dict.

Every field is written (key order does not matter: run files are written with sorted keys); readers such as
the study's report read the JSON back, so the names here are the file's contract.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class TrainSummary:
    base_model: str
    method: str
    precision: str
    gradient_checkpointing: bool
    gradient_checkpointing_reason: str
    batch_size: int
    grad_accum: int
    world_size: int  # training processes (accelerate launch --num_processes × machines); 1 without a launcher
    effective_batch_size: int  # rows per optimizer step: batch_size × world_size × grad_accum
    lora_targets: Any  # list of module names, "all-linear", or None (full fine-tuning)
    trainable_params: int
    total_params: int
    train_runtime_s: float
    tokens_seen: int
    tokens_per_s: float | None  # this session's tokens (a resume counts only what it trained)
    peak_memory_mb: float
    peak_memory_kind: str  # peak_rss_sampled (CPU) or cuda_max_allocated
    memory_at_start_mb: float
    resumed_from: str | None
    global_step: int
    epochs_done: float
    final_train_loss: float | None
    best_checkpoint: str | None
    log_history: list[dict[str, Any]]
    rows: dict[str, int]
    dataset: str
    data_fingerprint: str
    tracking: list[str]
    data_checks: dict[str, Any]
    eval_loss: float | None = None
    eval_loss_from: str | None = None
    stop_check: dict[str, Any] | None = None  # set after the weights are saved (it loads them)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        if data["stop_check"] is None:
            del data["stop_check"]  # not measured yet: absent, as before the stop check runs
        return data
