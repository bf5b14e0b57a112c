"""The study's "where it is weak" section: each variant's scores by topic, domain type and benchmark category.

The numbers come from each evaluation's breakdowns (``sectune.evaluate.breakdown``); the rows of a table are in
the worst-first order of the reference variant (the first trained one, else the first), so one glance shows
where the fine-tuned model is weakest and how the others compare there.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sectune.study.cells import StudyCell

WEAK_SPOTS_PLOT = "weak_spots.png"
Table = tuple[str, list[str], list[list[str]]]


def weak_spots(cells: list[StudyCell]) -> dict[str, Any]:
    """report.json's ``weak_spots``: {"held_out": {dimension: section}, "mcq": {benchmark: section}}, where a
    section is {"metric", "reference", "variants": {label: groups worst first}}."""
    held_out: dict[str, dict[str, Any]] = {}
    mcq: dict[str, dict[str, Any]] = {}
    for cell in _reference_first(cells):
        for dimension, metrics in ((cell.eval.get("generation") or {}).get("breakdown") or {}).items():
            metric, groups = next(iter(metrics.items()))
            section = held_out.setdefault(dimension, {"metric": metric, "reference": cell.label, "variants": {}})
            section["variants"][cell.label] = metrics.get(section["metric"], groups)
        for bench, result in (cell.eval.get("mcq") or {}).items():
            method, data = next(iter(result["methods"].items()))
            if not data.get("by_category"):
                continue
            section = mcq.setdefault(bench, {"metric": f"{method} accuracy", "reference": cell.label, "variants": {}})
            chosen = result["methods"].get(section["metric"].removesuffix(" accuracy"), data)
            section["variants"][cell.label] = chosen["by_category"]
    return {"held_out": held_out, "mcq": mcq}


def _reference_first(cells: list[StudyCell]) -> list[StudyCell]:
    trained = [c for c in cells if c.variant != "base"]
    reference = trained[0] if trained else (cells[0] if cells else None)
    return [reference, *[c for c in cells if c is not reference]] if reference else []


def _sections(report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(title, section) with the reference variant first in ``variants`` (report.json stores keys sorted)."""
    found = report.get("weak_spots") or {}
    titled = [(f"held-out {s['metric']} by {dim}", s) for dim, s in (found.get("held_out") or {}).items()]
    titled += [(f"{bench} {s['metric']} by category", s) for bench, s in (found.get("mcq") or {}).items()]
    return [(title, {**s, "variants": _reference_first_map(s)}) for title, s in titled]


def _reference_first_map(section: dict[str, Any]) -> dict[str, Any]:
    variants = section["variants"]
    return {section["reference"]: variants[section["reference"]], **variants}


def weak_spot_tables(report: dict[str, Any], fmt_interval: Any) -> list[Table]:
    """One table per section: a row per group (worst first for the reference variant), a column per variant."""
    tables = []
    for title, section in _sections(report):
        variants = section["variants"]
        order = [g["group"] for g in variants[section["reference"]]]
        header = ["group", *(f"{label} [95 % CI] (n)" for label in variants)]
        rows = []
        for group in order:
            cells = []
            for groups in variants.values():
                entry = next((g for g in groups if g["group"] == group), None)
                cells.append(f"{fmt_interval(entry)} ({entry['n']})" if entry else "—")
            rows.append([group, *cells])
        worst = f"worst first for {section['reference']}"
        tables.append((f"Where it is weak: {title} ({worst})", header, rows))
    return tables


def plot_weak_spots(report: dict[str, Any], path: Path) -> bool:
    """weak_spots.png: one panel per section; False (nothing written) when the study has no breakdown."""
    from sectune.evaluate.breakdown import plot_breakdowns

    panels = [(f"{title} (worst first, 95 % intervals)", section["variants"]) for title, section in _sections(report)]
    return plot_breakdowns(panels, path)
