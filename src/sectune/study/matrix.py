"""The comparative study: every model × variant {base, lora, qlora, full} trained (or reused), evaluated,
compared on the same questions, and written up as a report folder.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from sectune.errors import UserError
from sectune.progress import track
from sectune.runs import read_json, write_run_metadata

REPORT_DIR = "report"  # the study's report folder inside its output folder


def slug(model: str) -> str:
    """A folder-safe name for a model key or path."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name or model).strip("-") or "model"


def variant_config(cfg: Any, model: str, variant: str) -> Any:
    """The experiment config for one cell of the matrix: the model and (for trained variants) the method."""
    update: dict[str, Any] = {"model": model}
    if variant != "base":
        update["train"] = cfg.train.model_copy(update={"method": variant, "model": None})
    return cfg.model_copy(deep=True, update=update)


def train_variant(cfg_v: Any, dataset: Path, run_dir: Path, *, reuse: bool) -> tuple[Path, bool]:
    """Train one variant into ``run_dir`` unless a finished run is there (then reuse it); (run, reused).

    With ``reuse`` a killed run continues from its newest checkpoint (the train stage's resume).
    """
    try:
        from sectune.train.api import is_finished, train
    except ImportError:
        raise UserError(
            "the study needs the train stage",
            field="study.variants",
            fix="install sectune[train] or use variants: [base]",
        ) from None
    if reuse and is_finished(run_dir):
        return run_dir, True
    return Path(train(cfg_v, dataset, run_dir, resume=reuse, overwrite=not reuse)), False


def evaluate_variant(cfg_v: Any, target: str | Path, dataset: Path, eval_dir: Path, *, reuse: bool) -> dict[str, Any]:
    """Evaluate one variant into ``eval_dir`` (reused when finished); its result for the single target."""
    from sectune.evaluate.api import evaluate

    if not (reuse and (eval_dir / "summary.json").is_file()):
        evaluate(cfg_v, target, eval_dir, dataset=dataset, overwrite=True)
    targets = read_json(eval_dir / "summary.json")["targets"]
    return next(iter(targets.values()))


def run_study(cfg: Any, dataset: Path, out: Path, *, overwrite_report: bool = True) -> Path:
    """Train/evaluate the whole matrix, then write ``out/report`` from the collected numbers; returns ``out``."""
    from sectune.study.report import build_report, write_report

    if not dataset.is_dir() or not (dataset / "test.jsonl").is_file():
        raise UserError("not a dataset folder (no test.jsonl)", file=dataset, fix="pass the folder from sectune prep")
    matrix = [(model, variant) for model in cfg.study.models or [cfg.model] for variant in cfg.study.variants]
    cells: list[dict[str, Any]] = []
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
    write_run_metadata(out, cfg, {"report": str(report_dir), "cells": [f"{c['model']}/{c['variant']}" for c in cells]})
    return out


def _run_cell(cfg: Any, model: str, variant: str, dataset: Path, out: Path) -> dict[str, Any]:
    name = f"{slug(model)}-{variant}"
    cfg_v = variant_config(cfg, model, variant)
    train_summary = None
    target: str | Path = model
    if variant != "base":
        run_dir, _ = train_variant(cfg_v, dataset, out / "runs" / name, reuse=cfg.study.reuse)
        train_summary = read_json(run_dir / "summary.json")
        target = run_dir
    result = evaluate_variant(cfg_v, target, dataset, out / "evals" / name, reuse=cfg.study.reuse)
    label = f"{slug(model)}/{variant}"
    return {
        "model": model,
        "variant": variant,
        "label": label,
        "train": train_summary,
        "eval": result,
        "eval_dir": out / "evals" / name,
    }


def _predictions(cell: dict[str, Any]) -> list[dict[str, Any]]:
    files = sorted((cell["eval_dir"] / "predictions").glob("*.jsonl"))
    if not files:
        return []
    return [json.loads(line) for line in files[0].read_text(encoding="utf-8").splitlines() if line.strip()]


def judge_against_base(cfg: Any, cells: list[dict[str, Any]]) -> None:
    """Pairwise LLM judging of each trained variant against its base model's answers (both orders)."""
    import asyncio

    from sectune.evaluate.judge import build_judge, judge_pairwise

    bases = {c["model"]: c for c in cells if c["variant"] == "base"}

    async def run() -> None:
        judge = build_judge(cfg.eval.judge)
        try:
            for cell in cells:
                base = bases.get(cell["model"])
                if cell["variant"] == "base" or base is None:
                    continue
                base_rows, rows = _predictions(base), _predictions(cell)
                if not rows or len(rows) != len(base_rows):
                    continue
                questions = [r["messages"][-1]["content"] for r in rows]
                references = [r["reference"] for r in rows]
                cell["judge_pairwise"] = await judge_pairwise(
                    judge, questions, references, [r["prediction"] for r in base_rows], [r["prediction"] for r in rows]
                )
        finally:
            await judge.provider.aclose()

    asyncio.run(run())
