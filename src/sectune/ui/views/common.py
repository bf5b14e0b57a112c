"""Widgets every page shares: one-line errors, the provider form, a background job's panel, live refresh."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import streamlit as st

from sectune.errors import UserError
from sectune.ui import jobs
from sectune.ui.forms import PROVIDERS, provider_settings
from sectune.ui.workspace import Workspace

REFRESH_S = 1.0  # how often a page re-reads the folder of a running job


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Show a UserError (or anything unexpected) as one red line; the rest of the app keeps working."""
    try:
        yield
    except UserError as exc:
        st.error(f"error: {exc}")
    except Exception as exc:  # a bug or a library error: one line here, never a traceback page
        st.error(f"error: {type(exc).__name__}: {' '.join(str(exc).split())}")


def provider_form(prefix: str) -> Callable[[], tuple[list[str], dict[str, str]]]:
    """Provider, model, URL and API key widgets; returns what turns them into (overrides, the job's secret
    environment) when the job starts (so an unfinished form is checked only then).

    The key lives in this browser session only (a password field, never shown back); it is passed to the job's
    environment, never written to a file or a command line.
    """
    label = st.radio("Provider", list(PROVIDERS), horizontal=True, key=f"{prefix}-provider")
    provider = PROVIDERS[label]
    model = st.text_input(
        "Model", key=f"{prefix}-model", help="The provider's model name; empty: the embedded model (local)."
    )
    base_url = st.text_input("Base URL", key=f"{prefix}-base-url", disabled=provider != "openai")
    api_key = st.text_input("API key", type="password", key=f"{prefix}-api-key", disabled=provider == "local")
    return lambda: provider_settings(label, model, base_url if provider == "openai" else "", api_key)


def pick_path(label: str, paths: list[Path], *, key: str, default: Path | None = None) -> Path | None:
    """A selectbox over folders or files (by name), starting at ``default`` (else the newest)."""
    if not paths:
        return None
    names = [p.name for p in paths]
    index = names.index(default.name) if default is not None and default.name in names else 0
    chosen = st.selectbox(label, names, index=index, key=key)
    return paths[names.index(chosen)]


def pick_run(ws: Workspace, stage: str, folder: str, label: str = "Run") -> Path | None:
    """A selectbox over the workspace's runs of ``folder``, on the latest job's run when a new job started (also
    before its process has created the folder): the widget's key names the job, so a new job selects its run."""
    job = jobs.latest_job(ws, stage)
    runs = ws.runs_of(folder)
    latest = Path(job.out) if job else None
    if latest is not None and latest not in runs:
        runs.insert(0, latest)
    return pick_path(label, runs, key=f"{folder}-run-{job.id if job else ''}", default=latest)


def job_panel(job: jobs.Job | None, *, key: str, on_resume: Callable[[], None] | None = None) -> str | None:
    """The job's state line, its log tail and Stop / Resume; returns its state (None without a job)."""
    if job is None:
        return None
    state, line = jobs.state_of(job)
    show = {"running": st.info, "finished": st.success, "stopped": st.warning, "failed": st.error}[state]
    show(f"{job.stage} job {state}: {line}")
    with st.expander("job log"):
        st.code("\n".join(jobs.log_tail(job, 30)) or "(empty)", language=None)
        st.caption("sectune " + job.stage + " " + " ".join(job.args))
    if state == "running" and st.button("Stop", key=f"{key}-stop"):
        jobs.stop_job(job)
        st.rerun()
    if state in ("stopped", "failed") and on_resume is not None and st.button("Resume", key=f"{key}-resume"):
        on_resume()
        st.rerun()
    return state


def live(render: Callable[[], None], running: bool, *, key: str) -> None:
    """Call ``render`` once, or, while a job runs, every REFRESH_S seconds (a fragment: the page stays put)."""
    if not running:
        render()
        return

    @st.fragment(run_every=REFRESH_S)
    def refresh() -> None:
        render()

    refresh()


def rerun_when_done(job: jobs.Job | None, was_running: bool) -> None:
    """Inside a live fragment: once the job ended, rerun the whole page (its results appear everywhere)."""
    if was_running and job is not None and not jobs.is_running(job):
        st.rerun()


def workspace() -> Workspace:
    return Workspace.from_env()
