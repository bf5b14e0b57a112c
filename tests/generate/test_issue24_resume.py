"""Issue 24, point 6: samples accepted after a ``--resume`` keep their ``meta.topic_id``.

A run's topics.jsonl is what a resume reads its topics from: every id a first session tagged samples with must
be in it, and read back.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import openpyxl
import pytest
from generate_helpers import Killed, crash_after, make_config, sample_responder

from sectune.generate.api import generate
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI

SHEET = [["Id", "Domain Topic", "Samples Count", "Domain Type"], [7, "Firewalls", 12, "Sec"], ["b2", "VPN", 12, "IT"]]


def rows_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]


def write_sheet(path: Path) -> Path:
    workbook = openpyxl.Workbook()
    for row in SHEET:
        workbook.active.append(row)
    workbook.save(path)
    return path


def kill_after(proc: subprocess.Popen, samples: Path, count: int) -> None:
    """SIGKILL ``proc`` once ``samples`` holds ``count`` lines (a killed session: no summary, no cleanup)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if samples.is_file() and samples.read_text().count("\n") >= count:
            break
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def cli_args(out: Path, sheet: Path, settings: dict) -> list[str]:
    args = [sys.executable, "-m", "sectune", "generate", "--out", str(out), "--topics", str(sheet), "--no-progress"]
    return args + [arg for key, value in settings.items() for arg in ("--set", f"generate.{key}={json.dumps(value)}")]


def test_a_killed_sheet_run_resumes_with_every_topic_id(tmp_path):
    sheet, out = write_sheet(tmp_path / "topics.xlsx"), tmp_path / "run"
    limits = {"num_samples": 5, "max_in_flight": 2, "timeout_s": 2}
    with FakeOpenAI(responder=sample_responder, latency=0.05) as fake:
        cfg = make_config(fake.base_url, **limits)
        settings = {
            **limits,
            "provider": "openai",
            "model": "fake-model",
            "base_url": fake.base_url,
            "formats": ["jsonl"],
        }
        env = {**os.environ, "OPENAI_API_KEY": "sk-test"}
        proc = subprocess.Popen(cli_args(out, sheet, settings), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        kill_after(proc, out / "samples.jsonl", 4)
        before = len(rows_of(out))
        assert 4 <= before < 24 and not (out / "summary.json").exists()
        os.environ["OPENAI_API_KEY"] = "sk-test"
        try:
            generate(cfg, out, resume=True, topics_file=sheet)
        finally:
            del os.environ["OPENAI_API_KEY"]
    rows = rows_of(out)
    assert len(rows) == 24 and read_json(out / "summary.json")["status"] == "complete"
    ids = {row["meta"]["topic"]: row["meta"].get("topic_id") for row in rows[before:]}
    assert ids == {"Firewalls": "7", "VPN": "b2"}  # the resumed session's samples, from the run's topics.jsonl
    assert all(row["meta"]["topic_id"] == ids[row["meta"]["topic"]] for row in rows)


def test_a_graph_run_keeps_its_leaf_ids_across_a_resume(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(responder=sample_responder) as fake:
        graph = {"root": "IT", "degree": 3, "depth": 1, "mode": "graph"}
        cfg = make_config(fake.base_url, num_samples=12, max_in_flight=1, topics=graph)
        with pytest.raises(Killed):
            generate(cfg, out, on_progress=crash_after(4))
        before = len(rows_of(out))
        generate(cfg, out, resume=True)
    rows = rows_of(out)
    assert before == 4 and len(rows) == 12
    ids_by_topic = defaultdict(set)
    for row in rows:
        ids_by_topic[row["meta"]["topic"]].add(row["meta"].get("topic_id"))
    # one id per leaf, the same in both sessions: the graph's node numbers (0 is the root)
    assert dict(ids_by_topic) == {"IT > IT sub0": {"1"}, "IT > IT sub1": {"2"}, "IT > IT sub2": {"3"}}
