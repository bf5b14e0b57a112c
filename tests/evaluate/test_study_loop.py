"""Issue 23: `study.loop: 1` runs train → evaluate → generate for the weak topics → train again → evaluate once,
and the report shows the per-topic before/after, paired on the same test rows."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest

from sectune.config import load_config
from sectune.testing.fake_openai import FakeOpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generate"))
from generate_helpers import parse_request, sample_responder

ANSWERS = {
    "Security > Phishing": "Phishing emails pretend to come from a trusted sender to steal passwords.",
    "Support > Passwords": "Zebras quantum marmalade telescope orchid.",
}
QUESTIONS = {  # topic → test questions
    "Security > Phishing": ["What is phishing?", "How do I spot a phishing email?"],
    "Support > Passwords": ["How do I reset my password?", "Where is the password reset page?"],
}


def _rows() -> str:
    lines = []
    for topic, questions in QUESTIONS.items():
        for question in questions:
            answer = ANSWERS[topic]
            meta = {"topic": topic, "topic_path": topic.split(" > "), "domain_type": topic.split(" > ")[0]}
            messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            lines.append(json.dumps({"messages": messages, "meta": meta}) + "\n")
    return "".join(lines)


def _config(model_dir: Path, base_url: str):
    generate = {"provider": "openai", "model": "fake-model", "base_url": base_url, "num_samples": 6,
                "max_in_flight": 4, "timeout_s": 5, "formats": ["jsonl"]}  # fmt: skip
    return load_config(
        None,
        [f"model={model_dir}", "study.variants=[base, lora]", "train.max_steps=2", "train.batch_size=2",
         "train.grad_accum=1", "train.stop_check.enabled=false", "eval.max_new_tokens=8", "eval.metrics=[embedding]",
         "eval.bootstrap_samples=100", "eval.benchmarks=[cyber-mini]", "eval.mcq_scoring=[option]",
         "eval.max_questions=8", "prep.decontaminate=off", "study.loop=1", "generate.focus_plan.metric=embedding",
         *(f"generate.{key}={json.dumps(value)}" for key, value in generate.items())],
    )  # fmt: skip


def test_one_loop_generates_for_the_weak_topic_and_reports_before_and_after(tiny_model_dir, tmp_path, monkeypatch):
    from sectune.study.api import study

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "train.jsonl").write_text(_rows() * 3)
    (dataset / "validation.jsonl").write_text(_rows())
    (dataset / "test.jsonl").write_text(_rows())
    out = tmp_path / "study"
    with FakeOpenAI(responder=sample_responder) as fake:
        cfg = _config(tiny_model_dir, fake.base_url)
        report_dir = study(cfg, dataset, out) / "report"
        asked = Counter(parse_request(body)[0] for body in fake.requests)

    report = json.loads((report_dir / "report.json").read_text())
    loop = report["loop"]
    assert loop["variant"].endswith("/lora")
    before_eval = json.loads((out / "evals" / "tiny-model0-lora" / "summary.json").read_text())
    groups = next(iter(before_eval["targets"].values()))["generation"]["breakdown"]["topic"]["embedding"]
    [weak, strong] = groups  # worst first; the tiny model's answers are closer to one topic's references
    assert weak["value"] < strong["value"]
    assert [t["topic"] for t in loop["focus"]["topics"]] == [weak["group"]]  # the weak one only, all 6 samples
    assert loop["focus"]["topics"][0]["samples"] == 6
    assert set(asked) - {""} == {weak["group"]}  # every sample request was about the weak topic
    loop_data = out / "loop" / "dataset"
    assert (loop_data / "test.jsonl").read_text() == (dataset / "test.jsonl").read_text()
    new_rows = (out / "loop" / "new-data" / "train.jsonl").read_text().splitlines()
    assert len(new_rows) == loop["new_train_rows"] > 0
    assert all(json.loads(row)["meta"]["topic"] == weak["group"] for row in new_rows)
    assert (loop_data / "train.jsonl").read_text().splitlines() == [*_rows().splitlines() * 3, *new_rows]

    held = loop["held_out"]
    assert [t["topic"] for t in held["topics"]] == [weak["group"], strong["group"]]
    after = _predictions(out / "loop" / "evals" / "tiny-model0-lora")
    for entry, group in zip(held["topics"], groups, strict=True):
        assert entry["before"] == pytest.approx(group["value"], abs=1e-5)
        scores = [p["scores"]["embedding"] for p in after if p["meta"]["topic"] == entry["topic"]]
        assert entry["after"] == pytest.approx(sum(scores) / len(scores), abs=1e-5)
        assert entry["n"] == 2
        assert (entry["verdict"] == "within noise") == (entry["ci_low"] <= 0 <= entry["ci_high"])
    assert held["overall"]["n"] == 4
    assert [m["benchmark"] for m in loop["mcq"]] == ["cyber-mini"] and loop["mcq"][0]["n"] == 8

    markdown = (report_dir / "report.md").read_text()
    heading = next(line for line in markdown.splitlines() if line.startswith("## Loop: ") and "held-out" in line)
    assert f"{weak['group']} +6" in heading
    table = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    assert "| all test rows | 4 |" in table and f"| {weak['group']} | 2 |" in table

    # run again: every loop step is reused (no new request, the same numbers)
    with FakeOpenAI(responder=sample_responder) as fake:
        cfg = cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"base_url": fake.base_url})})
        again = json.loads((study(cfg, dataset, out) / "report" / "report.json").read_text())
        assert fake.requests == []
    assert again["loop"] == loop


def _predictions(eval_dir: Path) -> list[dict]:
    [file] = (eval_dir / "predictions").glob("*.jsonl")
    return [json.loads(line) for line in file.read_text().splitlines()]


def test_loop_without_a_trained_variant_is_refused(tiny_model_dir, tmp_path):
    from sectune.errors import UserError
    from sectune.study.cells import StudyCell
    from sectune.study.loop import loop_cell

    cfg = load_config(None, [f"model={tiny_model_dir}", "study.variants=[base]", "study.loop=1"])
    base = StudyCell("m", "base", "m/base", train=None, eval={}, eval_dir=tmp_path)
    with pytest.raises(UserError, match=r"study\.loop needs a trained variant"):
        loop_cell(cfg, [base])
