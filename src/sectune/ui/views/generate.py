"""Generate: provider, model and limits → a background ``sectune generate`` job; its live progress (rate, ETA,
tokens, cost), rejections by reason, and the accepted samples to browse, search and edit."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import streamlit as st

from sectune.errors import UserError
from sectune.ui import follow, jobs
from sectune.ui.forms import job_args, limit_settings, setting
from sectune.ui.views.common import job_panel, live, pick_run, provider_form, rerun_when_done
from sectune.ui.workspace import Workspace, new_name, safe_name

FROM_ROOT = "(build from the root prompt)"


def render(ws: Workspace) -> None:
    st.header("Generate")
    with st.expander("New run", expanded=not ws.runs_of("generate")):
        new_run_form(ws)
    run = pick_run(ws, "generate", "generate")
    if run is None:
        st.info("No generate run yet: start one above.")
        return
    job = jobs.latest_job(ws, "generate", run)
    running = job is not None and jobs.is_running(job)

    def panel() -> None:
        job_panel(job, key="generate-job", on_resume=lambda: _resume(ws, job))
        show_progress(run, job, running)
        rerun_when_done(job, running)

    live(panel, running, key="generate-live")
    browse_samples(run, editable=not running)


def new_run_form(ws: Workspace) -> None:
    files = ws.topic_files()
    choices = [*(p.name for p in files), FROM_ROOT]
    topics_choice = st.selectbox("Topics", choices, key="generate-topics")
    root = st.text_input("Root prompt", "Cybersecurity and IT support", key="generate-root",
                         disabled=topics_choice != FROM_ROOT)  # fmt: skip
    samples = st.number_input("Samples (when the topics carry no counts)", 1, 100_000, 20, key="generate-samples")
    provider = provider_form("generate")
    st.caption("Limits")
    cols = st.columns(4)
    in_flight = cols[0].number_input("In flight", 1, 512, 16, key="generate-in-flight")
    rpm = cols[1].number_input("Requests/min (0: no limit)", 0, 100_000, 0, key="generate-rpm")
    budget = cols[2].number_input("Budget USD (0: none)", 0.0, 10_000.0, 0.0, key="generate-budget")
    max_tokens = cols[3].number_input("Max tokens", 1, 32_768, 512, key="generate-max-tokens")
    name = safe_name(st.text_input("Name", new_name("generate"), key="generate-name"))
    if not st.button("Start generating", key="generate-start"):
        return
    out = ws.folder("generate") / name
    if out.exists():
        raise UserError("a run of that name exists", file=out, fix="choose another name, or resume it below")
    sets, secrets = provider()
    sets += [setting("generate.num_samples", int(samples)), *limit_settings(in_flight, rpm, budget, max_tokens)]
    args = job_args(ws, sets)
    if topics_choice == FROM_ROOT:
        args += ["--set", setting("generate.topics.root", root)]
    else:
        args += ["--topics", str(ws.folder("topics") / topics_choice)]
    jobs.start_job(ws, "generate", [*args, "--out", str(out)], out, secret_env=secrets)


def _resume(ws: Workspace, job: jobs.Job | None) -> None:
    if job is None:
        return
    key = st.session_state.get("generate-api-key") or ""
    secrets = {"SECTUNE_UI_API_KEY": key} if key and "SECTUNE_UI_API_KEY" in " ".join(job.args) else {}
    args = job.args if "--resume" in job.args else [*job.args, "--resume"]
    jobs.start_job(ws, "generate", args, job.out, secret_env=secrets)


def show_progress(run: Path, job: jobs.Job | None, running: bool) -> None:
    progress = follow.generate_progress(run, running=running, started=job.started if job else None)
    total = progress.requested
    st.progress(progress.fraction, text=f"{progress.accepted} of {total if total is not None else '?'} samples "
                f"({progress.status})")  # fmt: skip
    cols = st.columns(5)
    cols[0].metric("Accepted", progress.accepted)
    cols[1].metric("Rate", f"{progress.rate_per_s:.2f}/s" if progress.rate_per_s else "-")
    cols[2].metric("ETA", _duration(progress.eta_s) if progress.eta_s is not None else "-")
    cols[3].metric("Tokens in / out", f"{progress.prompt_tokens} / {progress.completion_tokens}")
    cols[4].metric("Cost", f"${progress.cost_usd:.4f}" if progress.cost_usd is not None else "unknown")
    if progress.rejected or progress.failed:
        st.caption("Rejected and failed requests, by reason")
        rows = [{"outcome": "rejected", "reason": r, "count": n} for r, n in progress.rejected.items()]
        rows += [{"outcome": "failed", "reason": r, "count": n} for r, n in progress.failed.items()]
        st.dataframe(rows, hide_index=True)
        examples = (follow.summary_of(run) or {}).get("rejection_examples") or {}
        for reason, example in examples.items():
            st.caption(f"{reason}: {example}")


def _duration(seconds: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(seconds))


def browse_samples(run: Path, *, editable: bool) -> None:
    st.subheader("Accepted samples")
    table = follow.sample_table(run)
    query = st.text_input("Search", key="generate-search", placeholder="words in the topic, question or answer")
    shown = follow.search_samples(table, query) if query else table
    st.caption(f"{len(shown)} of {len(table)} samples")
    if not editable:
        st.dataframe(shown, hide_index=True, width="stretch")
        return
    edited = st.data_editor(
        shown,
        hide_index=True,
        width="stretch",
        disabled=["line", "topic", "turns"],
        key=f"generate-editor-{run.name}-{query}",
    )
    if st.button("Save edits", key="generate-save"):
        changes = {
            int(new["line"]): {"question": new["question"], "answer": new["answer"]}
            for old, new in zip(shown, _records(edited), strict=True)
            if (old["question"], old["answer"]) != (new["question"], new["answer"])
        }
        count = follow.save_sample_edits(run, changes)
        st.success(f"saved {count} edited messages in samples.jsonl (the csv/xlsx exports are not rewritten)")


def _records(table: Any) -> list[dict]:
    """st.data_editor returns a DataFrame for a DataFrame and a list of dicts for a list."""
    return table.to_dict("records") if hasattr(table, "to_dict") else list(table)
