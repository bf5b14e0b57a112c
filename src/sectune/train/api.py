"""Python API of the train stage: ``train`` (a run folder) and ``plan`` (a memory estimate, in plan.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sectune.train.plan import MemoryPlan, plan
from sectune.train.run import is_finished, partial_dir

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

__all__ = ["MemoryPlan", "is_finished", "partial_dir", "plan", "train"]


def train(
    cfg: ExperimentConfig, dataset: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """Fine-tune ``cfg.model`` (or ``cfg.train.model``) on a dataset folder and write the run folder ``out``.

    ``cfg`` is an ExperimentConfig; the method (full, lora, qlora, qlora-8bit) and everything else come from
    ``cfg.train``. While training, the run lives in ``OUT.partial/`` (checkpoints included); it becomes
    ``out`` only when training, saving and the checks succeeded. ``resume=True`` continues from the newest
    checkpoint of ``OUT.partial/`` and returns ``out`` at once when it is already a finished run
    (``is_finished(out)``: summary.json plus adapter/ or model/). ``overwrite=True`` replaces both.
    """
    from sectune.train.run import run_training

    return run_training(cfg, dataset, out, resume=resume, overwrite=overwrite)
