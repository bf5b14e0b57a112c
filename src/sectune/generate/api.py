"""The Python API of the generate stage: ``topics`` and ``generate``.

    from sectune.config import load_config
    from sectune.api import generate
    run = generate(load_config("configs/generate-openai.yaml"), "runs/gen", on_progress=print)

The run folder is its own resume state (samples.jsonl, requests.jsonl, cache.sqlite, topics.jsonl) and is
written in place, not through ``atomic_output_dir``: a file ``INCOMPLETE`` marks a run that has not finished
(killed, or stopped by its budget); ``generate(..., resume=True)`` continues it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from sectune.config.generate import GenerateConfig
from sectune.data.jsonl import read_jsonl, write_jsonl
from sectune.errors import UserError
from sectune.generate.store import INCOMPLETE_MARKER, REQUESTS_FILE, SAMPLES_FILE, AppendLog, SlotOutcome
from sectune.generate.topics import Topic
from sectune.llm.requests import Caller, Limits, estimate_tokens
from sectune.progress import Tracker, track

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.generate.engine import Progress, RunState
    from sectune.llm.base import Provider
    from sectune.llm.judge import Judge

T = TypeVar("T")
TOPICS_FILE = "topics.jsonl"
# Settings that may change between a run and its resume: they bound requests or outputs, not answers.
RESUMABLE_FIELDS = {
    "num_samples", "max_tokens", "timeout_s", "max_retries", "backoff_initial_s", "backoff_max_s", "max_in_flight",
    "ramp_up_s", "rpm", "tpm", "max_requests_factor", "budget_usd", "prices", "local_batch_size", "cache_dir",
    "formats", "base_url", "api_key_env",
}  # fmt: skip
RESUMABLE_JUDGE_FIELDS = {"base_url", "api_key_env"}  # of generate.quality.judge: where requests go, not what


# --- shared setup --------------------------------------------------------------------------------------------
def make_provider(cfg: ExperimentConfig) -> Provider:
    """The configured provider; ``local`` defaults to the experiment's model (the embedded one by default)."""
    from sectune.llm import get_provider

    gen = cfg.generate
    name = gen.provider
    return get_provider(
        name,
        model=gen.model or (cfg.model if name == "local" else None),
        base_url=gen.base_url,
        api_key_env=gen.api_key_env,
        timeout=gen.timeout_s,
        local_batch_size=gen.local_batch_size,
        seed=cfg.seed,
    )


def limits_of(gen: GenerateConfig) -> Limits:
    return Limits(
        max_tokens=gen.max_tokens,
        timeout_s=gen.timeout_s,
        max_retries=gen.max_retries,
        backoff_initial_s=gen.backoff_initial_s,
        backoff_max_s=gen.backoff_max_s,
        max_in_flight=gen.max_in_flight,
        rpm=gen.rpm,
        tpm=gen.tpm,
    )


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine from sync code, also when an event loop already runs (notebooks, web UIs)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


