"""Python API of the train stage: ``train`` (a run folder) and ``plan`` (a memory estimate, in plan.py)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sectune.train.plan import MemoryPlan, plan
from sectune.train.run import is_finished, partial_dir

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.train.hosted.run import DryRun

__all__ = ["MemoryPlan", "dry_run", "is_finished", "partial_dir", "plan", "train"]


def train(
    cfg: ExperimentConfig,
    dataset: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cancel_on_interrupt: bool = False,
) -> Path:
    """Fine-tune ``cfg.model`` (or ``cfg.train.model``) on a dataset folder and write the run folder ``out``.

    ``cfg`` is an ExperimentConfig; the method (full, lora, qlora, qlora-8bit) and everything else come from
    ``cfg.train``. While training, the run lives in ``OUT.partial/`` (checkpoints included); it becomes
    ``out`` only when training, saving and the checks succeeded. ``resume=True`` continues from the newest
    checkpoint of ``OUT.partial/`` and returns ``out`` at once when it is already a finished run
    (``is_finished(out)``: summary.json plus adapter/ or model/). ``overwrite=True`` replaces both.

    ``cfg.train.backend`` other than ``local`` trains on that hosted service (``sectune.train.hosted``): the
    job id is recorded in ``OUT.partial/`` as soon as the job exists, so ``resume=True`` re-attaches to it;
    ``cancel_on_interrupt`` cancels the remote job on Ctrl-C instead of asking.
    """
    if cfg.train.backend != "local":
        from sectune.train.hosted.run import run_hosted

        return run_hosted(
            cfg, dataset, out, resume=resume, overwrite=overwrite, cancel_on_interrupt=cancel_on_interrupt
        )
    from sectune.train.run import run_training

    return run_training(cfg, dataset, out, resume=resume, overwrite=overwrite)


def dry_run(cfg: ExperimentConfig, dataset: str | Path) -> DryRun:
    """What a hosted run (``cfg.train.backend``) would upload and send, and its estimated cost; sends nothing."""
    from sectune.train.hosted.run import dry_run as hosted_dry_run

    return hosted_dry_run(cfg, dataset)
