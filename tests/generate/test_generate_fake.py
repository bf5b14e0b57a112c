"""The whole generate stage against the fake OpenAI-compatible server."""

from __future__ import annotations

import json

from generate_helpers import make_config, parse_request, sample_responder

from sectune.generate.api import generate, topics
from sectune.generate.topics import load_topics
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def rows_of(folder):
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines()]


def assert_counts_add_up(summary):
    total = summary["accepted"] + sum(summary["rejected"].values()) + sum(summary["failed"].values())
    assert summary["slots"] == total
    assert summary["counts_add_up"] is True


def test_tree_3x2_and_50_unique_samples(tmp_path):
    with FakeOpenAI(responder=sample_responder, latency=0.005) as fake:
        cfg = make_config(fake.base_url, num_samples=50, topics={"root": "Security", "degree": 3, "depth": 2})
        run = generate(cfg, tmp_path / "run")
    topic_paths = [t.path for t in load_topics(run / "topics.jsonl")]
    assert len(topic_paths) == 9 and all(len(p) == 3 and p[0] == "Security" for p in topic_paths)
    assert len({tuple(p) for p in topic_paths}) == 9
    rows = rows_of(run)
    assert len(rows) == 50
    questions = [r["messages"][1]["content"] for r in rows]
    assert len(set(questions)) == 50
    assert all([m["role"] for m in r["messages"]] == ["system", "user", "assistant"] for r in rows)
    summary = read_json(run / "summary.json")
    assert summary["status"] == "complete" and summary["requested"] == 50 and summary["accepted"] == 50
    assert_counts_add_up(summary)
    # 1 + 3 topic requests, then exactly one request per sample: nothing rejected here
    assert len(fake.requests) == 4 + 50
    assert not (run / "INCOMPLETE").exists()
    per_topic = {}
    for row in rows:
        per_topic[row["meta"]["topic"]] = per_topic.get(row["meta"]["topic"], 0) + 1
    assert sorted(per_topic.values()) == [5, 5, 5, 5, 6, 6, 6, 6, 6]


def test_topics_command_writes_a_tree_and_graph_has_no_duplicate_nodes(tmp_path):
    def overlapping(body):
        text = body["messages"][-1]["content"]
        path = text.splitlines()[0].removeprefix("Topic path: ").split(" > ")
        if len(path) == 1:
            return json.dumps(["Network", "Cloud", "Identity"])
        # every child lists "Shared logging": one node with three parents in a graph, three in a tree
        return json.dumps([f"{path[-1]} basics", "Shared logging", f"{path[-1]} tools"])

    with FakeOpenAI(responder=overlapping) as fake:
        cfg = make_config(fake.base_url, topics={"root": "IT", "degree": 3, "depth": 2, "mode": "graph"})
        graph_file = topics(cfg, tmp_path / "graph.jsonl")
        tree_cfg = make_config(fake.base_url, topics={"root": "IT", "degree": 3, "depth": 2})
        tree_file = topics(tree_cfg, tmp_path / "tree.jsonl")
    nodes = [json.loads(line) for line in graph_file.read_text().splitlines()]
    names = [n["topic"] for n in nodes]
    assert len(names) == len(set(names)) == 1 + 3 + 6 + 1
    shared = next(n for n in nodes if n["topic"] == "Shared logging")
    assert len(shared["parents"]) == 3
    assert len(load_topics(graph_file)) == 7  # leaves: 6 basics/tools + the shared one
    tree_paths = [json.loads(line)["path"] for line in tree_file.read_text().splitlines()]
    assert len(tree_paths) == 9 and sum(p[-1] == "Shared logging" for p in tree_paths) == 3


