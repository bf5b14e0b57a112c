"""What the generate command prints before and after a run (live progress is sectune.progress)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _cost(value: Any) -> str:
    return "unknown" if value is None or value == "unknown" else f"${float(value):.4f}"


def describe_plan(plan: dict[str, Any]) -> str:
    budget = f", budget ${plan['budget_usd']}" if plan.get("budget_usd") else ""
    return (
        f"{plan['provider']}:{plan['model']} · {plan['topics']} topics · {plan['remaining']} of "
        f"{plan['requested']} samples to go · cost estimate ≤ {_cost(plan['cost_estimate_usd'])}{budget}"
    )


def describe_summary(summary: dict[str, Any], out: Path) -> str:
    lines = [
        f"{summary['status']}: {summary['accepted']}/{summary['requested']} samples in {out}",
        f"  rejected: {summary['rejected'] or 'none'}",
        f"  failed: {summary['failed'] or 'none'}",
        f"  errors (incl. retried): {summary['errors_this_session'] or 'none'}",
        f"  tokens: {summary['prompt_tokens']} in, {summary['completion_tokens']} out",
        f"  cost: {_cost(summary['cost_usd'])}",
    ]
    if summary["status"] in ("stopped_budget", "incomplete"):
        lines.append("  continue with: sectune generate --resume (same --out and config)")
    return "\n".join(lines)
