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

from sectune.config.generate import GenerateConfig
from sectune.data.jsonl import write_jsonl
from sectune.errors import UserError
from sectune.generate.resume import check_run_folder, load_state, retry_slots
from sectune.generate.store import INCOMPLETE_MARKER, REQUESTS_FILE, SAMPLES_FILE, AppendLog
from sectune.generate.summary import finish_run, run_plan, shortfall_error
from sectune.generate.topics import Topic
from sectune.generate.wiring import limits_of, make_deduplicator, make_judge, make_provider
from sectune.llm.requests import Caller
from sectune.progress import Tracker, track

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.generate.engine import Progress
    from sectune.llm.base import Provider

T = TypeVar("T")
TOPICS_FILE = "topics.jsonl"


# --- shared setup (provider wiring: wiring.py; resume checks and state: resume.py; summary: summary.py) ----
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
    Returns ``out``; its summary.json counts every outcome. A run that ended below its target still returns
    ``out`` (summary.json's ``status`` and ``shortfall`` say why; ``shortfall_error`` in
    :mod:`sectune.generate.summary` gives the error the CLI exits with: 3 incomplete, 4 nothing usable), except
    when the provider refused the key or every request: that raises the same error at once.
    """
    out = Path(out)
    check_run_folder(cfg, out, resume=resume, retry_failed=retry_failed)
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
    problem = shortfall_error(summary, out)
    if problem is not None and summary["status"] in ("stopped_auth", "stopped_bad_request"):
        raise problem  # the provider refuses the run itself: an error for API callers too
    return out


def _preflight(cfg: ExperimentConfig, out: Path, prov: Provider, topics_file: str | Path | None) -> None:
    """Check the inputs a run needs (price for a budget, topics file, datasets to dedup against)."""
    from sectune.generate.engine import output_mode
    from sectune.generate.quality import load_existing
    from sectune.generate.topics import topics_for_run
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
    if gen.focus and source:
        raise UserError(
            "generate.focus writes its own topic plan from the evaluation, so a topics file would be ignored",
            field="generate.focus",
            fix="drop --topics / generate.topics.file, or unset generate.focus",
        )
    if not (out / TOPICS_FILE).is_file():  # a resume uses the run's own topics
        if gen.focus:
            from sectune.generate.focus import focus_plan

            focus_plan(gen.focus, gen.num_samples, gen.focus_plan)
        else:
            topics_for_run(source, gen.topics)
    load_existing(gen.quality.against)


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
        state = load_state(out)
        plan = run_plan(cfg, prov, topic_list, targets, state, price)
        if on_start is not None:
            on_start(plan)
        caller = Caller(prov, limits_of(gen), cache)
        judge = make_judge(cfg, prov, cache)
        samples_log, requests_log = AppendLog(out / SAMPLES_FILE), AppendLog(out / REQUESTS_FILE)
        tracker = track("generate", plan["requested"], unit="samples", start=plan["already_accepted"]).open()
        engine = Engine(
            gen, seed=cfg.seed, topics=topic_list, targets=targets, caller=caller, judge=judge, state=state,
            dedup=make_deduplicator(gen, state), samples_log=samples_log, requests_log=requests_log, price=price,
            retry_slots=retry_slots(state) if retry_failed else None, on_progress=_report_to(tracker, on_progress),
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
        return finish_run(cfg, out, engine, plan, time.monotonic() - started)
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
    from sectune.generate.topics import load_topics, save_tree, topics_for_run

    saved = out / TOPICS_FILE
    if saved.is_file():
        return load_topics(saved)
    if cfg.generate.focus:
        return _focus_topics(cfg, out)
    from_file = topics_for_run(topics_file or cfg.generate.topics.file, cfg.generate.topics)
    if from_file is not None:
        _save_topics_with_counts(from_file, saved)
        return from_file
    tmp = out / f".{TOPICS_FILE}.building"
    topic_list = await _build_topics(cfg, prov, tmp, cache=cache)
    if cfg.generate.topics.mode == "graph":
        topic_list = load_topics(tmp)
        save_tree(topic_list, saved)
        tmp.replace(out / "topic_graph.jsonl")
    else:
        tmp.replace(saved)
    return topic_list


def _focus_topics(cfg: ExperimentConfig, out: Path) -> list[Topic]:
    """The topic plan from ``generate.focus``'s evaluation, saved with the plan itself (``focus.json``)."""
    from sectune.generate.focus import FOCUS_FILE, focus_plan, focus_topics
    from sectune.runs import write_json

    plan = focus_plan(cfg.generate.focus or "", cfg.generate.num_samples, cfg.generate.focus_plan)
    write_json(out / FOCUS_FILE, plan)
    topic_list = focus_topics(plan)
    _save_topics_with_counts(topic_list, out / TOPICS_FILE)
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
        if topic.sheet_samples is not None:
            row["sheet_samples"] = topic.sheet_samples
        if topic.merged_ids:
            row["merged_ids"] = topic.merged_ids
        rows.append(row)
    write_jsonl(path, rows)