def test_faults_30_percent_still_complete_every_sample(tmp_path):
    with FakeOpenAI(responder=sample_responder, fault_rate=0.3, seed=7, timeout_sleep=1.0, retry_after=0.01) as fake:
        cfg = make_config(fake.base_url, num_samples=30, max_in_flight=16, topics={"root": "Cloud", "depth": 1})
        run = generate(cfg, tmp_path / "run")
    summary = read_json(run / "summary.json")
    assert summary["status"] == "complete" and summary["accepted"] == 30
    assert len({r["messages"][1]["content"] for r in rows_of(run)}) == 30
    errors = summary["errors_this_session"]
    assert errors.get("rate_limit", 0) > 0 and errors.get("server_error", 0) > 0 and errors.get("timeout", 0) > 0
    assert sum(fake.faults_sent.values()) == sum(errors.values())
    assert_counts_add_up(summary)


def test_malformed_json_never_reaches_the_dataset_and_is_counted(tmp_path):
    def sometimes_broken(body):
        _, variation = parse_request(body)
        if variation % 3 == 0:
            return '{"question": "broken, "answer": '  # cannot be repaired
        if variation % 3 == 1:  # repairable: prose and a code fence around valid JSON
            return "Sure! Here it is:\n```json\n" + sample_responder(body) + "\n```"
        return sample_responder(body)

    with FakeOpenAI(responder=sometimes_broken) as fake:
        cfg = make_config(fake.base_url, num_samples=12, topics={"file": None, "root": "Email", "depth": 0})
        run = generate(cfg, tmp_path / "run")
    rows = rows_of(run)
    summary = read_json(run / "summary.json")
    assert len(rows) == 12 and summary["rejected"]["malformed"] > 0
    assert all("broken" not in m["content"] for r in rows for m in r["messages"])
    assert sum(1 for r in rows if r["meta"].get("repaired_json")) > 0
    assert_counts_add_up(summary)


def test_multi_turn_samples_keep_every_turn_and_a_short_conversation_is_malformed(tmp_path):
    import re

    from generate_helpers import distinct_words

    def conversation(body):
        text = body["messages"][-1]["content"]
        topic, variation = parse_request(body)
        asked = int(re.search(r"exactly (\d+) turns", text).group(1))
        turns = [
            {
                "question": f"How do I handle {distinct_words(f'q{topic}{variation}{i}', 8)}?",
                "answer": f"For {topic}: {distinct_words(f'a{topic}{variation}{i}', 30)}.",
            }
            for i in range(asked)
        ]
        return json.dumps({"turns": turns[:-1] if variation % 3 == 0 else turns})  # every third is a turn short

    with FakeOpenAI(responder=conversation) as fake:
        cfg = make_config(fake.base_url, num_samples=8, turns=3, formats=["jsonl", "sharegpt"],
                          topics={"file": None, "root": "Email", "depth": 0})  # fmt: skip
        run = generate(cfg, tmp_path / "run")
    rows = rows_of(run)
    roles = ["system"] + ["user", "assistant"] * 3
    assert len(rows) == 8 and all([m["role"] for m in r["messages"]] == roles for r in rows)
    assert all(len({m["content"] for m in r["messages"][1:]}) == 6 for r in rows)  # three distinct turns each
    summary = read_json(run / "summary.json")
    assert summary["rejected"]["malformed"] > 0
    assert_counts_add_up(summary)
    sharegpt = json.loads((run / "sharegpt.json").read_text())
    assert all(len(c["conversations"]) == 7 for c in sharegpt)


def test_multi_turn_needs_json_answers_and_is_refused_before_anything_is_written(tmp_path):
    import subprocess
    import sys

    import pytest

    from sectune.errors import UserError

    cfg = make_config("http://127.0.0.1:9", turns=2, output="text", topics={"file": None, "root": "x", "depth": 0})
    with pytest.raises(UserError, match=r"generate\.turns"):
        generate(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()
    command = [sys.executable, "-m", "sectune", "generate", "--out", str(tmp_path / "cli"), "--set", "generate.turns=2"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)  # local provider: no JSON
    assert result.returncode == 2 and "generate.turns" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "cli").exists()