# --- topics --------------------------------------------------------------------------------------------------
def topics(
    cfg: ExperimentConfig, out: str | Path, *, provider: Provider | None = None, overwrite: bool = False
) -> Path:
    """Build the topic tree (or graph, ``generate.topics.mode``) from ``generate.topics.root``; write JSONL."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError("topics file already exists", file=out, fix="choose another --out or pass --overwrite")
    prov = provider or make_provider(cfg)
    run_sync(_build_topics(cfg, prov, out, cache=None))
    return out


async def _build_topics(cfg: ExperimentConfig, prov: Provider, out: Path, *, cache: Any) -> list[Topic]:
    from sectune.generate.engine import output_mode
    from sectune.generate.topics import build_graph, build_tree, save_graph, save_tree

    gen = cfg.generate
    spec = gen.topics
    caller = Caller(prov, limits_of(gen), cache)
    json_output = output_mode(gen.output, prov.supports_json) == "json"

    tracker = track("topics", unit="requests").open()

    async def ask(messages: list[dict[str, str]]) -> str | None:
        result = await caller.call(messages, {"temperature": 0.7, "seed": cfg.seed} if prov.name != "local" else {})
        tracker.advance(note=f"tree {spec.degree} wide x {spec.depth} deep")
        ok = result.completion is not None and result.completion.finish_reason == "stop"
        return result.completion.text if ok and result.completion else None

    try:
        if spec.mode == "graph":
            graph = await build_graph(
                spec.root, spec.degree, spec.depth, ask, spec.system_prompt, json_output=json_output
            )
            save_graph(graph, out)
            return [Topic(graph.path_to(leaf), id=str(leaf)) for leaf in graph.leaves()]
        tree = await build_tree(spec.root, spec.degree, spec.depth, ask, spec.system_prompt, json_output=json_output)
        save_tree(tree, out)
        return tree
    finally:
        tracker.close()
        if cache is None:
            await prov.aclose()


# --- generate ------------------------------------------------------------------------------------------------
def generate(
    cfg: ExperimentConfig,
    out: str | Path,
    *,
    resume: bool = False,
    retry_failed: bool = False,
    topics_file: str | Path | None = None,
    provider: Provider | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    on_start: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Generate ``generate.num_samples`` samples (or each spreadsheet topic's count) into the run folder ``out``.

    ``resume`` continues a killed or budget-stopped run; ``retry_failed`` re-runs only the failed or rejected
    request slots of an earlier run (no new ones). ``on_start`` receives the plan and cost estimate,
    ``on_progress`` a :class:`~sectune.generate.engine.Progress` after every finished request slot.
    ``provider`` replaces the configured provider (it is closed at the end: each call runs its own event loop).
    Returns ``out``; its summary.json counts every outcome.
    """
    out = Path(out)
    _check_folder(cfg, out, resume=resume, retry_failed=retry_failed)
    prov = provider or make_provider(cfg)
    try:
        _preflight(cfg, out, prov, topics_file)  # bad input fails here, before anything is written
    except UserError:
        run_sync(prov.aclose())
        raise
    out.mkdir(parents=True, exist_ok=True)
    (out / INCOMPLETE_MARKER).write_text("generation has not finished: continue with `sectune generate --resume`\n")
    _write_config(out, cfg)
    summary = run_sync(_generate(cfg, out, prov, retry_failed, topics_file, on_progress, on_start))
    if not summary["status"].startswith("stopped_"):
        (out / INCOMPLETE_MARKER).unlink(missing_ok=True)
    if summary["status"] == "stopped_auth":
        raise UserError(
            "the provider refused the API key",
            field=f"generate.api_key_env={cfg.generate.api_key_env}",
            fix="set a valid key in the environment or .env, then rerun with --resume",
        )
    if summary["status"] == "stopped_bad_request":
        example = next(iter(summary.get("error_examples", {}).values()), "")
        raise UserError(
            f"the provider refused every request ({example})",
            file=out / "requests.jsonl",
            field="generate.model / generate.base_url / generate.output",
            fix="check the model name and base_url; a server without JSON mode needs generate.output=text; "
            "then rerun with --resume",
        )
    return out


def _preflight(cfg: ExperimentConfig, out: Path, prov: Provider, topics_file: str | Path | None) -> None:
    """Check the inputs a run needs (price for a budget, topics file, datasets to dedup against)."""
    from sectune.generate.engine import output_mode
    from sectune.generate.quality import load_existing
    from sectune.generate.topics import load_topics
    from sectune.llm.prices import price_for

    gen = cfg.generate
    mode = output_mode(gen.output, prov.supports_json)
    if gen.turns > 1 and mode != "json":
        raise UserError(
            f"multi-turn samples need JSON answers, and provider '{prov.name}' is set to write {mode}",
            field="generate.turns",
            fix="use generate.turns=1, or a provider that writes JSON (openai, anthropic, litellm) with "
            "generate.output=auto or json",
        )
    if gen.budget_usd is not None and price_for(prov.name, prov.model, gen.prices) is None:
        raise UserError(
            f"no price known for model '{prov.model}', so the budget cannot be enforced",
            field="generate.budget_usd",
            fix=f"add generate.prices.{prov.model}=[input, output] (USD/Mtok)",
        )
    source = topics_file or gen.topics.file
    if source and not (out / TOPICS_FILE).is_file():
        load_topics(source)
    load_existing(gen.quality.against)


def _check_folder(cfg: ExperimentConfig, out: Path, *, resume: bool, retry_failed: bool) -> None:
    started = out.is_dir() and (out / "config.yaml").is_file()
    if retry_failed and not started:
        raise UserError("no earlier run to retry", file=out, fix="point --out at an existing generate run folder")
    if not started:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise UserError("output exists and is not a generate run", file=out, fix="choose another --out")
        return
    if not (resume or retry_failed):
        raise UserError(
            "output folder already holds a generate run",
            file=out,
            fix="pass --resume to continue it, --retry-failed to redo its failures, or another --out",
        )
    earlier = yaml.safe_load((out / "config.yaml").read_text(encoding="utf-8")) or {}
    changed = _content_changes(earlier, cfg)
    if changed:
        raise UserError(
            f"the run was started with different settings ({', '.join(changed)})",
            file=out / "config.yaml",
            fix="resume with the same config (only limits such as max_tokens may change) or use a new --out",
        )


