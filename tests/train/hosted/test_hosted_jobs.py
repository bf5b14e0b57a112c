"""Hosted training end to end against each service's local fake: upload → create → progress → success → the
result recorded in the run folder; failure, timeout, Ctrl-C (cancel or keep), kill then resume, and the key
kept out of every file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from hosted_fakes import Script, loss_at
from hosted_helpers import BACKENDS, BASE_MODELS, KEY_ENVS, assert_no_key, error_line, train_args

from sectune.runs import read_json
from sectune.train.api import is_finished

ROWS = {"train": 24, "validation": 6}  # tests/train/conftest.py's tiny_dataset


def uploaded(backend, fake) -> dict[str, int]:
    """File name → rows, as the fake received them."""
    return dict(fake.uploads)


def expected_uploads(backend) -> dict[str, int]:
    if backend == "predibase":  # one file; the validation rows are marked "split": "evaluation"
        return {"dataset.jsonl": ROWS["train"] + ROWS["validation"]}
    return {"train.jsonl": ROWS["train"], "validation.jsonl": ROWS["validation"]}


def check_mapping(backend, request) -> None:
    """The create request carries the config's values, in the service's own names."""
    if backend == "openai":
        hyper = request["method"]["supervised"]["hyperparameters"]
        assert request["model"] == BASE_MODELS["openai"] and request["seed"] == 7
        assert hyper == {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": "auto"}
        assert request["suffix"] == "hosted-test" and request["validation_file"].startswith("file-")
    elif backend == "together":
        assert request["model"] == BASE_MODELS["together"] and request["n_epochs"] == 1
        assert request["learning_rate"] == pytest.approx(2e-4) and request["batch_size"] == 2
        assert request["gradient_accumulation_steps"] == 2 and request["random_seed"] == 7
        assert request["training_type"] == {
            "type": "Lora",
            "lora_r": 4,
            "lora_alpha": 8,
            "lora_dropout": pytest.approx(0.05),
            "lora_trainable_modules": "q_proj,v_proj",
        }
        assert request["training_method"] == {"method": "sft", "train_on_inputs": False}
        assert request["validation_file"] and request["n_evals"] == 1
    else:
        params = request["params"]
        assert params["base_model"] == BASE_MODELS["predibase"] and params["adapter"] == "lora"
        assert (params["rank"], params["lora_alpha"], params["epochs"]) == (4, 8, 1)
        assert params["target_modules"] == ["q_proj", "v_proj"] and params["effective_batch_size"] == 4
        assert params["lora_dropout"] == pytest.approx(0.05) and params["learning_rate"] == pytest.approx(2e-4)
        assert request["repo"] == "hosted-test" and request["dataset"].startswith("hosted-test-")


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_hosted_run_lands_in_a_run_folder(
    backend, make_fake, hosted_sets, tiny_dataset, tiny_adapter, cli, keys, tmp_path
):
    fake = make_fake(backend, Script(steps=3))
    out = tmp_path / "run"
    code, stdout, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake)))
    assert code == 0, err
    assert fake.unknown == [] and len(fake.creations) == 1 and fake.cancels == []
    assert uploaded(backend, fake) == expected_uploads(backend)
    check_mapping(backend, fake.creations[0])
    assert set(fake.authorizations) == {f"Bearer {keys[backend]}"}  # the key was sent, and only it
    job_id = next(iter(fake.jobs))

    summary = read_json(out / "summary.json")
    assert is_finished(out) and not (tmp_path / "run.partial").exists()
    assert summary["backend"] == backend and summary["job_id"] == job_id
    assert summary["log_history"] == [{"step": s, "loss": loss_at(s)} for s in (1, 2, 3)]
    assert summary["final_train_loss"] == loss_at(3) and summary["global_step"] == 3
    assert summary["rows"] == {"train": 24, "validation": 6, "test": 4}
    expected_cost = {"openai": 120_000 * 3.00 / 1e6, "together": 0.37, "predibase": 0.42}[backend]
    assert summary["cost_usd"] == pytest.approx(expected_cost)
    assert f"{backend} job {job_id}" in err and f"loss {loss_at(3):.4g}" in err  # the progress line
    assert read_json(out / "hosted_job.json")["job_id"] == job_id
    if backend == "openai":  # OpenAI keeps the weights: the run points at its endpoint
        job = fake.jobs[job_id]
        assert not (out / "adapter").exists()
        assert read_json(out / "endpoint.json") | {"note": None} == {
            "backend": "openai",
            "endpoint": fake.base_url,
            "model": fake.model_of(job),
            "api_key_env": "OPENAI_API_KEY",
            "note": None,
        }
        assert summary["result"]["weights"] == "hosted only (endpoint.json)"
    else:  # the adapter the fake served, byte for byte, as a standard PEFT folder
        for name in ("adapter_config.json", "adapter_model.safetensors"):
            assert (out / "adapter" / name).read_bytes() == (tiny_adapter / name).read_bytes()
        assert not (out / "endpoint.json").exists() and not (out / "download").exists()
    assert str(out) in stdout and job_id in stdout
    assert assert_no_key(out, keys[backend]) >= 4


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failed_job_exits_1_with_the_providers_words(
    backend, make_fake, hosted_sets, tiny_dataset, cli, keys, tmp_path
):
    script = Script(end="fail", steps=1, error="training file has too few examples for this model")
    fake = make_fake(backend, script)
    out = tmp_path / "run"
    code, _, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake)))
    line = error_line(err)
    assert code == 1, err
    assert script.error in line and next(iter(fake.jobs)) in line and "failed" in line
    assert not out.exists() and (tmp_path / "run.partial" / "hosted_job.json").is_file()
    assert assert_no_key(tmp_path / "run.partial", keys[backend]) >= 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_job_that_never_ends_times_out_and_keeps_running(
    backend, make_fake, hosted_sets, tiny_dataset, cli, tmp_path
):
    fake = make_fake(backend, Script(end="never", steps=2))
    out = tmp_path / "run"
    code, _, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake, "train.hosted.timeout_s=0.5")))
    line = error_line(err)
    assert code == 1, err
    assert "train.hosted.timeout_s" in line and "after 0.5 s" in line and "--resume" in line
    job = next(iter(fake.jobs.values()))
    assert fake.cancels == [] and job.phase == "running" and job.polls >= 3  # followed for a while, left alone


@pytest.fixture(autouse=True)
def sigint_raises():
    """Python's Ctrl-C handler, even where pytest came with SIGINT ignored (started by ``nohup … &``)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def interrupt_at_poll(fake, poll: int) -> None:
    """Ctrl-C in the follow loop: SIGINT to the main thread while it waits for the ``poll``-th status."""
    main = threading.main_thread().ident
    assert main is not None

    def hook(job, polls):
        if polls == poll:
            signal.pthread_kill(main, signal.SIGINT)

    fake.on_poll = hook


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_with_cancel_on_interrupt_cancels_the_job(backend, make_fake, hosted_sets, tiny_dataset, cli, tmp_path):
    fake = make_fake(backend, Script(end="never", steps=5))
    interrupt_at_poll(fake, 3)
    out = tmp_path / "run"
    code, _, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake), "--cancel-on-interrupt"))
    line = error_line(err)
    job_id = next(iter(fake.jobs))
    assert code == 1, err
    assert fake.cancels == [job_id] and fake.jobs[job_id].phase == "cancelled"
    assert "cancelled" in line and "--cancel-on-interrupt" in line and job_id in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_without_the_flag_keeps_the_job_and_resume_reattaches(
    backend, make_fake, hosted_sets, tiny_dataset, cli, tmp_path
):
    fake = make_fake(backend, Script(steps=3))
    fake.hold = True  # the job waits while the first sectune train is interrupted
    interrupt_at_poll(fake, 2)
    out = tmp_path / "run"
    sets = hosted_sets(backend, fake)
    code, _, err = cli(*train_args(tiny_dataset, out, sets))  # stdin is no terminal: nobody says yes
    assert code == 130 and "interrupted" in err and "keeps running" in err, err
    assert fake.cancels == [] and len(fake.creations) == 1
    uploads = list(fake.uploads)

    fake.on_poll, fake.hold = None, False
    code, _, err = cli(*train_args(tiny_dataset, out, sets, "--resume"))
    assert code == 0, err
    assert "re-attaching" in err and len(fake.creations) == 1 and fake.uploads == uploads
    assert read_json(out / "summary.json")["job_id"] == next(iter(fake.jobs))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_train_resumes_onto_the_same_job(backend, make_fake, hosted_sets, tiny_dataset, cli, keys, tmp_path):
    fake = make_fake(backend, Script(steps=2))
    fake.hold = True  # the job stays where it is until the first process is dead
    out = tmp_path / "run"
    sets = hosted_sets(backend, fake)
    env = {**os.environ, KEY_ENVS[backend]: keys[backend]}
    process = subprocess.Popen(
        [sys.executable, "-m", "sectune", *train_args(tiny_dataset, out, sets)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    record = tmp_path / "run.partial" / "hosted_job.json"
    deadline = time.monotonic() + 180
    while not record.is_file() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = process.poll() is None
    process.send_signal(signal.SIGKILL)
    _, stderr = process.communicate(timeout=60)
    assert alive and record.is_file(), stderr.decode()[-2000:]
    assert len(fake.creations) == 1 and not out.exists()
    uploads = list(fake.uploads)

    fake.hold = False
    code, _, err = cli(*train_args(tiny_dataset, out, sets, "--resume"))
    assert code == 0, err
    assert len(fake.creations) == 1 and fake.uploads == uploads  # the same job: nothing paid twice
    assert read_json(out / "summary.json")["job_id"] == next(iter(fake.jobs))
    assert read_json(out / "hosted_job.json")["job_id"] == next(iter(fake.jobs))
    assert assert_no_key(out, keys[backend]) >= 4
