"""The comparative study: every model × variant {base, lora, qlora, full} trained (or reused), evaluated,
compared on the same questions, and written up as a report folder.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.jsonl import read_jsonl
from sectune.errors import UserError
from sectune.progress import track
from sectune.runs import SUMMARY_FILE, is_finished, read_json, write_run_metadata
from sectune.study.cells import StudyCell

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.config.study import Variant

REPORT_DIR = "report"  # the study's report folder inside its output folder


def slug(model: str) -> str:
    """A folder-safe name for a model key or path."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-") or "model"


def variant_config(cfg: ExperimentConfig, model: str, variant: Variant) -> ExperimentConfig:
    """The experiment config for one cell of the matrix: the model and (for trained variants) the method."""
    update: dict[str, Any] = {"model": model}
    if variant != "base":
        update["train"] = cfg.train.model_copy(update={"method": variant, "model": None})
    return cfg.model_copy(deep=True, update=update)


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


def run_study(cfg: ExperimentConfig, dataset: Path, out: Path, *, overwrite_report: bool = True) -> Path:
    """Train/evaluate the whole matrix, then write ``out/report`` from the collected numbers; returns ``out``."""
    from sectune.study.report import build_report, write_report

    if not dataset.is_dir() or not (dataset / "test.jsonl").is_file():
        raise UserError("not a dataset folder (no test.jsonl)", file=dataset, fix="pass the folder from sectune prep")
    matrix = [(model, variant) for model in cfg.study.models or [cfg.model] for variant in cfg.study.variants]
    cells: list[StudyCell] = []
    with track("study", len(matrix), unit="cells", show_rate=False) as progress:
        for model, variant in matrix:
            progress.update(len(cells), note=f"{slug(model)}/{variant}")
            cells.append(_run_cell(cfg, model, variant, dataset, out))
        if cfg.eval.judge.enabled and cfg.eval.judge.pairwise:
            progress.update(len(cells), note="pairwise judging")
            judge_against_base(cfg, cells)
        progress.update(len(cells), note="writing the report")
        report = build_report(cfg, cells, dataset=dataset)
        report_dir = write_report(report, out / REPORT_DIR, overwrite=overwrite_report)
    write_run_metadata(out, cfg, {"report": str(report_dir), "cells": [f"{c.model}/{c.variant}" for c in cells]})
    return out


def _run_cell(cfg: ExperimentConfig, model: str, variant: Variant, dataset: Path, out: Path) -> StudyCell:
    name = f"{slug(model)}-{variant}"
    cfg_v = variant_config(cfg, model, variant)
    train_summary = None
    target: str | Path = model
    if variant != "base":
        run_dir, _ = train_variant(cfg_v, dataset, out / "runs" / name, reuse=cfg.study.reuse)
        train_summary = read_json(run_dir / SUMMARY_FILE)
        target = run_dir
    result = evaluate_variant(cfg_v, target, dataset, out / "evals" / name, reuse=cfg.study.reuse)
    label = f"{slug(model)}/{variant}"
    return StudyCell(model, variant, label, train=train_summary, eval=result, eval_dir=out / "evals" / name)


def _predictions(cell: StudyCell) -> list[dict[str, Any]]:
    files = sorted((cell.eval_dir / "predictions").glob("*.jsonl"))
    if not files:
        return []
    return read_jsonl(files[0])


def judge_against_base(cfg: ExperimentConfig, cells: list[StudyCell]) -> None:
    """Pairwise LLM judging of each trained variant against its base model's answers (both orders)."""
    from sectune.llm.judge import Judge, judge_pairwise_predictions, run_judge

    bases = {c.model: c for c in cells if c.variant == "base"}

    async def work(judge: Judge) -> None:
        for cell in cells:
            base = bases.get(cell.model)
            if cell.variant == "base" or base is None:
                continue
            base_rows, rows = _predictions(base), _predictions(cell)
            if not rows or len(rows) != len(base_rows):
                continue
            cell.judge_pairwise = await judge_pairwise_predictions(judge, base_rows, rows)

    run_judge(cfg.eval.judge, work)
