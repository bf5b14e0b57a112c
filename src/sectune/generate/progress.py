"""What the generate command prints before and after a run (live progress is sectune.progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cost(value: Any) -> str:
    return "unknown" if value is None or value == "unknown" else f"${float(value):.4f}"


def describe_plan(plan: dict[str, Any]) -> str:
    """One line (plus a warning line per topic a sheet lists twice)."""
    budget = f", budget ${plan['budget_usd']}" if plan.get("budget_usd") else ""
    line = (
        f"{plan['provider']}:{plan['model']} · {plan['topics']} topics · {plan['remaining']} of "
        f"{plan['requested']} samples to go · cost estimate ≤ {_cost(plan['cost_estimate_usd'])}{budget}"
    )
    counts = plan.get("topic_counts")
    if not counts:
        return line
    line += f" · per-topic counts from the topics file, not generate.num_samples={counts['num_samples_ignored']}"
    changes = [
        f"{name.removeprefix('sheet_')} {counts[name]}"
        for name in ("sheet_rows", "sheet_scale", "sheet_max_per_topic")
        if counts.get(name) is not None
    ]
    if changes or counts["asked"] != counts["requested"]:
        line += f" (the sheet asks for {counts['asked']}; {', '.join(changes) or 'adjusted'}: {counts['requested']})"
    lines = [line]
    for name, dup in counts.get("duplicate_topics", {}).items():
        ids, kept = ", ".join(dup["ids"]), dup["topics"]
        how = (
            "merged into one topic (same domain type)"
            if kept == 1
            else f"kept as {kept} topics, told apart by domain type ({', '.join(dup['domain_types'])})"
        )
        lines.append(f"warning: topic '{name}' is listed {len(dup['ids'])} times in the topics file (ids {ids}): {how}")
    return "\n".join(lines)


def describe_summary(summary: dict[str, Any], out: Path) -> str:
    lines = [
        f"{summary['status']}: {summary['accepted']}/{summary['requested']} samples in {out}",
        f"  rejected: {summary['rejected'] or 'none'}",
        f"  failed: {summary['failed'] or 'none'}",
        f"  errors (incl. retried): {summary['errors_this_session'] or 'none'}",
        f"  tokens: {summary['prompt_tokens']} in, {summary['completion_tokens']} out",
        f"  cost: {_cost(summary['cost_usd'])}",
    ]
    short = summary.get("shortfall")
    if short:
        lines.append(f"  why: {short['why']}")
        lines.append(f"  next: {short['fix']}")
    elif summary["status"] == "stopped_budget":
        lines.append("  continue with: sectune generate --resume (same --out and config)")
    return "\n".join(lines)
