"""One cell of the study matrix: a model × variant, and what its training and evaluation produced.

``matrix.py`` builds the cells (and adds the pairwise verdicts); ``report.py`` turns them into report.json.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