def _content_changes(earlier: dict[str, Any], cfg: ExperimentConfig) -> list[str]:
    now = cfg.model_dump(mode="json")
    changed = [key for key in ("seed", "model") if earlier.get(key) != now.get(key)]
    before, after = _without_judge_endpoint(earlier.get("generate") or {}), _without_judge_endpoint(now["generate"])
    changed += [f"generate.{k}" for k in after if k not in RESUMABLE_FIELDS and before.get(k) != after[k]]
    return changed


def _without_judge_endpoint(gen: dict[str, Any]) -> dict[str, Any]:
    """``gen`` without the judge's base_url / api_key_env (absent from runs started before they existed)."""
    judge = (gen.get("quality") or {}).get("judge")
    if not isinstance(judge, dict):
        return gen
    judge = {k: v for k, v in judge.items() if k not in RESUMABLE_JUDGE_FIELDS}
    return {**gen, "quality": {**gen["quality"], "judge": judge}}


def _write_config(out: Path, cfg: ExperimentConfig) -> None:
    from sectune.runs import write_config

    write_config(out, cfg)


async def _generate(cfg, out, prov, retry_failed, topics_file, on_progress, on_start) -> dict[str, Any]:
    from sectune.generate.engine import Engine, gc_frozen
    from sectune.generate.topics import spread_samples
    from sectune.llm.cache import ResponseCache
    from sectune.llm.prices import price_for

    gen: GenerateConfig = cfg.generate
    started = time.monotonic()
    cache = ResponseCache(Path(gen.cache_dir).expanduser() if gen.cache_dir else out)
    try:
        topic_list = await _run_topics(cfg, out, prov, cache, topics_file)
        targets = spread_samples(topic_list, gen.num_samples)
        price = price_for(prov.name, prov.model, gen.prices)
        state = _load_state(out)
        plan = _plan(cfg, prov, topic_list, targets, state, price)
        if on_start is not None:
            on_start(plan)
        caller = Caller(prov, limits_of(gen), cache)
        judge = _judge(cfg, prov, cache)
        samples_log, requests_log = AppendLog(out / SAMPLES_FILE), AppendLog(out / REQUESTS_FILE)
        tracker = track("generate", plan["requested"], unit="samples", start=plan["already_accepted"]).open()
        engine = Engine(
            gen, seed=cfg.seed, topics=topic_list, targets=targets, caller=caller, judge=judge, state=state,
            dedup=_deduplicator(gen, state), samples_log=samples_log, requests_log=requests_log, price=price,
            retry_slots=_retry_slots(state) if retry_failed else None, on_progress=_report_to(tracker, on_progress),
        )  # fmt: skip
        try:
            with gc_frozen():
                await engine.run()
        finally:
            tracker.close()
            samples_log.close()
            requests_log.close()
            if judge is not None and judge.provider is not prov:
                await judge.provider.aclose()
        return _finish(cfg, out, engine, plan, time.monotonic() - started)
    finally:
        cache.close()
        await prov.aclose()


def _report_to(tracker: Tracker, on_progress: Callable[[Progress], None] | None) -> Callable[[Progress], None]:
    """Feed sectune's tracker (and the caller's callback) after every finished request slot."""

    def report(progress: Progress) -> None:
        tracker.update(progress.accepted, note=f"rejected {progress.rejected} · failed {progress.failed}")
        if on_progress is not None:
            on_progress(progress)

    return report


async def _run_topics(cfg, out: Path, prov, cache, topics_file) -> list[Topic]:
    """Topics of this run: saved in the run folder on the first start, so a resume uses the very same ones."""
    from sectune.generate.topics import load_topics, save_tree

    saved = out / TOPICS_FILE
    if saved.is_file():
        return load_topics(saved)
    source = topics_file or cfg.generate.topics.file
    if source:
        topic_list = load_topics(source)
        _save_topics_with_counts(topic_list, saved)
        return topic_list
    tmp = out / f".{TOPICS_FILE}.building"
    topic_list = await _build_topics(cfg, prov, tmp, cache=cache)
    if cfg.generate.topics.mode == "graph":
        topic_list = load_topics(tmp)
        save_tree(topic_list, saved)
        tmp.replace(out / "topic_graph.jsonl")
    else:
        tmp.replace(saved)
    return topic_list


