"""The study stage's Python API: ``study`` (models × {base, lora, qlora, full} → one report).

    from sectune.config import load_config
    from sectune.api import study
    out = study(load_config("configs/study-smollm2.yaml"), "runs/dataset", "runs/study")
    print(out / "report" / "report.md")

The study sits above train and evaluate: it calls both, and neither knows it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sectune.study.matrix import REPORT_DIR, run_study

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

__all__ = ["REPORT_DIR", "study"]


def study(cfg: ExperimentConfig, dataset: str | Path, out: str | Path, *, overwrite_report: bool = True) -> Path:
    """Train (or reuse) and evaluate every model × variant, then write ``out/report/``; returns ``out``.

    Runs go to ``out/runs/<model>-<variant>`` and evaluations to ``out/evals/<model>-<variant>``; a run or
    evaluation whose summary.json exists is reused, so an interrupted study continues where it stopped.
    """
    return run_study(cfg, Path(dataset), Path(out), overwrite_report=overwrite_report)
