"""The row of the bench table and what each area's ``run`` receives."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("sectune.bench")


@dataclass(frozen=True)
class Measure:
    """One figure of sectune beside its baseline (a peer tool, a ceiling or a bare loop) and the target.

    ``ratio`` is ``value / baseline_value`` unless the area sets it (e.g. lower-is-better figures state their
    own direction in ``target``). ``met`` is None when the target could not be judged (skipped, failed, no
    target); then ``note`` says why.
    """

    area: str  # startup | train | generate | eval | gpu
    name: str  # what is measured, e.g. "LoRA tokens/s"
    value: float | None  # sectune's figure
    unit: str  # tokens/s, samples/s, s, GB …
    baseline: str | None = None  # what it is compared with: "trl defaults", "deepfabric 0.x", "ceiling"
    baseline_value: float | None = None
    ratio: float | None = None
    target: str = ""  # "≥ 3×", "≤ 0.6× LoRA peak", "< 0.5 s"
    met: bool | None = None
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)  # raw figures for the JSON (not in the table)

    def with_ratio(self) -> Measure:
        """This measure with ``ratio`` filled from value/baseline_value when both exist and it is unset."""
        if self.ratio is not None or self.value is None or not self.baseline_value:
            return self
        return Measure(**{**asdict(self), "ratio": self.value / self.baseline_value})

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchContext:
    """What an area needs: a scratch folder of its own, the size (``quick`` for a smoke run) and a logger."""

    work: Path  # a fresh folder for this area's files (venvs of peers go in ``cache``)
    cache: Path  # kept between runs: peers' venvs, downloaded packages (~/.cache/sectune/bench by default)
    quick: bool = False  # smallest sizes that still exercise every code path (the harness test uses it)
    say: Callable[[str], None] = log.info  # one progress line
