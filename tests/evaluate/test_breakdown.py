"""Issue 23, "where it is weak": every metric broken down by topic, domain type and benchmark category."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sectune.api import evaluate
from sectune.config import load_config
from sectune.evaluate.breakdown import NO_GROUP, group_scores, meta_breakdown
from sectune.evaluate.mcq import load_benchmark, summarise
from sectune.testing.fake_openai import FakeOpenAI

FAST = ["eval.metrics=[rouge_l]", "eval.benchmarks=[]", "eval.bootstrap_samples=200"]

ROWS = [  # (topic path, domain type, question, reference)
    (["Security", "Phishing"], "Security", "What is phishing?", "Phishing emails trick users into giving passwords."),
    (["Security", "Phishing"], "Security", "How to spot phishing?", "Check the sender address and the link targets."),
    (["Security", "VPN"], "Network", "What does a VPN do?", "A VPN encrypts traffic between two endpoints."),
    (["Support", "Passwords"], "Support", "How do I reset my password?", "Open the account settings, choose reset."),
    (["Support", "Passwords"], "Support", "Where is the reset link?", "The reset link is on the sign-in page."),
]


def write_topic_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True)
    lines = []
    for path, domain, question, answer in ROWS:
        meta = {"topic": " > ".join(path), "topic_path": path, "domain_type": domain}
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        lines.append(json.dumps({"messages": messages, "meta": meta}) + "\n")
    (folder / "test.jsonl").write_text("".join(lines), encoding="utf-8")
    return folder


def test_groups_are_sorted_worst_first_with_counts_and_intervals():
    groups = group_scores(["a", "b", "a", None, "b", "b"], [1.0, 0.0, 0.5, 0.2, 0.5, 0.1], samples=200, seed=1)
    assert [g["group"] for g in groups] == ["b", NO_GROUP, "a"]  # means 0.2 (n=3), 0.2 (n=1), 0.75
    assert [g["n"] for g in groups] == [3, 1, 2]
    assert groups[2]["value"] == pytest.approx(0.75)
    assert all(g["ci_low"] <= g["value"] <= g["ci_high"] for g in groups)


def test_a_dimension_no_row_carries_is_left_out():
    found = meta_breakdown([{"topic": "x"}, {"topic": "y"}], {"rouge_l": [0.1, 0.9]}, samples=50)
    assert list(found) == ["topic"]
    assert [g["group"] for g in found["topic"]["rouge_l"]] == ["x", "y"]
    assert found["topic"]["rouge_l"][0]["path"] == ["x"]  # no topic_path: the joined name split back


def test_eval_breaks_held_out_scores_down_by_topic_and_domain(tmp_path, monkeypatch):
    """The fake endpoint answers Support questions with the reference and everything else with noise."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    dataset = write_topic_dataset(tmp_path / "dataset")
    answers = {question: answer for path, _, question, answer in ROWS if path[0] == "Support"}

    def responder(body):
        question = body["messages"][-1]["content"]
        if question == "What does a VPN do?":
            raise RuntimeError("always fails")  # a failed row: excluded from the scores, kept in predictions
        return answers.get(question, "zebra quantum marmalade")

    with FakeOpenAI(responder=responder) as fake:
        cfg = load_config(None, [*FAST, "eval.endpoint_model=fake", "eval.endpoint_max_retries=0"])
        out = evaluate(cfg, fake.base_url, tmp_path / "eval", dataset=dataset)
    generation = next(iter(json.loads((out / "summary.json").read_text())["targets"].values()))["generation"]
    by_topic = generation["breakdown"]["topic"]["rouge_l"]
    assert [g["group"] for g in by_topic] == ["Security > Phishing", "Support > Passwords"]  # VPN: its only row failed
    assert by_topic[0]["value"] == pytest.approx(0.0) and by_topic[0]["n"] == 2
    assert by_topic[1]["value"] == pytest.approx(1.0)
    assert by_topic[0]["path"] == ["Security", "Phishing"] and by_topic[0]["domain_type"] == "Security"
    by_domain = generation["breakdown"]["domain_type"]["rouge_l"]
    assert [g["group"] for g in by_domain] == ["Security", "Support"]
    predictions = [json.loads(line) for line in next((out / "predictions").glob("*.jsonl")).read_text().splitlines()]
    assert [p["meta"]["topic"] for p in predictions] == [" > ".join(path) for path, *_ in ROWS]
    assert predictions[2]["scores"] == {} and predictions[3]["scores"]["rouge_l"] == pytest.approx(1.0)
    assert (out / "weak_spots.png").stat().st_size > 1000


def test_benchmark_accuracy_by_category():
    bench = load_benchmark("cyber-mini")
    categories = [q.category for q in bench.questions]
    assert all(categories)
    predictions = [q.answers if i % 2 == 0 else frozenset({"Z"}) for i, q in enumerate(bench.questions)]
    result = summarise(bench.questions, predictions, samples=100, seed=0)
    by_category = result["by_category"]
    assert sum(g["n"] for g in by_category) == len(bench.questions)
    for group in by_category:
        hits = [result["correct"][i] for i, c in enumerate(categories) if c == group["group"]]
        assert group["value"] == pytest.approx(sum(hits) / len(hits))
    assert [g["value"] for g in by_category] == sorted(g["value"] for g in by_category)


def test_a_benchmark_without_categories_has_no_breakdown():
    bench = load_benchmark("ctibench-sample")
    result = summarise(bench.questions, [q.answers for q in bench.questions], samples=50, seed=0)
    assert "by_category" not in result


def test_seceval_topics_are_its_categories():
    bench = load_benchmark("seceval-sample")
    assert [q.category for q in bench.questions] == ["cryptography", "awareness", "network", "malware"]
