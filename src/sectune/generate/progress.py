"""Progress reporting: a rich bar for the terminal; the engine itself only calls a callback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sectune.generate.engine import Progress


def _cost(value: Any) -> str:
    return "unknown" if value is None or value == "unknown" else f"${float(value):.4f}"


class RichProgress:
    """A rich progress bar with rate, ETA, tokens and cost, fed by ``update(Progress)``."""

    def __init__(self, console: Any, *, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()

    def start(self, plan: dict[str, Any]) -> None:
        if not self.enabled:
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("generating"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeRemainingColumn(),
            TextColumn("{task.fields[extra]}"),
            console=self.console,
            transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(
            "gen", total=plan["requested"], completed=plan["already_accepted"], rate="", extra=""
        )

    def update(self, progress: Progress) -> None:
        if self._bar is None:
            return
        extra = (
            f"rejected {progress.rejected} failed {progress.failed} · "
            f"tokens {progress.prompt_tokens + progress.completion_tokens} · cost {_cost(progress.cost_usd)}"
        )
        self._bar.update(self._task, completed=progress.accepted, rate=f"{progress.rate_per_s:.2f}/s", extra=extra)


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
