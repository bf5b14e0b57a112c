"""A hosted run folder is used like a local one: the adapter Predibase served is evaluated as a local run; an
OpenAI run (weights stay hosted) is evaluated and chatted with at its endpoint; what cannot work is refused."""

from __future__ import annotations

import json

import pytest
from hosted_fakes import Script
from hosted_helpers import error_line, train_args

from sectune.config import load_config
from sectune.errors import UserError
from sectune.runs import read_json

FAST_EVAL = [
    "eval.metrics=[rouge_l,length]",
    "eval.max_examples=3",
    "eval.max_new_tokens=4",
    "eval.bootstrap_samples=50",
]


def hosted_run(backend, make_fake, hosted_sets, tiny_dataset, cli, tmp_path):
    fake = make_fake(backend, Script(steps=2))
    out = tmp_path / f"{backend}-run"
    code, _, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake)))
    assert code == 0, err
    return fake, out


def test_the_predibase_adapter_is_evaluated_like_a_local_run(
    make_fake, hosted_sets, tiny_dataset, tiny_model_dir, cli, tmp_path
):
    from sectune.api import evaluate

    _, run = hosted_run("predibase", make_fake, hosted_sets, tiny_dataset, cli, tmp_path)
    sets = [f"model={tiny_model_dir}", *FAST_EVAL, "eval.benchmarks=[cyber-mini]", "eval.max_questions=4"]
    sets.append("eval.mcq_scoring=[option]")
    folder = evaluate(load_config(None, sets), [tiny_model_dir, run], tmp_path / "eval", dataset=tiny_dataset)
    summary = read_json(folder / "summary.json")
    base, tuned = (summary["targets"][label] for label in summary["order"])
    assert tuned["target"] == str(run) and tuned["kind"] == "local"
    assert tuned["adapter_logit_change"] > 1e-3 and base["adapter_logit_change"] == 0.0
    for result in (base, tuned):
        assert result["generation"]["examples"] == 3 and result["generation"]["failed_requests"] == 0
        assert 0.0 <= result["generation"]["rouge_l"]["value"] <= 1.0
        option = result["mcq"]["cyber-mini"]["methods"]["option"]
        assert len(option["correct"]) == 4 and 0.0 <= option["accuracy"]["value"] <= 1.0
    predictions = (folder / "predictions" / f"{summary['order'][1]}.jsonl").read_text().splitlines()
    assert len(predictions) == 3


def test_an_openai_run_is_evaluated_and_chatted_with_at_its_endpoint(
    make_fake, hosted_sets, tiny_dataset, tiny_model_dir, cli, keys, tmp_path
):
    from sectune.api import chat, evaluate

    fake, run = hosted_run("openai", make_fake, hosted_sets, tiny_dataset, cli, tmp_path)
    model_id = fake.model_of(next(iter(fake.jobs.values())))
    cfg = load_config(None, [f"model={tiny_model_dir}", *FAST_EVAL, "eval.benchmarks=[]"])
    folder = evaluate(cfg, run, tmp_path / "eval", dataset=tiny_dataset)
    result = read_json(folder / "summary.json")["targets"][run.name]
    assert result["kind"] == "hosted" and result["backend"] == "openai" and result["model"] == model_id
    assert result["generation"]["examples"] == 3 and result["generation"]["failed_requests"] == 0
    assert [c["model"] for c in fake.chats] == [model_id] * 3
    rows = [json.loads(line) for line in (folder / "predictions" / f"{run.name}.jsonl").read_text().splitlines()]
    assert all(model_id in json.dumps(row) for row in rows)
    assert set(fake.authorizations) == {f"Bearer {keys['openai']}"}

    answer = chat(cfg, run, [{"role": "user", "content": "What is a firewall?"}])
    assert answer == f"{model_id} answers: What is a firewall?" and len(fake.chats) == 4


def test_a_hosted_run_without_weights_refuses_mcq_scoring_export_and_serve(
    make_fake, hosted_sets, tiny_dataset, tiny_model_dir, cli, tmp_path
):
    from sectune.api import export
    from sectune.serve.engine import parse_target

    fake, run = hosted_run("openai", make_fake, hosted_sets, tiny_dataset, cli, tmp_path)
    requests = len(fake.requests)
    code, _, err = cli(
        "eval", run, "--out", tmp_path / "eval", "--dataset", tiny_dataset, "--set", f"model={tiny_model_dir}"
    )
    line = error_line(err)
    assert code == 2 and "eval.benchmarks" in line and "log-likelihoods" in line and "eval.benchmarks=[]" in line
    assert not (tmp_path / "eval").exists() and len(fake.requests) == requests  # refused before any request
    with pytest.raises(UserError, match="nothing here to export"):
        export(run, tmp_path / "export")
    with pytest.raises(UserError, match="serve loads local weights"):
        parse_target(str(run))
