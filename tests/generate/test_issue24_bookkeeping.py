"""Issue 24, point 8: failed slots are not marked cached; a killed session's errors survive into the summary.

A session killed before its end writes no summary.json, so the errors it met (retried ones included) are kept
line by line in requests.jsonl, which a resume reads: the last summary counts every session's errors once.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generate_helpers import Killed, crash_after, make_config, sample_responder

from sectune.generate.api import generate
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def request_lines(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "requests.jsonl").read_text().splitlines() if line.strip()]


def test_failed_slots_are_not_written_as_cached(tmp_path):
    with FakeOpenAI(responder=sample_responder, fault_rate=1.0, faults=("500",)) as fake:
        cfg = make_config(fake.base_url, num_samples=2, max_retries=0, max_requests_factor=1.0, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
    lines = request_lines(run)
    assert [line["status"] for line in lines] == ["failed", "failed"]
    assert [line["cached"] for line in lines] == [False, False]  # nothing came from the cache


def test_errors_of_killed_sessions_are_counted_once_in_the_final_summary(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(responder=sample_responder, fault_rate=0.4, faults=("500",), seed=3) as fake:
        # one request at a time: a kill between two slots leaves no error of a slot still in flight
        cfg = make_config(fake.base_url, num_samples=12, max_in_flight=1, topics={"depth": 0})
        for _ in range(2):  # two sessions killed before their end: neither writes a summary
            with pytest.raises(Killed):
                generate(cfg, out, resume=out.exists(), on_progress=crash_after(3))
            assert not (out / "summary.json").exists()
        killed = fake.faults_sent["500"]
        generate(cfg, out, resume=True)
    summary = read_json(out / "summary.json")
    assert killed > 0 and fake.faults_sent["500"] > killed  # every session met errors
    assert summary["status"] == "complete" and summary["accepted"] == 12
    assert summary["errors"] == {"server_error": fake.faults_sent["500"]}  # all sessions, none twice
    assert summary["errors_this_session"] == {"server_error": fake.faults_sent["500"] - killed}
