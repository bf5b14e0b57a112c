"""Compare: a study's tables and plots (its report folder), and the answers of a base model and a fine-tuned
run side by side, to a held-out question of the run's dataset or to one typed here."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sectune.ui import follow
from sectune.ui.forms import load_ui_config
from sectune.ui.views.common import pick_path
from sectune.ui.workspace import Workspace

HELD_OUT, TYPED = "a held-out question", "my own question"


def render(ws: Workspace) -> None:
    st.header("Compare")
    study_section(ws)
    side_by_side(ws)


def study_section(ws: Workspace) -> None:
    st.subheader("Study report")
    studies = [s for s in ws.runs_of("studies") if (s / "report" / "report.md").is_file()]
    study = pick_path("Study", studies, key="compare-study")
    if study is None:
        st.info(f"No study report in {ws.folder('studies')} yet: run `sectune study DATASET --out` into it.")
        return
    markdown, plots = follow.study_report(study)
    st.markdown(markdown)
    for plot in plots:
        st.image(str(plot), caption=plot.stem.replace("_", " "))


def side_by_side(ws: Workspace) -> None:
    st.subheader("Base and fine-tuned, side by side")
    runs = trained_runs(ws)
    run = pick_path("Fine-tuned run", runs, key="compare-run")
    if run is None:
        st.info("No finished training run yet: train one on the Train page.")
        return
    base = (follow.summary_of(run) or {}).get("base_model", "")
    st.caption(f"base model: {base}")
    messages = pick_question(run)
    max_new_tokens = st.number_input("Max new tokens", 1, 4096, 128, key="compare-max-new")
    if messages and st.button("Answer with both", key="compare-go"):
        cfg = load_ui_config(ws, [])
        from sectune.api import chat

        answers = {}
        for label, target in (("base", base), ("fine-tuned", str(run))):
            with st.spinner(f"{label} model answering"):
                answers[label] = chat(cfg, target, messages, max_new_tokens=int(max_new_tokens))
        st.session_state["compare-answers"] = (str(run), messages[-1]["content"], answers)
    shown = st.session_state.get("compare-answers")
    if shown and shown[0] == str(run):
        st.caption(f"question: {shown[1]}")
        for column, (label, answer) in zip(st.columns(2), shown[2].items(), strict=True):
            column.markdown(f"**{label}**")
            column.write(answer)


def pick_question(run: Path) -> list[dict[str, str]] | None:
    how = st.radio("Question", [HELD_OUT, TYPED], horizontal=True, key="compare-how")
    if how == TYPED:
        text = st.text_area("Your question", key="compare-typed")
        return [{"role": "user", "content": text.strip()}] if text.strip() else None
    prompts = follow.held_out_questions(run)
    if not prompts:
        st.info("The run's dataset has no test or validation rows: type a question instead.")
        return None
    labels = [f"{i + 1}. {p[-1]['content'][:120]}" for i, p in enumerate(prompts)]
    chosen = st.selectbox("Held-out question", labels, key="compare-question")
    return prompts[labels.index(chosen)]


def trained_runs(ws: Workspace) -> list[Path]:
    """Finished train runs: the workspace's, and those inside its studies."""
    from sectune.models.load import is_train_run

    runs = [r for r in ws.runs_of("runs") if is_train_run(r)]
    for study in ws.runs_of("studies"):
        runs += [r for r in sorted((study / "runs").glob("*")) if is_train_run(r)]
    return runs
