"""`sectune eval` end to end on the tiny model: targets, the adapter guard, endpoints, determinism, CLI."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from sectune.cli.main import app
from sectune.config import load_config
from sectune.errors import UserError
from sectune.evaluate.api import evaluate
from sectune.testing.fake_openai import FakeOpenAI

FAST = [
    "eval.max_new_tokens=4",
    "eval.bootstrap_samples=100",
    "eval.max_questions=4",
    "eval.metrics=[rouge_l,chrf,bleu,perplexity,length]",
]


def _lora_folder(base_dir, out, *, trained: bool):
    """A PEFT LoRA adapter on the tiny model: fresh (B = 0, changes nothing) or with random B weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(base_dir), LoraConfig(r=4, target_modules=["q_proj", "v_proj"])
    )
    if trained:
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "lora_B" in name:
                    param.normal_(0, 0.5)
    model.save_pretrained(out)
    return out


def _train_run(base_dir, run, *, trained: bool):
    """A train run folder as `sectune train` writes it (adapter/ + summary.json)."""
    run.mkdir()
    _lora_folder(base_dir, run / "adapter", trained=trained)
    (run / "summary.json").write_text(json.dumps({"base_model": str(base_dir), "method": "lora"}))
    return run


def test_zero_weight_adapter_is_caught_and_nothing_is_written(tiny_model_dir, tiny_dataset, tmp_path):
    run = _train_run(tiny_model_dir, tmp_path / "run-untrained", trained=False)
    cfg = load_config(None, FAST)
    out = tmp_path / "eval"
    with pytest.raises(UserError) as err:
        evaluate(cfg, [str(tiny_model_dir), str(run)], out, dataset=tiny_dataset)
    assert "does not change the model's logits" in str(err.value) and str(run) in str(err.value)
    assert "sectune train" in err.value.fix
    assert not out.exists() and not list(tmp_path.glob(".eval.tmp-*"))


def test_bare_adapter_folder_with_zero_weights_is_caught(tiny_model_dir, tmp_path):
    from sectune.evaluate.targets import check_adapter_changes_logits, load_target

    folder = _lora_folder(tiny_model_dir, tmp_path / "adapter", trained=False)
    model, tokenizer = load_target(folder)
    with pytest.raises(UserError, match="untrained"):
        check_adapter_changes_logits(model, tokenizer, folder)


def test_base_plus_trained_adapter_in_one_command(tiny_model_dir, tiny_dataset, tmp_path):
    run = _train_run(tiny_model_dir, tmp_path / "run", trained=True)
    cfg = load_config(None, FAST)
    out = evaluate(cfg, [str(tiny_model_dir), str(run)], tmp_path / "eval", dataset=tiny_dataset)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["order"] == [tiny_model_dir.name, "run"]
    base, tuned = (summary["targets"][label] for label in summary["order"])
    assert base["adapter_logit_change"] == 0.0 and tuned["adapter_logit_change"] > 1e-3
    assert base["generation"]["perplexity"]["value"] != tuned["generation"]["perplexity"]["value"]
    assert base["mcq"]["cyber-mini"]["questions"] == 4
    assert (out / "predictions").is_dir() and len(list((out / "predictions").glob("*.jsonl"))) == 2
    assert (out / "config.yaml").is_file() and (out / "versions.json").is_file()


def _numbers(summary):
    """Every number of a summary except timings."""
    text = json.dumps(summary["targets"], sort_keys=True)
    return re.sub(r'"(seconds|questions_per_s)": [0-9.e-]+', "", text)


def test_rerun_with_the_same_seed_gives_the_same_numbers(tiny_model_dir, tiny_dataset, tmp_path):
    cfg = load_config(None, [*FAST, "eval.mcq_scoring=[letter,option,generate]", "eval.rotations=true"])
    first = evaluate(cfg, str(tiny_model_dir), tmp_path / "a", dataset=tiny_dataset)
    second = evaluate(cfg, str(tiny_model_dir), tmp_path / "b", dataset=tiny_dataset)
    a = json.loads((first / "summary.json").read_text())
    b = json.loads((second / "summary.json").read_text())
    assert _numbers(a) == _numbers(b)
    methods = a["targets"][tiny_model_dir.name]["mcq"]["cyber-mini"]["methods"]
    assert {"letter", "option", "generate", "letter_rotated", "option_rotated"} <= set(methods)
    assert 0.0 <= methods["generate"]["invalid_rate"] <= 1.0


def test_endpoint_target_scores_generations_through_the_provider(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    answers = {
        json.loads(line)["messages"][0]["content"]: json.loads(line)["messages"][1]["content"]
        for line in (tiny_dataset / "test.jsonl").read_text().splitlines()
    }
    with FakeOpenAI(responder=lambda body: answers[body["messages"][-1]["content"]]) as fake:
        cfg = load_config(None, [*FAST, "eval.endpoint_model=fake"])
        out = evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=tiny_dataset)
    result = next(iter(json.loads((out / "summary.json").read_text())["targets"].values()))
    assert result["kind"] == "endpoint"
    assert result["generation"]["rouge_l"]["value"] == pytest.approx(1.0)  # the server answered the references
    assert result["generation"]["bleu"]["value"] == pytest.approx(100.0)


