"""Train: model and method, the memory plan before starting (a refusal when it does not fit), then a background
``sectune train`` job with its live loss curve (train and eval, from metrics.jsonl), stop and resume."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sectune.errors import UserError
from sectune.ui import follow, jobs
from sectune.ui.forms import METHODS, extra_settings, job_args, load_ui_config, train_settings
from sectune.ui.views.common import job_panel, live, pick_path, pick_run, rerun_when_done
from sectune.ui.workspace import Workspace, new_name, safe_name

PLAN_PARTS = (
    ("weights", "weights_gb"),
    ("LoRA (weights, grads, AdamW)", "lora_gb"),
    ("gradients", "gradients_gb"),
    ("optimizer (AdamW)", "optimizer_gb"),
    ("activations + logits", "activations_gb"),
    ("runtime overhead", "overhead_gb"),
    ("total", "total_gb"),
)


def render(ws: Workspace) -> None:
    st.header("Train")
    with st.expander("New run", expanded=not ws.runs_of("runs")):
        new_run_form(ws)
    run = pick_run(ws, "train", "runs")
    if run is None:
        st.info("No training run yet: start one above.")
        return
    job = jobs.latest_job(ws, "train", run)
    running = job is not None and jobs.is_running(job)

    def panel() -> None:
        job_panel(job, key="train-job", on_resume=lambda: _resume(ws, job, run))
        show_run(run)
        rerun_when_done(job, running)

    live(panel, running, key="train-live")


def new_run_form(ws: Workspace) -> None:
    dataset = pick_path("Dataset", ws.finished_runs("datasets"), key="train-dataset")
    if dataset is None:
        st.info("No dataset yet: prepare one on the Data page.")
        return
    base = load_ui_config(ws, [])
    dataset_model = (follow.summary_of(dataset) or {}).get("model") or base.model
    model = st.text_input("Model (registry key or folder)", dataset_model, key="train-model")
    cols = st.columns(4)
    method = cols[0].selectbox("Method", METHODS, index=METHODS.index(base.train.method), key="train-method")
    max_steps = cols[1].number_input("Max steps (0: by epochs)", 0, 10**7, max(0, base.train.max_steps),
                                     key="train-max-steps")  # fmt: skip
    epochs = cols[2].number_input("Epochs", 0.01, 1000.0, float(base.train.epochs), key="train-epochs")
    learning_rate = cols[3].number_input("Learning rate", 1e-7, 1.0, base.train.learning_rate, format="%.1e",
                                         key="train-lr")  # fmt: skip
    extra = st.text_area("Extra settings (key=value per line)", key="train-extra")
    sets = [*train_settings(model, method, int(max_steps), epochs, learning_rate), *extra_settings(extra)]
    cfg = load_ui_config(ws, sets)
    fits = show_plan(cfg)
    name = safe_name(st.text_input("Run name", new_name("run"), key="train-name"))
    job = jobs.latest_job(ws, "train")
    busy = job is not None and jobs.is_running(job)
    if not st.button("Start training", disabled=fits is False or busy, key="train-start"):
        return
    out = ws.folder("runs") / name
    if out.exists() or follow.partial(out).exists():
        raise UserError("a run of that name exists", file=out, fix="choose another name, or resume it below")
    jobs.start_job(ws, "train", [str(dataset), "--out", str(out), *job_args(ws, sets)], out)


def show_plan(cfg) -> bool | None:
    """The memory plan as a table; False (and the reason) when it does not fit this machine."""
    from sectune.api import plan

    try:
        estimate = plan(cfg)
    except UserError as exc:
        st.info(f"no memory plan: {exc}")
        return None
    rows = [{"part": label, "GB": round(getattr(estimate, name), 2)} for label, name in PLAN_PARTS]
    where = "free GPU memory" if estimate.device == "cuda" else "available RAM"
    rows.append({"part": f"{estimate.device}: {where}", "GB": estimate.available_gb})
    st.caption(
        f"Memory plan: {estimate.model}, {estimate.method}, batch {estimate.batch_size} × {estimate.max_length} "
        f"tokens, {estimate.precision}, gradient checkpointing {'on' if estimate.gradient_checkpointing else 'off'}"
    )
    st.dataframe(rows, hide_index=True)
    for note in estimate.notes:
        st.caption(note)
    if estimate.fits is False:
        st.error(
            f"does not fit: {estimate.total_gb:.1f} GB needed, {estimate.available_gb:.1f} GB available "
            "(try qlora, gradient checkpointing, a smaller batch or max length)"
        )
    return estimate.fits


def _resume(ws: Workspace, job: jobs.Job | None, run: Path) -> None:
    if job is None or not follow.has_checkpoint(run):
        raise UserError("no checkpoint to resume from yet", file=follow.partial(run), fix="start a new run")
    args = job.args if "--resume" in job.args else [*job.args, "--resume"]
    jobs.start_job(ws, "train", args, job.out)


def show_run(run: Path) -> None:
    metrics = follow.train_metrics(run)
    series = follow.loss_series(metrics)
    steps = follow.max_steps_of(run)
    done = metrics[-1]["step"] if metrics else 0
    st.caption(f"step {done}" + (f" of {steps}" if steps else "") + f" · {len(series['train loss'])} loss points")
    if metrics:
        import pandas as pd

        st.line_chart(pd.DataFrame(series), x_label="step", y_label="loss")
    summary = follow.summary_of(run)
    if summary is not None:
        cols = st.columns(4)
        cols[0].metric("final train loss", _fmt(summary.get("final_train_loss")))
        cols[1].metric("eval loss", _fmt(summary.get("eval_loss")))
        cols[2].metric("tokens/s", _fmt(summary.get("tokens_per_s")))
        cols[3].metric("peak memory MB", _fmt(summary.get("peak_memory_mb")))


def _fmt(value: object) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "-"
