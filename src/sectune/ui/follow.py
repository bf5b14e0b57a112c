"""What a run folder says, read while its stage may still be writing it (never changing a byte of it).

Generate: ``requests.jsonl`` (one outcome per finished request slot, with tokens and cost), ``samples.jsonl``,
``topics.jsonl`` and ``config.yaml`` (what the run asks for), then ``summary.json`` once it ended. Train:
``metrics.jsonl`` in ``OUT.partial/`` while training, in ``OUT/`` after. Prep and study: their summary and report.
Append logs are read up to their last complete line: a line being written is simply not there yet.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.data.jsonl import iter_jsonl_text, write_jsonl
from sectune.errors import UserError
from sectune.runs import SUMMARY_FILE, read_json

PARTIAL = ".partial"


def read_appended(path: Path) -> list[Any]:
    """The complete lines of an append log (missing file: none); a torn last line is left out, not cut off."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    text = text[: text.rfind("\n") + 1]
    try:
        return [row for _, row in iter_jsonl_text(text, path)]
    except UserError:
        return []  # a line damaged in the middle: the stage's own resume deals with it


def summary_of(folder: Path) -> dict[str, Any] | None:
    try:
        return read_json(folder / SUMMARY_FILE)
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- generate


@dataclass
class GenerateProgress:
    status: str  # "running", or summary.json's status (complete, incomplete, stopped_budget, ...)
    requested: int | None  # None until the run has its topics
    accepted: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: unknown price
    rate_per_s: float | None = None  # accepted samples per second
    eta_s: float | None = None

    @property
    def fraction(self) -> float:
        return min(1.0, self.accepted / self.requested) if self.requested else 0.0


def generate_progress(
    out: Path, *, running: bool = False, started: float | None = None, now: float | None = None
) -> GenerateProgress:
    """The run's counts: its summary.json once it ended, else (``running``) live from its append logs, with
    rate and ETA from ``started``, the job's start time."""
    summary = summary_of(out)
    if summary is not None and not running:
        return _from_summary(summary)
    usage = [row for row in read_appended(out / "requests.jsonl") if isinstance(row, dict)]
    outcomes = {row["slot"]: row for row in usage}  # the latest line of a slot wins, as on resume
    progress = GenerateProgress(
        status="running",
        requested=_requested(out),
        accepted=len(read_appended(out / "samples.jsonl")),
        rejected=_count(outcomes.values(), "rejected"),
        failed=_count(outcomes.values(), "failed"),
        prompt_tokens=sum(int(row.get("prompt_tokens") or 0) for row in usage),
        completion_tokens=sum(int(row.get("completion_tokens") or 0) for row in usage),
        cost_usd=_total_cost(usage),
    )
    elapsed = (now or time.time()) - started if started else None
    if elapsed and elapsed > 0 and progress.accepted:
        progress.rate_per_s = progress.accepted / elapsed
        if progress.requested:
            progress.eta_s = max(0, progress.requested - progress.accepted) / progress.rate_per_s
    return progress


def _from_summary(summary: dict[str, Any]) -> GenerateProgress:
    cost = summary.get("cost_usd")
    return GenerateProgress(
        status=summary["status"],
        requested=summary["requested"],
        accepted=summary["accepted"],
        rejected=dict(summary.get("rejected") or {}),
        failed=dict(summary.get("failed") or {}),
        prompt_tokens=summary.get("prompt_tokens", 0),
        completion_tokens=summary.get("completion_tokens", 0),
        cost_usd=cost if isinstance(cost, (int, float)) else None,
        rate_per_s=summary.get("samples_per_s_this_session"),
    )


def _requested(out: Path) -> int | None:
    """How many samples the run asks for: the stage's own rule (spread_samples) on its saved topics and config."""
    if not (out / "topics.jsonl").is_file() or not (out / "config.yaml").is_file():
        return None
    from sectune.config import load_config
    from sectune.generate.topics import load_topics, spread_samples

    try:
        topics = load_topics(out / "topics.jsonl")
        return sum(spread_samples(topics, load_config(out / "config.yaml").generate.num_samples))
    except (UserError, OSError, ValueError):
        return None  # being written


