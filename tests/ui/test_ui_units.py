"""The UI's plain functions: reading a live run folder, background jobs, form values → overrides, streaming."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time

import pytest
import yaml

from sectune.config import load_config
from sectune.errors import UserError
from sectune.ui import follow, jobs
from sectune.ui.forms import KEY_ENV, extra_settings, provider_settings, setting
from sectune.ui.streaming import stream_tokens
from sectune.ui.workspace import Workspace


def write_lines(path, rows, torn=""):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + torn, encoding="utf-8")


def outcome(slot, status, reason=None, cost=0.001, cached=False):
    return {"slot": slot, "topic": 0, "k": int(slot.split(":")[1]), "cached": cached, "prompt_tokens": 10,
            "completion_tokens": 20, "cost_usd": cost, "status": status, "reason": reason}  # fmt: skip


def live_generate_run(tmp_path, outcomes, samples, torn=""):
    run = tmp_path / "gen"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"generate": {"num_samples": 10}}))
    write_lines(run / "topics.jsonl", [{"path": ["Security", "Phishing"]}, {"path": ["Security", "VPN"]}])
    write_lines(run / "requests.jsonl", outcomes, torn)
    write_lines(run / "samples.jsonl", [{"messages": [], "meta": {"slot": s}} for s in samples])
    return run


def test_live_generate_progress_counts_rate_eta_tokens_cost_and_rejections(tmp_path):
    outcomes = [
        outcome("0:0", "accepted"),
        outcome("0:1", "rejected", "too_short"),
        outcome("1:0", "accepted"),
        outcome("0:1", "accepted"),  # a retried slot: its latest line wins
        outcome("1:1", "rejected", "near_duplicate"),
        outcome("0:2", "failed", "timeout", cost=None),
    ]
    run = live_generate_run(tmp_path, outcomes, ["0:0", "1:0", "0:1"], torn='{"slot": "1:2", "topic"')
    before = (run / "requests.jsonl").read_bytes()
    progress = follow.generate_progress(run, running=True, started=100.0, now=130.0)
    assert (run / "requests.jsonl").read_bytes() == before  # the torn line is skipped, never cut off
    assert progress.requested == 10 and progress.accepted == 3 and progress.fraction == pytest.approx(0.3)
    assert progress.rejected == {"near_duplicate": 1} and progress.failed == {"timeout": 1}
    assert (progress.prompt_tokens, progress.completion_tokens) == (60, 120)  # every line: retries cost too
    assert progress.cost_usd is None  # one request of unknown price: the total is unknown, not a guess
    assert progress.rate_per_s == pytest.approx(0.1) and progress.eta_s == pytest.approx(70)


def test_generate_progress_of_an_ended_run_is_its_summary(tmp_path):
    run = live_generate_run(tmp_path, [outcome("0:0", "accepted")], ["0:0"])
    summary = {
        "status": "incomplete", "requested": 10, "accepted": 9, "rejected": {"refusal": 2}, "failed": {},
        "prompt_tokens": 5, "completion_tokens": 7, "cost_usd": 0.25, "samples_per_s_this_session": 1.5,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    progress = follow.generate_progress(run, running=False)
    assert (progress.status, progress.accepted, progress.rejected, progress.cost_usd) == (
        "incomplete", 9, {"refusal": 2}, 0.25,
    )  # fmt: skip


def test_train_metrics_follow_the_partial_folder_and_keep_the_last_line_of_a_repeated_step(tmp_path):
    run = tmp_path / "run"
    work = tmp_path / "run.partial"
    work.mkdir()
    rows = [
        {"step": 1, "loss": 3.0, "eval_loss": None},
        {"step": 2, "loss": 2.5, "eval_loss": None},
        {"step": 2, "loss": None, "eval_loss": 2.7},
        {"step": 3, "loss": 2.2, "eval_loss": None},
        {"step": 3, "loss": 2.1, "eval_loss": None},  # resumed from checkpoint-2: step 3 again
    ]
    write_lines(work / "metrics.jsonl", rows, torn='{"step": 4, "lo')
    series = follow.loss_series(follow.train_metrics(run))
    assert series == {"train loss": {1: 3.0, 2: 2.5, 3: 2.1}, "eval loss": {2: 2.7}}
    work.rename(run)  # published: the same file, now in OUT/
    assert follow.loss_series(follow.train_metrics(run))["train loss"] == {1: 3.0, 2: 2.5, 3: 2.1}


def test_a_job_runs_in_its_own_session_and_its_record_holds_no_secret(tmp_path):
    ws = Workspace(tmp_path / "ws")
    secret = "sk-never-on-disk-42"
    job = jobs.start_job(ws, "check", ["--set", "seed=-1"], tmp_path / "nothing", secret_env={KEY_ENV: secret})
    assert os.getsid(job.pid) == job.pid  # a session of its own: a closed browser or a stopped UI leaves it be
    assert jobs.wait(job, 60)
    state, line = jobs.state_of(job)
    assert state == "failed" and line.startswith("error: --set: seed") and "\n" not in line
    assert all(secret not in path.read_text() for path in ws.folder("jobs").iterdir())
    [listed] = jobs.jobs_of(ws, "check")
    assert listed.pid == job.pid and listed.args == ["--set", "seed=-1"]


def test_a_job_found_from_its_record_alone_is_followed_and_stopped(tmp_path):
    # a job hears SIGINT even where this process came with it ignored (SECTUNE_INTERRUPTIBLE): so does the sleeper
    sleep = (
        "import signal, time; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "print('ready', flush=True); time.sleep(60)"
    )
    sleeper = jobs.subprocess.Popen(
        [sys.executable, "-c", sleep], start_new_session=True, stdout=subprocess.PIPE, text=True
    )
    assert sleeper.stdout is not None and sleeper.stdout.readline() == "ready\n"  # its handler is in place
    record = jobs.Job("x", "generate", [], str(tmp_path / "gen"), sleeper.pid, time.time(), str(tmp_path / "x.log"))
    assert jobs.is_running(record)  # not a child of this UI process: found by pid and start time
    jobs.stop_job(record)
    sleeper.wait(10)
    assert not jobs.is_running(record) and jobs.state_of(record)[0] == "stopped"
    stale = jobs.Job("y", "generate", [], str(tmp_path / "gen"), os.getpid(), time.time() - 3600, "y.log")
    assert not jobs.is_running(stale)  # a reused pid (this process started long after the record) is not the job


def test_form_values_become_the_same_overrides_as_the_cli():
    root = "Cloud: security, IAM & [keys]"
    assert load_config(None, [setting("generate.topics.root", root)]).generate.topics.root == root
    sets, secrets = provider_settings("OpenAI-compatible URL", "gpt-x", "http://127.0.0.1:9/v1", "sk-1")
    cfg = load_config(None, sets)
    assert (cfg.generate.provider, cfg.generate.model, cfg.generate.base_url) == (
        "openai",
        "gpt-x",
        "http://127.0.0.1:9/v1",
    )
    assert cfg.generate.api_key_env == KEY_ENV and secrets == {KEY_ENV: "sk-1"} and "sk-1" not in " ".join(sets)
    assert provider_settings("embedded model", "", "", "typed anyway") == ([setting("generate.provider", "local")], {})
    with pytest.raises(UserError, match="a model name is needed"):
        provider_settings("Anthropic", " ", "", "")
    assert extra_settings("# comment\n\ntrain.lora.r=32\n") == ["train.lora.r=32"]
    with pytest.raises(UserError, match=r"'train\.lora\.r' is not key=value"):
        extra_settings("train.lora.r")


def test_stream_tokens_yields_each_piece_as_it_comes_then_raises_the_answer_error():
    release = threading.Event()

    def answer(on_token):
        on_token("Hel")
        release.wait(5)  # the reader has the first piece before the answer goes on
        on_token("lo")
        raise UserError("the endpoint failed")

    stream = stream_tokens(answer)
    assert next(stream) == "Hel"
    release.set()
    assert next(stream) == "lo"
    with pytest.raises(UserError, match="the endpoint failed"):
        next(stream)


def test_the_length_histogram_comes_back_in_length_order_from_sorted_json():
    bins = {"0-64": 1, "129-192": 3, "65-128": 2}  # the order summary.json's sort_keys leaves them in
    summary = {"tokens": {"all": {"histogram": {"bins": bins, ">192": 4, "max_length": 192}}, "max_length": 192}}
    ordered, over, max_length = follow.length_histogram(summary)
    assert list(ordered) == ["0-64", "65-128", "129-192"]
    assert (over, max_length) == (4, 192)
