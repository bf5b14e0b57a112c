"""Data: import a file (an upload or a generate run), every validation problem with its row, then a background
``sectune prep`` job; a dataset's split sizes, token lengths against max_length, one row's mask picture and the
text rendered for the chosen model."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import streamlit as st

from sectune.errors import UserError
from sectune.ui import follow, jobs
from sectune.ui.forms import extra_settings, job_args, load_ui_config, setting
from sectune.ui.views.common import job_panel, live, pick_path, pick_run, rerun_when_done
from sectune.ui.workspace import Workspace, new_name, safe_name

INPUT_TYPES = ["jsonl", "json", "csv", "tsv", "xlsx", "parquet"]
FROM_RUN, FROM_UPLOAD = "a generate run", "an uploaded file"


def render(ws: Workspace) -> None:
    st.header("Data")
    with st.expander("Import and prepare", expanded=not ws.runs_of("datasets")):
        source = pick_input(ws)
        if source is not None:
            show_problems(ws, source)
            prep_form(ws, source)
    dataset = pick_run(ws, "prep", "datasets", label="Dataset")
    if dataset is None:
        st.info("No dataset yet: import a file above and prepare it.")
        return
    job = jobs.latest_job(ws, "prep", dataset)
    running = job is not None and jobs.is_running(job)

    def panel() -> None:
        job_panel(job, key="prep-job")
        rerun_when_done(job, running)

    live(panel, running, key="prep-live")
    if follow.summary_of(dataset) is not None:
        show_dataset(ws, dataset)


def pick_input(ws: Workspace) -> Path | None:
    how = st.radio("Import from", [FROM_RUN, FROM_UPLOAD], horizontal=True, key="data-from")
    if how == FROM_RUN:
        run = pick_path("Generate run", ws.finished_runs("generate"), key="data-generate-run")
        if run is None:
            st.info("No finished generate run: upload a file instead.")
        return run / "samples.jsonl" if run else None
    uploaded = st.file_uploader("Q&A file", type=INPUT_TYPES, key="data-upload")
    if uploaded is None:
        return None
    target = ws.folder("uploads") / safe_name(uploaded.name)
    data = uploaded.getvalue()
    if not target.exists() or target.read_bytes() != data:
        target.write_bytes(data)
    return target


def show_problems(ws: Workspace, source: Path) -> None:
    from sectune.data.problems import input_problems

    cfg = load_ui_config(ws, [])
    problems = input_problems(source, cfg.prep)
    if not problems:
        st.success(f"{source.name}: no validation problems")
        return
    st.error(f"{source.name}: {len(problems)} problem(s); prep stops at the first")
    st.code("\n".join(problems), language=None)


def prep_form(ws: Workspace, source: Path) -> None:
    base = load_ui_config(ws, [])
    model = st.text_input("Model (registry key or folder)", base.prep.model or base.model, key="data-model")
    cols = st.columns(3)
    max_length = cols[0].number_input("max_length (tokens)", 16, 131_072, base.prep.max_length, key="data-max-len")
    validation = cols[1].number_input("Validation share", 0.0, 0.9, float(base.prep.validation_size), key="data-val")
    test = cols[2].number_input("Test share", 0.0, 0.9, float(base.prep.test_size), key="data-test")
    extra = st.text_area("Extra settings (key=value per line)", key="data-extra")
    name = safe_name(st.text_input("Dataset name", new_name("dataset"), key="data-name"))
    job = jobs.latest_job(ws, "prep")
    if not st.button("Prepare dataset", disabled=job is not None and jobs.is_running(job), key="data-start"):
        return
    out = ws.folder("datasets") / name
    if out.exists():
        raise UserError("a dataset of that name exists", file=out, fix="choose another name")
    sets = [
        setting("model", model.strip()),
        setting("prep.max_length", int(max_length)),
        setting("prep.validation_size", float(validation)),
        setting("prep.test_size", float(test)),
        *extra_settings(extra),
    ]
    load_ui_config(ws, sets)  # a bad value fails here, in one line, before a job starts
    jobs.start_job(ws, "prep", [str(source), "--out", str(out), *job_args(ws, sets)], out)


def show_dataset(ws: Workspace, dataset: Path) -> None:
    summary = follow.summary_of(dataset) or {}
    counts = summary["counts"]
    cols = st.columns(4)
    for col, name in zip(cols, ("train", "validation", "test"), strict=False):
        col.metric(f"{name} rows", counts[name])
    dedup = summary["dedup"]
    cols[3].metric("duplicates removed", dedup["exact_duplicates_removed"] + dedup["near_duplicates_removed"])
    bins, over, max_length = follow.length_histogram(summary)
    st.caption(f"Token lengths (all splits) against max_length {max_length}: {over} row(s) over it")
    counts_by_bin = {**bins, f">{max_length}": over}
    chart = {"tokens": list(counts_by_bin), "rows": list(counts_by_bin.values())}
    st.bar_chart(chart, x="tokens", y="rows", sort=False)  # bins in length order, not alphabetical
    split = st.radio("Split", ["train", "validation", "test"], horizontal=True, key="data-split")
    if not counts.get(split):
        st.info(f"the {split} split is empty")
        return
    row = st.number_input("Row", 1, counts[split], 1, key=f"data-row-{split}") - 1
    pieces = mask_pieces(ws, str(dataset), summary["model"], split, int(row))
    st.caption("What the model is trained on: highlighted tokens carry the loss, the rest is masked.")
    st.markdown(mask_html(pieces), unsafe_allow_html=True)
    with st.expander("Rendered text for " + summary["model"]):
        st.code("".join(text for text, _ in pieces), language=None)


@st.cache_data(show_spinner="rendering the row", max_entries=32)
def mask_pieces(_ws: Workspace, dataset: str, model: str, split: str, row: int) -> list[tuple[str, bool]]:
    """(text, trained) runs of one row, from prep's own inspect report (sectune inspect)."""
    from sectune.api import inspect_dataset

    cfg = load_ui_config(_ws, [setting("model", model)])
    report = inspect_dataset(cfg, dataset, split=split, rows_shown=row + 1)
    if not report.pieces:
        raise UserError("the chat template has no generation markers: no mask to show", field="model")
    return report.pieces[row]


def mask_html(pieces: list[tuple[str, bool]]) -> str:
    spans: list[Any] = []
    for text, trained in pieces:
        style = "background:#b7f0b1;color:#0b3d02" if trained else "color:#777"
        spans.append(f"<span style='{style}'>{html.escape(text)}</span>")
    return "<pre style='white-space:pre-wrap;font-size:0.85em'>" + "".join(spans) + "</pre>"