def _count(outcomes: Any, status: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for row in outcomes:
        if row.get("status") == status:
            reason = str(row.get("reason") or "unknown")
            counts[reason] = counts.get(reason, 0) + 1
    return counts


def _total_cost(rows: list[dict[str, Any]]) -> float | None:
    costs = [row.get("cost_usd") for row in rows if not row.get("cached")]
    if any(cost is None for cost in costs):
        return None
    return float(sum(costs)) if costs else 0.0  # type: ignore[arg-type]


def sample_table(out: Path) -> list[dict[str, Any]]:
    """Accepted samples as table rows: line number, topic, first question, its answer, number of turns."""
    table = []
    for line, row in enumerate(read_appended(out / "samples.jsonl"), start=1):
        messages = row.get("messages") or []
        user = next((i for i, m in enumerate(messages) if m.get("role") == "user"), None)
        question = messages[user]["content"] if user is not None else ""
        answer = messages[user + 1]["content"] if user is not None and user + 1 < len(messages) else ""
        topic = (row.get("meta") or {}).get("topic", "")
        turns = sum(m.get("role") == "user" for m in messages)
        table.append({"line": line, "topic": topic, "question": question, "answer": answer, "turns": turns})
    return table


def search_samples(table: list[dict[str, Any]], query: str) -> list[dict[str, Any]]:
    """The rows whose topic, question or answer contains every word of ``query`` (case-insensitive)."""
    words = query.lower().split()
    return [
        row for row in table if all(w in f"{row['topic']} {row['question']} {row['answer']}".lower() for w in words)
    ]


def save_sample_edits(out: Path, edits: dict[int, dict[str, str]]) -> int:
    """Write edited questions and answers (by 1-based line) into samples.jsonl; the number of rows changed."""
    rows = read_appended(out / "samples.jsonl")
    changed = 0
    for line, values in edits.items():
        messages = rows[line - 1]["messages"]
        user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        for index, key in ((user, "question"), (user + 1, "answer")):
            if key in values and index < len(messages) and messages[index]["content"] != values[key]:
                messages[index]["content"] = values[key]
                changed += 1
    if changed:
        write_jsonl(out / "samples.jsonl", rows)
    return changed


# ---------------------------------------------------------------- train


def partial(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL)


def train_metrics(out: Path) -> list[dict[str, Any]]:
    """metrics.jsonl of the run (OUT.partial/ while training), the last line of each step (a resume repeats
    the steps after its checkpoint), in step order."""
    folder = out if (out / "metrics.jsonl").is_file() else partial(out)
    by_step: dict[tuple[int, bool], dict[str, Any]] = {}
    for row in read_appended(folder / "metrics.jsonl"):
        by_step[(int(row["step"]), row.get("eval_loss") is not None)] = row
    return [by_step[key] for key in sorted(by_step)]


def loss_series(metrics: list[dict[str, Any]]) -> dict[str, dict[int, float]]:
    """{"train loss": {step: value}, "eval loss": {step: value}} for a line chart."""
    series: dict[str, dict[int, float]] = {"train loss": {}, "eval loss": {}}
    for row in metrics:
        for key, name in (("loss", "train loss"), ("eval_loss", "eval loss")):
            if row.get(key) is not None:
                series[name][int(row["step"])] = float(row[key])
    return series


def max_steps_of(out: Path) -> int | None:
    """train.max_steps of the run's saved config (None when it trains by epochs or has no config yet)."""
    for folder in (out, partial(out)):
        if (folder / "config.yaml").is_file():
            import yaml

            steps = (yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}).get("train", {})
            value = steps.get("max_steps", -1)
            return value if isinstance(value, int) and value > 0 else None
    return None


def has_checkpoint(out: Path) -> bool:
    return any((p / "trainer_state.json").is_file() for p in (partial(out) / "checkpoints").glob("checkpoint-*"))


# ---------------------------------------------------------------- prep, held-out questions, study


def length_histogram(summary: dict[str, Any]) -> tuple[dict[str, int], int, int]:
    """(bins, rows over max_length, max_length) of a dataset's token lengths, all splits."""
    histogram = summary["tokens"]["all"].get("histogram") or {"bins": {}, "max_length": summary["tokens"]["max_length"]}
    max_length = histogram["max_length"]
    # summary.json sorts its keys ("129-192" before "65-128"): put the bins back in length order
    bins = dict(sorted(histogram["bins"].items(), key=lambda item: int(item[0].split("-")[0])))
    return bins, int(histogram.get(f">{max_length}", 0)), int(max_length)


def held_out_questions(run: Path, limit: int = 20) -> list[list[dict[str, str]]]:
    """Prompts from the run's dataset: each test (else validation) row without its last answer."""
    summary = summary_of(run) or {}
    dataset = Path(summary.get("dataset") or "")
    for split in ("test", "validation"):
        file = dataset / f"{split}.jsonl"
        if summary.get("dataset") and file.is_file():
            rows = read_appended(file)[:limit]
            return [row["messages"][:-1] for row in rows if row["messages"][-1]["role"] == "assistant"]
    return []


PLOTS_HEADING = re.compile(r"^## Plots\s*$(.*?)(?=^## |\Z)", re.MULTILINE | re.DOTALL)


def study_report(study: Path) -> tuple[str, list[Path]]:
    """The study's Markdown report without its image links (shown apart) and its PNG plots."""
    report = study / "report"
    text = (report / "report.md").read_text(encoding="utf-8")
    return PLOTS_HEADING.sub("", text), sorted(report.glob("*.png"))
