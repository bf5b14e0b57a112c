"""The Train page: the memory plan and its refusal, a 2-step job with its live loss curve, stop and resume."""

from __future__ import annotations

import shutil
import time

import pytest
from ui_helpers import open_page, texts

from sectune.ui import follow, jobs


def with_dataset(workspace, prepared_dataset):
    shutil.copytree(prepared_dataset, workspace.folder("datasets") / "ds1")
    return open_page("train")


def test_a_plan_that_does_not_fit_refuses_to_start(workspace, prepared_dataset):
    app = with_dataset(workspace, prepared_dataset)
    app.text_input(key="train-model").set_value("mistral-7b").run()
    app.selectbox(key="train-method").set_value("full").run()
    assert not app.exception
    shown = texts(app)
    assert "Memory plan: mistral-7b, full" in shown
    [refusal] = [e.value for e in app.error]
    assert refusal.startswith("does not fit:") and "GB available" in refusal
    assert app.button(key="train-start").disabled
    plan_table = app.dataframe[0].value
    assert list(plan_table["part"])[:2] == ["weights", "LoRA (weights, grads, AdamW)"]


def test_train_two_steps_as_a_job_and_see_the_loss_curve(workspace, prepared_dataset):
    app = with_dataset(workspace, prepared_dataset)
    assert "no memory plan" in texts(app)  # a model folder has no architecture numbers: allowed, said so
    app.number_input(key="train-max-steps").set_value(2)
    app.text_input(key="train-name").set_value("run1")
    app.button(key="train-start").click().run()
    assert not app.exception and not app.error, texts(app)
    job = jobs.latest_job(workspace, "train")
    assert jobs.wait(job, 180), jobs.log_tail(job)
    app.run()
    shown = texts(app)
    assert "train job finished" in shown, shown
    assert "step 2 of 2 · 2 loss points" in shown
    [chart] = app.get("vega_lite_chart")
    assert "train loss" in str(chart.proto) and "eval loss" in str(chart.proto)
    assert "final train loss" in shown
    assert (workspace.root / "runs" / "run1" / "adapter").is_dir()


@pytest.mark.slow  # two training processes, ~30 s: .ci/run runs it
def test_stop_then_resume_from_the_checkpoint(workspace, prepared_dataset):
    app = with_dataset(workspace, prepared_dataset)
    app.number_input(key="train-max-steps").set_value(24)
    app.text_area(key="train-extra").set_value("train.save_steps=2\ntrain.eval_steps=2")
    app.text_input(key="train-name").set_value("long")
    app.button(key="train-start").click().run()
    job = jobs.latest_job(workspace, "train")
    run = workspace.root / "runs" / "long"
    deadline = time.monotonic() + 120
    while not follow.has_checkpoint(run) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert follow.has_checkpoint(run), jobs.log_tail(job)
    app.run()
    app.button(key="train-job-stop").click().run()
    assert jobs.wait(job, 60)
    app.run()
    assert "train job stopped" in texts(app)
    app.button(key="train-job-resume").click().run()
    resumed = jobs.latest_job(workspace, "train")
    assert resumed.id != job.id and resumed.args[-1] == "--resume"
    assert jobs.wait(resumed, 240), jobs.log_tail(resumed)
    summary = follow.summary_of(run)
    assert summary["global_step"] == 24 and summary["resumed_from"].startswith("checkpoint-")
    steps = [row["step"] for row in follow.train_metrics(run) if row["loss"] is not None]
    assert steps == list(range(1, 25))  # repeated steps after the checkpoint are shown once
