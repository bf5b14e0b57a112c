"""One cell of the study matrix: a model × variant, how it is trained and evaluated, and what that produced.

``matrix.py`` builds the cells (and adds the pairwise verdicts); ``loop.py`` trains one again on more data;
``report.py`` turns them into report.json.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.runs import SUMMARY_FILE, is_finished, read_json

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.config.study import Variant


@dataclass
class StudyCell:
    """One model × variant of the study."""

    model: str  # a registry key or a model folder (an entry of study.models, or the top-level model)
    variant: Variant  # base, lora, qlora or full
    label: str  # "<model slug>/<variant>": the variant's name in the report
    train: dict[str, Any] | None  # the train run's summary.json; None for the base model
    eval: dict[str, Any]  # the evaluation's result for this one target (its summary.json "targets" entry)
    eval_dir: Path  # the evaluation folder; its predictions/ feed the pairwise judge
    judge_pairwise: dict[str, Any] | None = None  # vs the same model's base answers, when pairwise judging ran
    # where and how it ran (executor, host, pid, start/end times, reused run/evaluation): the study's summary.json
    task: dict[str, Any] = field(default_factory=dict)


def slug(model: str) -> str:
    """A folder-safe name for a model key or path."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-") or "model"


def variant_config(cfg: ExperimentConfig, model: str, variant: Variant) -> ExperimentConfig:
    """The experiment config for one cell of the matrix: the model and (for trained variants) the method."""
    update: dict[str, Any] = {"model": model}
    if variant != "base":
        update["train"] = cfg.train.model_copy(update={"method": variant, "model": None})
    return cfg.model_copy(deep=True, update=update)


def run_cell(
    cfg: ExperimentConfig, model: str, variant: Variant, dataset: Path, out: Path, *, executor: str = "local"
) -> StudyCell:
    """Train (unless base) and evaluate one cell into ``out/runs/<name>`` and ``out/evals/<name>``.

    Everything it writes is in those two folders, so cells are independent: any executor may run them in any
    order or at once, and a finished one is reused (``study.reuse``) by the next run of the study.
    """
    started = time.time()
    name = f"{slug(model)}-{variant}"
    cfg_v = variant_config(cfg, model, variant)
    train_summary, reused_run = None, None
    target: str | Path = model
    if variant != "base":
        run_dir, reused_run = train_variant(cfg_v, dataset, out / "runs" / name, reuse=cfg.study.reuse)
        train_summary = read_json(run_dir / SUMMARY_FILE)
        target = run_dir
    eval_dir = out / "evals" / name
    reused_eval = cfg.study.reuse and is_finished(eval_dir)
    result = evaluate_variant(cfg_v, target, dataset, eval_dir, reuse=cfg.study.reuse)
    task = {
        "executor": executor,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": started,
        "ended": time.time(),
        "reused_run": reused_run,  # None for the base model (nothing to train)
        "reused_eval": reused_eval,
    }
    label = f"{slug(model)}/{variant}"
    return StudyCell(model, variant, label, train=train_summary, eval=result, eval_dir=eval_dir, task=task)


def train_variant(cfg_v: ExperimentConfig, dataset: Path, run_dir: Path, *, reuse: bool) -> tuple[Path, bool]:
    """Train one variant into ``run_dir`` unless a finished run is there (then reuse it); (run, reused).

    With ``reuse`` a killed run continues from its newest checkpoint (the train stage's resume).
    """
    try:
        from sectune.train.api import is_finished as is_finished_run
        from sectune.train.api import train
    except ImportError:
        raise UserError(
            "the study needs the train stage",
            field="study.variants",
            fix="install sectune[train] or use variants: [base]",
        ) from None
    if reuse and is_finished_run(run_dir):  # the run-folder contract, and the weights are there
        return run_dir, True
    return Path(train(cfg_v, dataset, run_dir, resume=reuse, overwrite=not reuse)), False


def evaluate_variant(
    cfg_v: ExperimentConfig, target: str | Path, dataset: Path, eval_dir: Path, *, reuse: bool
) -> dict[str, Any]:
    """Evaluate one variant into ``eval_dir`` (reused when finished); its result for the single target."""
    from sectune.evaluate.api import evaluate

    if not (reuse and is_finished(eval_dir)):
        evaluate(cfg_v, target, eval_dir, dataset=dataset, overwrite=True)
    targets = read_json(eval_dir / SUMMARY_FILE)["targets"]
    return next(iter(targets.values()))