def _save_topics_with_counts(topic_list: list[Topic], path: Path) -> None:
    rows = []
    for topic in topic_list:
        row: dict[str, Any] = {"path": topic.path}
        row.update(
            {
                k: v
                for k, v in (("samples", topic.samples), ("domain_type", topic.domain_type), ("id", topic.id))
                if v is not None
            }
        )
        rows.append(row)
    write_jsonl(path, rows)


def _load_state(out: Path) -> RunState:
    from sectune.generate.engine import RunState

    state = RunState()
    for line in read_jsonl(out / REQUESTS_FILE, tolerant=True):
        outcome = SlotOutcome.from_dict(line)
        state.set_outcome(outcome)
        state.add_usage(outcome)
    state.samples = read_jsonl(out / SAMPLES_FILE, tolerant=True)
    for row in state.samples:  # a sample saved just before a kill, without its outcome line
        slot = row["meta"]["slot"]
        known = state.outcomes.get(slot)
        if known is None or known.status != "accepted":
            t, k = map(int, slot.split(":"))
            state.set_outcome(SlotOutcome(slot, t, k, status="accepted", reason=None))
    return state


def _deduplicator(gen: GenerateConfig, state: RunState):
    from sectune.generate.quality import Deduplicator, first_pair, load_existing

    if not gen.quality.dedup:
        return None
    dedup = Deduplicator(gen.quality.near_duplicate_threshold)
    for question, answer in load_existing(gen.quality.against):
        dedup.add_pair(question, answer)
    for row in state.samples:
        pair = first_pair(row)
        if pair:
            dedup.add_pair(*pair)
    return dedup


def _judge(cfg: ExperimentConfig, prov: Provider, cache) -> Judge | None:
    """The LLM judge of the quality filter (``generate.quality.judge``), under the generation limits and cache."""
    from sectune.llm.judge import Judge

    if not cfg.generate.quality.judge.enabled:
        return None
    return Judge(Caller(judge_provider(cfg, prov), limits_of(cfg.generate), cache))


def judge_provider(cfg: ExperimentConfig, prov: Provider) -> Provider:
    """The judge's own provider: its ``base_url`` and ``api_key_env`` never come from the generator's settings.

    A judge with no provider, model, base_url or api_key_env of its own judges with the generator (``prov``),
    and so does one whose settings all equal the generator's; otherwise unset ``base_url`` / ``api_key_env``
    mean the judge provider's own defaults (OPENAI_BASE_URL / OPENAI_API_KEY…), and an unset ``model`` with
    the generator's provider means the generator's model.
    """
    from sectune.llm import get_provider

    gen, judge = cfg.generate, cfg.generate.quality.judge
    if judge.provider is None and judge.model is None and judge.base_url is None and judge.api_key_env is None:
        return prov
    name = judge.provider or prov.name
    model = judge.model or (prov.model if name == prov.name else cfg.model if name == "local" else None)
    if model is None:
        raise UserError(
            f"the judge's provider '{name}' needs a model name",
            field="generate.quality.judge.model",
            fix="set e.g. generate.quality.judge.model=gpt-4o-mini",
        )
    same = (name, model, judge.base_url, judge.api_key_env) == (prov.name, prov.model, gen.base_url, gen.api_key_env)
    if same:
        return prov
    return get_provider(
        name,
        model=model,
        base_url=judge.base_url,
        api_key_env=judge.api_key_env,
        timeout=gen.timeout_s,
        local_batch_size=gen.local_batch_size,
        seed=cfg.seed,
    )


def _retry_slots(state: RunState) -> list[str]:
    return [sid for sid, outcome in state.outcomes.items() if outcome.status in ("rejected", "failed")]


def _plan(cfg, prov, topic_list, targets, state, price) -> dict[str, Any]:
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


def _finish(cfg, out: Path, engine, plan: dict[str, Any], elapsed: float) -> dict[str, Any]:
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
        "error_examples": _error_examples(state),
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


def _error_examples(state: RunState) -> dict[str, str]:
    """One message per final error kind, so the summary says what went wrong, not only how often."""
    examples: dict[str, str] = {}
    for outcome in state.outcomes.values():
        if outcome.status == "failed" and str(outcome.reason) not in examples:
            examples[str(outcome.reason)] = (outcome.error or "")[:200]
    return examples
