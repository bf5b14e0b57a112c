"""Python API of the train stage: ``train`` (a run folder) and ``plan`` (a memory estimate)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sectune.errors import UserError
from sectune.train.plan import MemoryPlan
from sectune.train.run import is_finished, partial_dir

__all__ = ["MemoryPlan", "is_finished", "partial_dir", "plan", "train"]


def train(cfg: Any, dataset: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Fine-tune ``cfg.model`` (or ``cfg.train.model``) on a dataset folder and write the run folder ``out``.

    ``cfg`` is an ExperimentConfig; the method (full, lora, qlora, qlora-8bit) and everything else come from
    ``cfg.train``. While training, the run lives in ``OUT.partial/`` (checkpoints included); it becomes
    ``out`` only when training, saving and the checks succeeded. ``resume=True`` continues from the newest
    checkpoint of ``OUT.partial/`` and returns ``out`` at once when it is already a finished run
    (``is_finished(out)``: summary.json plus adapter/ or model/). ``overwrite=True`` replaces both.
    """
    from sectune.train.run import run_training

    return run_training(cfg, dataset, out, resume=resume, overwrite=overwrite)


def plan(
    cfg: Any,
    *,
    arch: Any = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    method: str | None = None,
    gradient_checkpointing: bool | None = None,
    precision: str | None = None,
) -> MemoryPlan:
    """Estimate the memory ``cfg``'s training run needs, next to what this machine has.

    Keyword arguments override the config (``arch``: an ``Architecture`` for a model not in the registry).
    """
    from sectune.models.load import ResolvedModel, resolve_model
    from sectune.registry.models import REGISTRY
    from sectune.train.model import lora_targets, resolve_batch, resolve_precision
    from sectune.train.plan import plan_for_machine

    train_cfg = cfg.train
    ref = train_cfg.model or cfg.model
    spec = REGISTRY.get(ref)
    if spec is None and arch is None:
        spec = resolve_model(ref).spec  # a folder whose config names a registry model
        if spec is None:
            raise UserError(
                f"no architecture numbers for model '{ref}'",
                field="model",
                fix="plan a registry model (sectune models) or pass arch= from Python",
            )
    targets = lora_targets(train_cfg.lora, ResolvedModel(ref, spec, ref))
    checkpointing = train_cfg.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    return plan_for_machine(
        {
            "spec": spec or ref,
            "arch": arch,
            "method": method or train_cfg.method,
            "batch_size": batch_size or resolve_batch(train_cfg.batch_size, train_cfg.grad_accum)[0],
            "max_length": max_length or train_cfg.max_length or cfg.prep.max_length,
            "lora_r": train_cfg.lora.r,
            "lora_targets": targets,
            "lora_dropout": train_cfg.lora.dropout,
            "gradient_checkpointing": checkpointing is True,
            "precision": precision or resolve_precision(train_cfg.precision),
        }
    )