def test_endpoint_without_model_name_is_a_user_error(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match=r"eval\.endpoint_model"):
        evaluate(load_config(None, FAST), "http://127.0.0.1:9/v1", tmp_path / "e", dataset=tiny_dataset)


def test_cli_eval_writes_a_summary_and_bad_benchmark_exits_2(tiny_model_dir, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli-eval"
    sets = [arg for s in FAST for arg in ("--set", s)]
    result = runner.invoke(app, ["eval", str(tiny_model_dir), "--out", str(out), *sets])
    assert result.exit_code == 0, result.output
    assert "cyber-mini/letter acc" in result.output and (out / "summary.json").is_file()

    import subprocess
    import sys

    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sectune",
            "eval",
            str(tiny_model_dir),
            "--out",
            str(tmp_path / "x"),
            "--set",
            "eval.benchmarks=[missing.json]",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2 and "missing.json" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_judge_runs_inside_eval_absolute_and_pairwise(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))

    def responder(body):
        if body["model"] == "judge":
            text = body["messages"][-1]["content"]
            return '{"winner": "tie"}' if "ANSWER A:" in text else '{"score": 4, "reason": "ok"}'
        return "A firewall filters network traffic."

    with FakeOpenAI(responder=responder) as fake:
        sets = [
            *FAST,
            "eval.endpoint_model=served",
            "eval.judge.enabled=true",
            "eval.judge.pairwise=true",
            f"eval.judge.base_url={fake.base_url}",
            "eval.judge.model=judge",
        ]
        out = evaluate(load_config(None, sets), [fake.base_url, fake.base_url], tmp_path / "e", dataset=tiny_dataset)
    summary = json.loads((out / "summary.json").read_text())
    first, second = summary["order"]
    assert summary["targets"][first]["judge_absolute"]["mean_score"] == 4.0
    assert summary["targets"][first]["judge_absolute"]["parsed"] == 4
    pairwise = summary["targets"][second][f"judge_pairwise_vs_{first}"]
    assert pairwise["ties"] == 4 and pairwise["agreement"] == 1.0 and pairwise["parse_failures"] == 0


def test_failed_endpoint_requests_are_excluded_and_counted(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")

    def responder(body):
        if "phishing" in body["messages"][-1]["content"]:
            raise RuntimeError("this prompt always fails")  # the fake server answers 500
        return "A firewall filters network traffic according to rules."

    with FakeOpenAI(responder=responder) as fake:
        cfg = load_config(None, [*FAST, "eval.endpoint_model=served", "eval.endpoint_max_retries=1"])
        out = evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=tiny_dataset)
        asked = [body["messages"][-1]["content"] for body in fake.requests]
    generation = next(iter(json.loads((out / "summary.json").read_text())["targets"].values()))["generation"]
    assert generation["failed_requests"] == 1 and generation["examples"] == 3
    assert sum("phishing" in text for text in asked) == 2  # retried once (endpoint_max_retries), then excluded


def test_endpoint_requests_are_retried_and_bounded_by_the_config(tiny_dataset, tmp_path, monkeypatch):
    """Endpoint evaluation goes through sectune's request layer: transient errors are retried, as in generate."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    failed = set()

    def flaky(body):
        prompt = body["messages"][-1]["content"]
        if prompt not in failed:  # every prompt fails once (a 500), then answers
            failed.add(prompt)
            raise RuntimeError("overloaded")
        return "A firewall filters network traffic according to rules."

    with FakeOpenAI(responder=flaky, latency=0.05) as fake:
        cfg = load_config(None, [*FAST, "eval.endpoint_model=served", "eval.endpoint_max_in_flight=2"])
        out = evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=tiny_dataset)
    generation = next(iter(json.loads((out / "summary.json").read_text())["targets"].values()))["generation"]
    assert generation["failed_requests"] == 0 and generation["examples"] == len(failed) == 4
    assert len(fake.requests) == 8 and fake.max_in_flight <= 2


def test_a_mistyped_later_target_fails_before_the_first_is_loaded(tmp_path, monkeypatch):
    import sectune.evaluate.targets as targets
    from sectune.config import load_config
    from sectune.errors import UserError
    from sectune.evaluate.api import evaluate

    def no_loading(*args, **kwargs):
        raise AssertionError("a model was loaded before every target was checked")

    monkeypatch.setattr(targets, "load_target", no_loading)
    (tmp_path / "runs" / "lora").mkdir(parents=True)
    with pytest.raises(UserError, match=r"target: model folder '.*runs/lroa' not found.*runs/lora"):
        evaluate(load_config(), ["smollm2-135m", str(tmp_path / "runs" / "lroa")], tmp_path / "eval")
    assert not (tmp_path / "eval").exists()
