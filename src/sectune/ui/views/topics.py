"""Topics: build a tree or graph from a root prompt (a background ``sectune topics`` job), or upload a topic
sheet; view it as an expandable tree and a table; edit and save it as a topics JSONL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from sectune.errors import UserError
from sectune.generate.topics import Topic, load_topics, save_tree
from sectune.ui import jobs
from sectune.ui.forms import job_args, setting
from sectune.ui.views.common import job_panel, live, pick_path, provider_form, rerun_when_done
from sectune.ui.workspace import Workspace, new_name, safe_name

PATH_SEPARATOR = " > "


def render(ws: Workspace) -> None:
    st.header("Topics")
    build, upload = st.tabs(["Build from a root prompt", "Upload a topic sheet"])
    with build:
        build_form(ws)
    with upload:
        upload_sheet(ws)
    st.subheader("Topic files")
    chosen = pick_path("Topics file", ws.topic_files(), key="topics-file")
    if chosen is None:
        st.info("No topics yet: build a tree or upload a sheet (columns Id, Domain Topic, Samples Count, Domain Type).")
        return
    show_and_edit(ws, chosen)


def build_form(ws: Workspace) -> None:
    root = st.text_input("Root prompt", "Cybersecurity and IT support", key="topics-root")
    left, middle, right = st.columns(3)
    degree = left.number_input("Subtopics per node", 1, 50, 3, key="topics-degree")
    depth = middle.number_input("Depth", 0, 6, 2, key="topics-depth")
    mode = right.radio("Shape", ["tree", "graph"], horizontal=True, key="topics-mode")
    provider = provider_form("topics")
    name = safe_name(st.text_input("Name", new_name("topics"), key="topics-name"))
    job = jobs.latest_job(ws, "topics")
    running = job is not None and jobs.is_running(job)
    if st.button("Build topics", disabled=running, key="topics-build"):
        out = ws.folder("topics") / f"{name}.jsonl"
        if out.exists():
            raise UserError("a topics file of that name exists", file=out, fix="choose another name")
        sets, secrets = provider()
        sets += [
            setting("generate.topics.root", root),
            setting("generate.topics.degree", int(degree)),
            setting("generate.topics.depth", int(depth)),
            setting("generate.topics.mode", mode),
        ]
        job = jobs.start_job(ws, "topics", [*job_args(ws, sets), "--out", str(out)], out, secret_env=secrets)
        running = True

    def panel() -> None:
        job_panel(job, key="topics-job")
        rerun_when_done(job, running)

    live(panel, running, key="topics-live")


def upload_sheet(ws: Workspace) -> None:
    """Keep an uploaded sheet only when it reads as topics; otherwise say why in one line."""
    uploaded = st.file_uploader("Topic sheet (.xlsx) or topics JSONL", type=["xlsx", "xlsm", "jsonl"], key="sheet")
    if uploaded is None:
        return
    target = ws.folder("topics") / safe_name(uploaded.name)
    data = uploaded.getvalue()
    if target.exists() and target.read_bytes() == data:
        st.success(f"{target.name}: {len(load_topics(target))} topics")
        return
    staging = ws.folder("uploads") / f".check-{target.name}"
    staging.write_bytes(data)
    try:
        topics = load_topics(staging)
    except UserError as exc:
        staging.unlink(missing_ok=True)
        raise UserError(exc.message, file=uploaded.name, field=exc.field, fix=exc.fix) from None
    staging.replace(target)
    st.success(f"{target.name}: {len(topics)} topics")


def show_and_edit(ws: Workspace, file: Path) -> None:
    topics = load_topics(file)
    counted = sum(t.samples or 0 for t in topics)
    st.caption(f"{len(topics)} topics" + (f", {counted} samples asked for" if counted else ""))
    tree, table = st.tabs(["Tree", "Table"])
    with tree:
        show_tree(topics)
    with table:
        edited = st.data_editor(
            topic_table(topics), num_rows="dynamic", width="stretch", key=f"topics-editor-{file.name}"
        )
        name = safe_name(st.text_input("Save as", file.stem + "-edited", key="topics-save-name"))
        if st.button("Save topics", key="topics-save"):
            out = ws.folder("topics") / f"{name}.jsonl"
            save_tree(topics_from_table(edited), out)
            st.success(f"saved {out.name}")


def topic_table(topics: list[Topic]) -> list[dict[str, Any]]:
    return [
        {"path": PATH_SEPARATOR.join(t.path), "samples": t.samples, "domain_type": t.domain_type, "id": t.id}
        for t in topics
    ]


def topics_from_table(rows: Any) -> list[Topic]:
    """Topics from the edited table (a DataFrame or a list of dicts); an empty path is refused."""
    records = rows.to_dict("records") if hasattr(rows, "to_dict") else list(rows)
    topics = []
    for number, row in enumerate(records, start=1):
        path = [part.strip() for part in str(row.get("path") or "").split(PATH_SEPARATOR.strip()) if part.strip()]
        if not path:
            raise UserError(f"row {number} has no path", field="path", fix="write e.g. Security > Phishing")
        samples = _whole(row.get("samples"), number)
        domain = _text(row.get("domain_type"))
        ident = _text(row.get("id"))
        topics.append(Topic(path, samples=samples, domain_type=domain, id=ident))
    if not topics:
        raise UserError("the table is empty", field="topics", fix="add at least one topic")
    return topics


def _text(value: Any) -> str | None:
    text = "" if value is None or value != value else str(value).strip()  # NaN != NaN: an empty cell
    return text or None


def _whole(value: Any, number: int) -> int | None:
    if _text(value) is None:
        return None
    try:
        count = float(value)
    except (TypeError, ValueError):
        count = -1.0
    if count < 0 or not count.is_integer():
        raise UserError(f"row {number}: samples {value!r} is not a whole number ≥ 0", field="samples", fix="e.g. 10")
    return int(count)


def show_tree(topics: list[Topic]) -> None:
    """One expander per first-level node, the deeper levels as a nested list inside it."""
    tree: dict[str, Any] = {}
    for topic in topics:
        node = tree
        for part in topic.path:
            node = node.setdefault(part, {})
        if topic.samples is not None:
            node["__samples__"] = topic.samples
    top = tree if len(tree) != 1 or len(topics) == 1 else next(iter(tree.values()))  # a single root: its children
    for name, children in top.items():
        if name == "__samples__":
            continue
        count = children.get("__samples__")
        with st.expander(f"{name}" + (f" ({count} samples)" if count is not None else "")):
            lines = _bullets(children, 0)
            st.markdown("\n".join(lines) if lines else "_(a leaf topic)_")


def _bullets(node: dict[str, Any], level: int) -> list[str]:
    lines = []
    for name, children in node.items():
        if name == "__samples__":
            continue
        count = children.get("__samples__")
        lines.append("  " * level + f"- {name}" + (f" ({count})" if count is not None else ""))
        lines += _bullets(children, level + 1)
    return lines
