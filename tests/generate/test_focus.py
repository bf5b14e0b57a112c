"""Issue 23: `sectune generate --focus EVAL_DIR` writes the most new samples for the weakest topics, by the rule."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from generate_helpers import make_config, sample_responder

from sectune.config import load_config
from sectune.config.generate import FocusPlanConfig
from sectune.errors import UserError
from sectune.evaluate.api import evaluate
from sectune.generate.api import generate
from sectune.generate.focus import focus_plan
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI

REFERENCE = "rotate the key then revoke the old token and audit the access logs for misuse"
WORDS = REFERENCE.split()
# topic → how many words of the reference the fake model gets right (its per-topic quality)
RIGHT_WORDS = {"Keys": 16, "Logs": 12, "Mail": 6, "Cloud": 0}


def _topic_eval(tmp_path: Path) -> Path:
    """An evaluation of an endpoint whose answers are good on Keys, worse on Logs and Mail, useless on Cloud."""
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = []
    for topic in RIGHT_WORDS:
        for i in range(2):
            meta = {"topic": f"IT > {topic}", "topic_path": ["IT", topic], "domain_type": "Security"}
            question = {"role": "user", "content": f"{topic} question {i}?"}
            messages = [question, {"role": "assistant", "content": REFERENCE}]
            rows.append(json.dumps({"messages": messages, "meta": meta}) + "\n")
    (dataset / "test.jsonl").write_text("".join(rows))

    def answer(body):
        topic = body["messages"][-1]["content"].split()[0]
        right = RIGHT_WORDS[topic]
        return " ".join(WORDS[:right] + ["zebra"] * (len(WORDS) - right))

    cfg = load_config(None, ["eval.metrics=[rouge_l]", "eval.benchmarks=[]", "eval.endpoint_model=m",
                             "eval.bootstrap_samples=50"])  # fmt: skip
    with FakeOpenAI(responder=answer) as fake:
        return evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=dataset)


def _expected_counts(scores, total, *, floor=1, cap=None, max_topics=None) -> dict[str, int]:
    """The documented rule, written out again: shares ∝ gap to the best, largest remainder, floor, cap."""
    best = max(scores.values())
    weakest = sorted((score, topic) for topic, score in scores.items() if score < best)[:max_topics]
    gaps = {topic: best - score for score, topic in weakest}
    shares = {topic: total * gap / sum(gaps.values()) for topic, gap in gaps.items()}
    counts = {topic: int(share) for topic, share in shares.items()}
    for topic in sorted(shares, key=lambda t: counts[t] - shares[t])[: total - sum(counts.values())]:
        counts[topic] += 1
    return {topic: min(max(count, floor), cap or total) for topic, count in counts.items()}


@pytest.fixture
def topic_eval(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    return _topic_eval(tmp_path)


def test_focus_run_writes_the_most_samples_for_the_weakest_topics(topic_eval, tmp_path):
    summary = read_json(topic_eval / "summary.json")
    groups = next(iter(summary["targets"].values()))["generation"]["breakdown"]["topic"]["rouge_l"]
    scores = {g["group"]: g["value"] for g in groups}
    assert scores["IT > Keys"] > scores["IT > Logs"] > scores["IT > Mail"] > scores["IT > Cloud"]

    with FakeOpenAI(responder=sample_responder) as fake:
        cfg = make_config(fake.base_url, num_samples=24, focus=str(topic_eval))
        run = generate(cfg, tmp_path / "focused")
    written = Counter(json.loads(line)["meta"]["topic"] for line in (run / "samples.jsonl").read_text().splitlines())
    expected = _expected_counts(scores, 24)
    assert dict(written) == expected
    assert "IT > Keys" not in written  # the best topic gets nothing new
    assert max(written, key=written.__getitem__) == "IT > Cloud"  # the weakest gets the most
    plan = read_json(run / "focus.json")
    assert plan["eval_dir"] == str(topic_eval) and plan["target"] == next(iter(summary["targets"]))
    assert [t["topic"] for t in plan["topics"]] == ["IT > Cloud", "IT > Mail", "IT > Logs"]
    assert all(row["samples"] == expected[row["topic"]] for row in plan["topics"])


def test_floor_cap_and_max_topics_shape_the_plan(topic_eval):
    plan = focus_plan(topic_eval, 20, FocusPlanConfig(floor=5, cap=9, max_topics=2))
    scores = {t["topic"]: t["score"] for t in focus_plan(topic_eval, 20, FocusPlanConfig())["topics"]}
    scores["IT > Keys"] = plan["best"]
    expected = _expected_counts(scores, 20, floor=5, cap=9, max_topics=2)
    assert [t["topic"] for t in plan["topics"]] == ["IT > Cloud", "IT > Mail"]
    assert {t["topic"]: t["samples"] for t in plan["topics"]} == expected
    assert plan["topics"][0]["samples"] == 9  # the weakest topic's share (above 9) is capped
    low = focus_plan(topic_eval, 3, FocusPlanConfig(floor=2))
    assert all(t["samples"] >= 2 for t in low["topics"])


def test_an_evaluation_without_topics_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    dataset = tmp_path / "plain"
    dataset.mkdir()
    messages = [{"role": "user", "content": "q?"}, {"role": "assistant", "content": "an answer here"}]
    (dataset / "test.jsonl").write_text(json.dumps({"messages": messages, "meta": {}}) + "\n")
    cfg = load_config(None, ["eval.metrics=[rouge_l]", "eval.benchmarks=[]", "eval.endpoint_model=m"])
    with FakeOpenAI() as fake:
        eval_dir = evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=dataset)
    command = [sys.executable, "-m", "sectune", "generate", "--focus", str(eval_dir), "--out", str(tmp_path / "gen")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert "generate.focus" in line and "no per-topic scores" in line
    assert not (tmp_path / "gen").exists()
    with pytest.raises(UserError, match="not a finished evaluation"):
        focus_plan(tmp_path / "nowhere", 10, FocusPlanConfig())
    with pytest.raises(UserError, match="no target 'nope'"):
        focus_plan(eval_dir, 10, FocusPlanConfig(target="nope"))
