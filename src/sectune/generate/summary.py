"""The plan a generate run announces before it starts, and the summary.json it writes when it stops."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.jsonl import read_jsonl
from sectune.generate.store import SAMPLES_FILE
from sectune.llm.requests import estimate_tokens

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.generate.engine import Engine, RunState
    from sectune.generate.topics import Topic
    from sectune.llm.base import Provider


def run_plan(
    cfg: ExperimentConfig,
    prov: Provider,
    topic_list: list[Topic],
    targets: list[int],
    state: RunState,
    price: tuple[float, float] | None,
) -> dict[str, Any]:
    """What the run will do and an upper-bound cost estimate (every answer using max_tokens)."""
    from sectune.generate.samples import sample_prompt
    from sectune.llm.prices import cost_usd

    gen = cfg.generate
    accepted, _, _ = state.counts()
    remaining = max(0, sum(targets) - accepted)
    prompt_tokens = (
        estimate_tokens(sample_prompt(topic_list[0], 0, json_output=prov.supports_json, turns=gen.turns))
        if topic_list
        else 0
    )
    estimate = cost_usd(price, remaining * prompt_tokens, remaining * gen.max_tokens)
    return {
        "provider": prov.name,
        "model": prov.model,
        "topics": len(topic_list),
        "requested": sum(targets),
        "already_accepted": accepted,
        "remaining": remaining,
        "cost_estimate_usd": "unknown" if estimate is None else round(estimate, 6),
        "budget_usd": gen.budget_usd,
    }


def finish_run(
    cfg: ExperimentConfig, out: Path, engine: Engine, plan: dict[str, Any], elapsed: float
) -> dict[str, Any]:
    from sectune.data.export import export_rows
    from sectune.runs import write_run_metadata

    state = engine.state
    accepted, rejected, failed = state.counts()
    requested = sum(engine.targets)
    rows = read_jsonl(out / SAMPLES_FILE, tolerant=True)
    status = f"stopped_{engine.stop_reason}" if engine.stop_reason else None
    status = status or ("complete" if accepted >= requested else "incomplete")
    files = export_rows(rows, out, cfg.generate.formats) if not status.startswith("stopped_") else {}
    progress = engine.progress()
    summary = {
        "status": status,
        "requested": requested,
        "accepted": accepted,
        "slots": len(state.outcomes),
        "rejected": dict(sorted(rejected.items())),
        "failed": dict(sorted(failed.items())),
        "counts_add_up": len(state.outcomes) == accepted + sum(rejected.values()) + sum(failed.values())
        and accepted == len(rows),
        "definition": "slots = accepted + sum(rejected) + sum(failed); a slot is one request for one sample, "
        "rejected/failed slots are replaced until each topic has its samples or the request cap is reached",
        "errors_this_session": dict(sorted(engine.caller.errors.items())),
        "error_examples": error_examples(state),
        "http_requests_this_session": engine.caller.sent,
        "cache_hits_this_session": engine.caller.cache_hits,
        "prompt_tokens": state.prompt_tokens,
        "completion_tokens": state.completion_tokens,
        "cost_usd": "unknown" if state.cost_unknown else round(state.cost_usd, 6),
        "cost_estimate_usd": plan["cost_estimate_usd"],
        "provider": plan["provider"],
        "model": plan["model"],
        "topics": plan["topics"],
        "elapsed_s_this_session": round(elapsed, 3),
        "samples_per_s_this_session": round(progress.rate_per_s, 3),
        "files": files,
    }
    write_run_metadata(out, cfg, summary)
    return summary


def error_examples(state: RunState) -> dict[str, str]:
    """One message per final error kind, so the summary says what went wrong, not only how often."""
    examples: dict[str, str] = {}
    for outcome in state.outcomes.values():
        if outcome.status == "failed" and str(outcome.reason) not in examples:
            examples[str(outcome.reason)] = (outcome.error or "")[:200]
    return examples
