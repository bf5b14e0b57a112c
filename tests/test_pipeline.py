"""The whole pipeline through `sectune demo`'s code path: a fake LLM server writes the samples, a tiny
model is trained and evaluated, and the report's numbers are the ones in report.json."""

import json
import random

import pytest

from sectune.demo import demo_config, run_demo
from sectune.errors import UserError

VOCABULARY = (
    "firewall router password phishing backup cloud encryption policy network server account token "
    "storage access audit patch malware incident recovery identity certificate gateway session"
)
WORDS = VOCABULARY.split()


def qa_responder(body):
    """Distinct JSON Q&A per request, built from the request's own text so it is deterministic."""
    prompt = json.dumps(body["messages"])
    rng = random.Random(prompt)
    if "distinct" in prompt.lower() and "subtopic" in prompt.lower():
        return json.dumps([f"{rng.choice(WORDS)} topic {i}" for i in range(3)])
    question = "How do I secure the " + " ".join(rng.sample(WORDS, 6)) + "?"
    answer = "You should review the " + " ".join(rng.sample(WORDS, 12)) + " and document each step."
    return json.dumps({"question": question, "answer": answer})


def test_demo_config_layers_user_yaml_and_overrides(tmp_path):
    user = tmp_path / "mine.yaml"
    user.write_text("train:\n  max_steps: 3\n")
    cfg = demo_config(user, ["eval.max_examples=2"])
    assert cfg.train.max_steps == 3
    assert cfg.eval.max_examples == 2
    assert cfg.train.method == "lora"  # from the packaged demo experiment
    assert cfg.study.variants == ["base", "lora"]
    user.write_text("train:\n  max_step: 3\n")
    with pytest.raises(UserError, match=r"train\.max_steps"):
        demo_config(user)


def test_pipeline_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, monkeypatch):
    from sectune.testing.fake_openai import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    with FakeOpenAI(responder=qa_responder) as fake:
        cfg = demo_config(
            None,
            [
                f"model={tiny_model_dir}",
                "generate.provider=openai",
                "generate.model=fake-model",
                f"generate.base_url={fake.base_url}",
                "generate.num_samples=30",
                "generate.topics.degree=3",
                "train.max_steps=4",
                "train.stop_check.max_new_tokens=8",
                "eval.max_examples=4",
                "eval.max_new_tokens=8",
                "eval.metrics=[rouge_l, chrf, bleu, perplexity, length]",
            ],
        )
        report = run_demo(cfg, tmp_path / "demo", say=lambda msg: None)

    samples = (tmp_path / "demo" / "generate" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 30
    dataset_summary = json.loads((tmp_path / "demo" / "dataset" / "summary.json").read_text())
    assert sum(dataset_summary["counts"].values()) <= 30
    [run_summary] = [json.loads(p.read_text()) for p in (tmp_path / "demo" / "study" / "runs").glob("*/summary.json")]
    assert run_summary["data_checks"]["collator"]["ok"] and run_summary["data_checks"]["end_of_turn"]["ok"]
    data = json.loads((report / "report.json").read_text())
    text = json.dumps(data)
    assert "lora" in text and "base" in text
    assert (report / "report.md").is_file() and (report / "report.html").is_file()
    assert any(p.stat().st_size > 0 for p in report.glob("*.png"))
    # no secret ever lands in an output folder
    for path in (tmp_path / "demo").rglob("*"):
        if path.is_file() and path.suffix in {".json", ".jsonl", ".yaml", ".md", ".html", ".txt"}:
            assert "sk-test-not-a-real-key" not in path.read_text(errors="ignore")
