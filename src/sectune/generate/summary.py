"""The plan a generate run announces before it starts, and the summary.json it writes when it stops.

A run that ends below its target gets a ``shortfall`` in summary.json: why in one line (the top rejection or
failure reason with its count and an example), the setting to look at, and the flag that helps
(``--retry-failed`` when slots failed or were rejected, ``--resume`` when the run stopped before finishing its
slots). :func:`shortfall_error` turns it into the error the CLI exits with (3 incomplete, 4 nothing usable).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.jsonl import read_jsonl
from sectune.errors import IncompleteRunError, NothingUsableError
from sectune.generate.store import SAMPLES_FILE
from sectune.llm.keys import redact
from sectune.llm.requests import estimate_tokens
from sectune.runs import SUMMARY_FILE

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
    plan = {
        "provider": prov.name,
        "model": prov.model,
        "topics": len(topic_list),
        "requested": sum(targets),
        "already_accepted": accepted,
        "remaining": remaining,
        "cost_estimate_usd": "unknown" if estimate is None else round(estimate, 6),
        "budget_usd": gen.budget_usd,
    }
    counts = topic_counts(cfg, topic_list)
    if counts is not None:
        plan["topic_counts"] = counts
    return plan


def topic_counts(cfg: ExperimentConfig, topic_list: list[Topic]) -> dict[str, Any] | None:
    """Where the per-topic counts come from when a topics file (a sheet) sets them; None when num_samples does."""
    from sectune.generate.topics import duplicate_topics

    if not topic_list or any(t.samples is None for t in topic_list):
        return None
    spec = cfg.generate.topics
    return {
        "from": "the topics file's per-topic counts (a spreadsheet's Samples Count)",
        "num_samples_ignored": cfg.generate.num_samples,
        "asked": sum(t.sheet_samples if t.sheet_samples is not None else int(t.samples or 0) for t in topic_list),
        "requested": sum(int(t.samples or 0) for t in topic_list),
        "sheet_rows": spec.sheet_rows,
        "sheet_scale": spec.sheet_scale,
        "sheet_max_per_topic": spec.sheet_max_per_topic,
        "duplicate_topics": duplicate_topics(topic_list),
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
        "errors": dict(sorted(state.errors.items())),  # every session's, from requests.jsonl (killed ones too)
        "errors_this_session": dict(sorted(engine.caller.errors.items())),
        "error_examples": error_examples(state),
        "rejection_examples": rejection_examples(out, engine, rejected),
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
    if "topic_counts" in plan:
        summary["topic_counts"] = plan["topic_counts"]
    if accepted < requested:
        summary["shortfall"] = shortfall(summary, cfg, getattr(engine.caller.provider, "base_url", None))
    write_run_metadata(out, cfg, summary)
    return summary


def error_examples(state: RunState) -> dict[str, str]:
    """One message per final error kind, so the summary says what went wrong, not only how often."""
    examples: dict[str, str] = {}
    for outcome in state.outcomes.values():
        if outcome.status == "failed" and str(outcome.reason) not in examples:
            examples[str(outcome.reason)] = redact(outcome.error or "")[:200]
    return examples


def rejection_examples(out: Path, engine: Engine, rejected: Counter[str]) -> dict[str, str]:
    """One excerpt of a rejected answer per rejection reason still counted (earlier sessions' kept too)."""
    from sectune.runs import read_json

    earlier: dict[str, str] = {}
    previous = out / SUMMARY_FILE
    if previous.is_file():
        try:
            earlier = dict(read_json(previous).get("rejection_examples") or {})
        except (ValueError, OSError, AttributeError):
            earlier = {}
    examples = {**engine.rejection_examples, **earlier}
    return {reason: redact(str(examples[reason])) for reason in sorted(rejected) if reason in examples}


# --- why a run ended below its target, and what helps -------------------------------------------------------
# Limits (max_tokens, timeout_s, retries, rpm, base_url, ...) may change on --retry-failed / --resume; content
# settings (prompts, output, quality, model) may not: a run keeps them, so changing one takes a new --out.
RETRY = "then rerun with --retry-failed, which asks only the failed and rejected requests again"
NEW_OUT = "in a new --out (a run keeps its content settings)"
REASON_FIXES: dict[str, tuple[str, str]] = {  # reason → (setting to look at, what to do)
    "malformed": (
        "generate.output",
        f"the model did not answer in the JSON asked for: rerun with --retry-failed to ask again, or use "
        f"generate.output=text or another generate.model {NEW_OUT}",
    ),
    "finish_length": ("generate.max_tokens", f"answers were cut off: raise generate.max_tokens, {RETRY}"),
    "content_filter": (
        "generate.topics",
        f"the provider's content filter blocked the answers: rerun with --retry-failed, or rephrase the topics or "
        f"generate.instructions {NEW_OUT}",
    ),
    "empty_turn": ("generate.model", f"answers came back empty: check the model and server, {RETRY}"),
    "too_short": (
        "generate.quality.min_answer_chars",
        f"rerun with --retry-failed, or lower generate.quality.min_answer_chars / min_question_chars {NEW_OUT}",
    ),
    "too_long": (
        "generate.quality.max_answer_chars",
        f"rerun with --retry-failed, or raise generate.quality.max_answer_chars {NEW_OUT}",
    ),
    "refusal": (
        "generate.instructions",
        f"the model refused: rerun with --retry-failed, or rephrase generate.instructions (or set "
        f"generate.quality.reject_refusals=false) {NEW_OUT}",
    ),
    "duplicate": (
        "generate.max_requests_factor",
        "the model repeats itself: raise generate.max_requests_factor and continue with --resume (new requests; "
        "a retry would ask the same questions again)",
    ),
    "judge_low": (
        "generate.quality.judge.threshold",
        f"rerun with --retry-failed, or lower generate.quality.judge.threshold {NEW_OUT}",
    ),
    "judge_unparseable": (
        "generate.quality.judge.model",
        f"the judge's verdicts had no score: rerun with --retry-failed, or use another judge model {NEW_OUT}",
    ),
    "judge_failed": (
        "generate.quality.judge.base_url",
        f"the judge did not answer: check its server (generate.quality.judge.base_url), {RETRY}",
    ),
    "timeout": (
        "generate.timeout_s",
        f"the server did not answer in time: raise generate.timeout_s or lower generate.max_in_flight, {RETRY}",
    ),
    "server_error": (
        "generate.base_url",
        f"the server failed on every retry: check it or raise generate.max_retries, {RETRY}",
    ),
    "rate_limit": ("generate.rpm", f"set generate.rpm / generate.tpm below the provider's limits, {RETRY}"),
    "empty_response": ("generate.base_url", f"the server sent answers without choices: check it, {RETRY}"),
    "bad_request": (
        "generate.model / generate.base_url / generate.output",
        f"the server refused the requests: fix generate.base_url and {RETRY}, or fix the model name (a server "
        f"without JSON mode needs generate.output=text) {NEW_OUT}",
    ),
    "auth": ("generate.api_key_env", f"the server refused the API key: set a valid one, {RETRY}"),
}
REASON_FIXES["near_duplicate"] = REASON_FIXES["duplicate"]


def shortfall(summary: dict[str, Any], cfg: ExperimentConfig, base_url: str | None = None) -> dict[str, Any]:
    """Why a run ended below its target, in one line, with the setting to look at and the fix (see module doc)."""
    from sectune.llm.factory import DEFAULT_KEY_ENV, provider_key

    gen = cfg.generate
    accepted, requested, status = summary["accepted"], summary["requested"], summary["status"]
    reasons: Counter[tuple[str, str]] = Counter()
    for reason, count in summary["rejected"].items():
        reasons[("rejected as", reason)] = count
    for kind, count in summary["failed"].items():
        reasons[("failed with", kind)] = count
    top = reasons.most_common(1)[0] if reasons else None
    why = f"{'nothing usable' if accepted == 0 else 'incomplete'}: {accepted} of {requested} samples"
    field, fix = "generate", f"see requests.jsonl, {RETRY}"
    if top is not None:
        (verb, reason), count = top
        examples = summary["error_examples"] if verb == "failed with" else summary.get("rejection_examples", {})
        example = " ".join(str(examples.get(reason, "")).split())[:120]
        why += f"; {count} of {summary['slots']} requests {verb} {reason}" + (f' (e.g. "{example}")' if example else "")
        field, fix = REASON_FIXES.get(reason, (field, fix))
        if reason == "connection":
            where = base_url or gen.base_url or "the provider's server"
            field = "generate.base_url"
            fix = f"nothing answers at {where}: start the server or fix generate.base_url, {RETRY}"
    key_env = gen.api_key_env or DEFAULT_KEY_ENV.get(gen.provider) or "the key variable"
    if status == "stopped_auth":
        unset = "" if provider_key(gen.provider, gen.api_key_env) else f" ({key_env} is not set)"
        why += f"; the provider refused the API key{unset}"
        field = f"generate.api_key_env={key_env}"
        fix = "set a valid key in the environment or .env, then continue with --resume"
    elif status == "stopped_bad_request":
        why += "; the provider refused every request"
        field = "generate.model / generate.base_url / generate.output"
        fix = (
            "check generate.base_url and continue with --resume; a wrong model name, or a server without JSON mode "
            "(it needs generate.output=text), takes a new --out (a run keeps its content settings)"
        )
    elif status == "stopped_budget":
        why += f"; stopped by the budget (spent ${summary['cost_usd']} of ${gen.budget_usd})"
        field, fix = "generate.budget_usd", "raise generate.budget_usd and continue with --resume"
    exit_code = NothingUsableError.exit_code if accepted == 0 else IncompleteRunError.exit_code
    return {"exit_code": exit_code, "why": redact(why), "field": field, "fix": fix}


def shortfall_error(summary: dict[str, Any], out: Path) -> IncompleteRunError | None:
    """The error for a run that ended below its target (exit 3, or 4 with nothing accepted); None when it did not."""
    found = summary.get("shortfall")
    if not found:
        return None
    cls = NothingUsableError if summary.get("accepted", 0) == 0 else IncompleteRunError
    return cls(found["why"], file=out / SUMMARY_FILE, field=found.get("field"), fix=found.get("fix"))
