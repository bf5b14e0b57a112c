"""The comparative study: every model × variant {base, lora, qlora, full} trained (or reused), evaluated,
compared on the same questions, and written up as a report folder. The cells run here one after another
(``study.executor: local``) or as Ray tasks (``ray_executor.py``); judging, the loop and the report come after.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.jsonl import read_jsonl
from sectune.errors import UserError
from sectune.progress import Tracker, track
from sectune.runs import write_run_metadata
from sectune.study.cells import StudyCell, run_cell, slug

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.config.study import Variant

REPORT_DIR = "report"  # the study's report folder inside its output folder


def run_study(cfg: ExperimentConfig, dataset: Path, out: Path, *, overwrite_report: bool = True) -> Path:
    """Train/evaluate the whole matrix, then write ``out/report`` from the collected numbers; returns ``out``."""
    from sectune.study.report import build_report, write_report

    if not dataset.is_dir() or not (dataset / "test.jsonl").is_file():
        raise UserError("not a dataset folder (no test.jsonl)", file=dataset, fix="pass the folder from sectune prep")
    matrix = [(model, variant) for model in cfg.study.models or [cfg.model] for variant in cfg.study.variants]
    with track("study", len(matrix), unit="cells", show_rate=False) as progress:
        if cfg.study.executor == "ray":
            from sectune.study.ray_executor import run_cells_on_ray

            cells = run_cells_on_ray(cfg, matrix, dataset, out, progress)
        else:
            cells = _run_cells_here(cfg, matrix, dataset, out, progress)
        if cfg.eval.judge.enabled and cfg.eval.judge.pairwise:
            progress.update(len(cells), note="pairwise judging")
            judge_against_base(cfg, cells)
        loop = None
        if cfg.study.loop:
            from sectune.study.loop import run_loop

            progress.update(len(cells), note="loop: new samples for the weak topics, train and evaluate again")
            loop = run_loop(cfg, cells, dataset, out)
        progress.update(len(cells), note="writing the report")
        report = build_report(cfg, cells, dataset=dataset, loop=loop)
        report_dir = write_report(report, out / REPORT_DIR, overwrite=overwrite_report)
    summary = {
        "report": str(report_dir),
        "cells": [f"{c.model}/{c.variant}" for c in cells],
        "executor": cfg.study.executor,
        "tasks": {c.label: c.task for c in cells},  # where each cell ran, and whether it reused a finished run
    }
    write_run_metadata(out, cfg, summary)
    return out


def _run_cells_here(
    cfg: ExperimentConfig, matrix: list[tuple[str, Variant]], dataset: Path, out: Path, progress: Tracker
) -> list[StudyCell]:
    """The local executor: every cell in this process, one after another, in matrix order."""
    cells: list[StudyCell] = []
    for model, variant in matrix:
        progress.update(len(cells), note=f"{slug(model)}/{variant}")
        cells.append(run_cell(cfg, model, variant, dataset, out))
    return cells


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
