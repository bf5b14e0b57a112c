"""``generate.focus``: an evaluation's weakest topics become the topic plan of a new generation run.

The rule (also in docs/generate.md): take the evaluation target's held-out score per topic (``summary.json``,
``generation.breakdown.topic.<metric>``, worst first), leave out topics with fewer than ``min_rows`` scored rows
and rows with no topic; ``best`` is the highest topic score and a topic's gap is ``best − score``. Every topic
with a gap above 0 is weak (only the ``max_topics`` weakest, when set). The run's ``num_samples`` are shared
among the weak topics in proportion to their gaps (largest-remainder rounding, so they add up to
``num_samples``), then each count is raised to ``floor`` and lowered to ``cap``. The plan, with the evaluation
it came from, is written to the run folder as ``focus.json``.

This module reads the evaluation's files only: generate sits below evaluate and never imports it.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.generate.topics import Topic
from sectune.runs import SUMMARY_FILE, read_json

if TYPE_CHECKING:
    from sectune.config.generate import FocusPlanConfig

FOCUS_FILE = "focus.json"
NO_GROUP = "(none)"  # sectune.evaluate.breakdown's name for rows without a topic


def focus_plan(eval_dir: str | Path, total: int, rule: FocusPlanConfig) -> dict[str, Any]:
    """{"eval_dir", "target", "metric", "best", "rule", "topics": [{topic, path, score, n, gap, samples}]}."""
    label, groups = _topic_scores(Path(eval_dir), rule)
    usable = [g for g in groups if g["group"] != NO_GROUP and g["n"] >= rule.min_rows]
    if not usable:
        raise UserError(
            f"no topic has {rule.min_rows} or more scored test rows",
            file=Path(eval_dir) / SUMMARY_FILE,
            field="generate.focus_plan.min_rows",
            fix="lower generate.focus_plan.min_rows, or evaluate on a larger test split",
        )
    best = max(g["value"] for g in usable)
    weak = sorted((g for g in usable if g["value"] < best), key=lambda g: (g["value"], g["n"], g["group"]))
    if rule.max_topics is not None:
        weak = weak[: rule.max_topics]
    if not weak:
        raise UserError(
            f"every topic scored the same ({rule.metric} {best:g}): none is weaker than another",
            file=Path(eval_dir) / SUMMARY_FILE,
            field="generate.focus",
            fix="generate with the usual topics, or focus on an evaluation with more test rows",
        )
    gaps = [best - g["value"] for g in weak]
    counts = [_bounded(n, rule) for n in _largest_remainder(gaps, total)]
    topics = [
        {
            "topic": g["group"],
            "path": list(g.get("path") or g["group"].split(" > ")),
            "domain_type": g.get("domain_type"),
            "topic_id": g.get("topic_id"),
            "score": g["value"],
            "n": g["n"],
            "gap": gap,
            "samples": count,
        }
        for g, gap, count in zip(weak, gaps, counts, strict=True)
    ]
    rule_entry = rule.model_dump() | {"num_samples": total}
    return {"eval_dir": str(eval_dir), "target": label, "metric": rule.metric, "best": best, "rule": rule_entry,
            "topics": topics}  # fmt: skip


def focus_topics(plan: dict[str, Any]) -> list[Topic]:
    """The plan's topics as generation topics, each with its own sample count (0-sample topics left out)."""
    return [
        Topic(
            list(entry["path"]),
            samples=entry["samples"],
            domain_type=entry.get("domain_type"),
            id=str(entry["topic_id"]) if entry.get("topic_id") is not None else None,
        )
        for entry in plan["topics"]
        if entry["samples"] > 0
    ]


def _topic_scores(eval_dir: Path, rule: FocusPlanConfig) -> tuple[str, list[dict[str, Any]]]:
    """(target label, its per-topic groups for ``rule.metric``) from an evaluation folder."""
    summary_file = eval_dir / SUMMARY_FILE
    if not summary_file.is_file():
        raise UserError(
            "not a finished evaluation (no summary.json)",
            file=eval_dir,
            field="generate.focus",
            fix="pass the --out folder of `sectune eval ... --dataset DIR`",
        )
    summary = read_json(summary_file)
    targets = summary.get("targets") or {}
    order = summary.get("order") or list(targets)
    label = rule.target or (order[-1] if order else None)
    if label not in targets:
        raise UserError(
            f"the evaluation has no target {label!r}",
            file=summary_file,
            field="generate.focus_plan.target",
            fix=f"use one of: {', '.join(order) or '(none)'}",
        )
    by_topic = ((targets[label].get("generation") or {}).get("breakdown") or {}).get("topic")
    if not by_topic:
        raise UserError(
            "the evaluation has no per-topic scores (its test rows carry no meta.topic, or it ran without --dataset)",
            file=summary_file,
            field="generate.focus",
            fix="evaluate on a dataset prepared from `sectune generate` samples (their meta names the topic)",
        )
    if rule.metric not in by_topic:
        raise UserError(
            f"the evaluation did not compute {rule.metric}",
            file=summary_file,
            field="generate.focus_plan.metric",
            fix=f"use one of: {', '.join(by_topic)}",
        )
    return str(label), list(by_topic[rule.metric])


def _largest_remainder(weights: list[float], total: int) -> list[int]:
    """``total`` split in proportion to ``weights``, as integers that add up to ``total`` (ties: first wins)."""
    whole = sum(weights)
    shares = [total * w / whole for w in weights]
    counts = [math.floor(s) for s in shares]
    left = total - sum(counts)
    by_remainder = sorted(range(len(shares)), key=lambda i: (-(shares[i] - counts[i]), i))
    for i in by_remainder[:left]:
        counts[i] += 1
    return counts


def _bounded(count: int, rule: FocusPlanConfig) -> int:
    count = max(count, rule.floor)
    return min(count, rule.cap) if rule.cap is not None else count
