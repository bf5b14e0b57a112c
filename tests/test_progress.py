"""Progress lines: the tracker's pace and shape, and every long stage reporting to a log file (not a terminal)."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sectune.progress import Tracker, progress_mode, track

LINE = re.compile(r"^(?P<label>[\w .:/-]+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+) \((?P<pct>\d+)%\)")


def _lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_plain_lines_every_five_percent_and_a_final_line():
    stream = io.StringIO()
    with track("prep", 100, unit="rows", stream=stream, mode="plain", interval_s=60) as tracker:
        for _ in range(100):
            tracker._last_line -= 2  # as if two seconds passed between rows: only the 5 % rule decides
            tracker.advance()
    lines = _lines(stream)
    counts = [int(LINE.match(line)["done"]) for line in lines[:-1]]
    assert counts == list(range(5, 101, 5))  # one line per 5 %, no more
    assert lines[-1].startswith("prep: 100/100 rows (100%) done in")


def test_fast_steps_write_a_few_lines_not_one_per_step():
    stream = io.StringIO()
    with track("prep", 100, unit="rows", stream=stream, mode="plain", interval_s=60) as tracker:
        for _ in range(100):
            tracker.advance()  # all within a second
    assert len(_lines(stream)) == 1  # just the final line


def test_heartbeat_keeps_a_log_alive_while_nothing_is_counted():
    stream = io.StringIO()
    with track("loading", stream=stream, mode="plain", interval_s=0.05):
        time.sleep(0.6)
    beats = [line for line in _lines(stream) if line.startswith("loading: working")]
    assert len(beats) >= 3 and "elapsed" in beats[0]


def test_only_the_innermost_open_tracker_beats():
    stream = io.StringIO()
    with track("outer", 2, unit="targets", stream=stream, mode="plain", interval_s=0.05):
        with track("inner", 10, unit="answers", stream=stream, mode="plain", interval_s=0.05):
            time.sleep(0.5)
        inner_done = len(_lines(stream))
        time.sleep(0.3)
    lines = _lines(stream)
    assert not any(line.startswith("outer:") for line in lines[:inner_done])
    assert any(line.startswith("outer: 0/2") for line in lines[inner_done:])


def test_a_resumed_count_says_where_it_resumed_and_rates_only_new_work():
    stream = io.StringIO()
    tracker = Tracker("generate", 100, unit="samples", start=40, stream=stream, mode="plain", interval_s=60).open()
    tracker._rate_since -= 10  # ten seconds of this session
    tracker.update(50)
    assert _lines(stream)[0] == "generate: resuming at 40/100 samples (40%)"
    assert "· 1/s" in tracker.status_line()  # 10 new samples in 10 s, not 50
    tracker.close()


def test_off_mode_writes_no_progress_but_keeps_messages():
    stream = io.StringIO()
    with track("train", 10, stream=stream, mode="off", interval_s=0.05) as tracker:
        tracker.update(10)
        time.sleep(0.2)
        tracker.write("step 10/10 · loss 1.2")
    assert _lines(stream) == ["step 10/10 · loss 1.2"]


def test_a_failed_step_writes_no_done_line():
    stream = io.StringIO()
    with pytest.raises(RuntimeError), track("prep", 6, stream=stream, mode="plain", interval_s=60):
        raise RuntimeError("bad input")
    assert "done" not in stream.getvalue()


def test_bar_on_a_terminal_and_nested_bars_share_one_display():
    stream = io.StringIO()
    with track("eval", 2, unit="targets", stream=stream, mode="bar") as outer:
        with track("answers", 4, unit="answers", stream=stream, mode="bar") as inner:
            inner.advance(4)
        outer.advance(2)
    text = stream.getvalue()
    assert "eval" in text and "answers" in text and "4/4" in text


def test_mode_follows_the_stream_and_the_environment(monkeypatch):
    monkeypatch.delenv("SECTUNE_PROGRESS", raising=False)
    monkeypatch.delenv("RANK", raising=False)
    assert progress_mode(io.StringIO()) == "plain"
    monkeypatch.setenv("SECTUNE_PROGRESS", "off")
    assert progress_mode(io.StringIO()) == "off"
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("SECTUNE_PROGRESS", "plain")
    assert progress_mode(io.StringIO()) == "off"  # only the main process of a multi-process run reports


# ---------------------------------------------------------------- every long stage, stderr to a file


def _sectune(args: list[str], log: Path, **env: str) -> str:
    environment = {**os.environ, "SECTUNE_PROGRESS_INTERVAL": "0.2", "OMP_NUM_THREADS": "1", **env}
    environment.pop("SECTUNE_PROGRESS", None)
    with log.open("w") as handle:
        done = subprocess.run(
            [sys.executable, "-m", "sectune", *args], stdout=subprocess.DEVNULL, stderr=handle, env=environment,
            timeout=600, check=False,
        )  # fmt: skip
    text = log.read_text()
    assert done.returncode == 0, text[-3000:]
    assert "\r" not in text  # no third-party carriage-return bars in a log
    return text


def _progress(text: str, label: str) -> list[re.Match]:
    return [m for m in map(LINE.match, text.splitlines()) if m and m["label"] == label]


def test_every_long_stage_writes_progress_lines_to_a_log_file(tiny_model_dir, tmp_path):
    from sectune.testing.fake_openai import FakeOpenAI

    answers = iter(range(10**6))

    def responder(body: dict) -> str:
        n = next(answers)
        words = " ".join(f"w{n}x{i}" for i in range(12))
        return json.dumps({"question": f"Question {n}: {words}?", "answer": f"Answer {n}: {words} {words}."})

    common = [f"model={tiny_model_dir}", "seed=3"]
    generate_sets = [
        "generate.provider=openai", "generate.model=fake-model", "generate.num_samples=40",
        "generate.max_in_flight=2", "generate.ramp_up_s=0", "generate.formats=[jsonl]",
        "generate.topics.file=null", "generate.topics.root=security", "generate.topics.depth=0",
    ]  # fmt: skip
    with FakeOpenAI(responder=responder, latency=0.05) as fake:
        text = _sectune(
            ["generate", "--out", str(tmp_path / "gen"), *_sets(common + generate_sets)],
            tmp_path / "generate.log",
            OPENAI_BASE_URL=fake.base_url,
            OPENAI_API_KEY="test-key",
        )
    lines = _progress(text, "generate")
    assert len(lines) >= 3 and lines[-1]["total"] == "40" and int(lines[0]["done"]) < 40

    text = _sectune(
        ["prep", str(tmp_path / "gen" / "samples.jsonl"), "--out", str(tmp_path / "data"), *_sets(common)],
        tmp_path / "prep.log",
        SECTUNE_PROGRESS_INTERVAL="0.01",
    )
    from sectune.data.api import PREP_STEPS

    assert [m["done"] for m in _progress(text, "prep")][-1] == str(len(PREP_STEPS))
    assert len(_progress(text, "prep")) >= 3

    train_sets = ["train.max_steps=8", "train.batch_size=2", "train.grad_accum=1", "train.precision=fp32",
                  "train.logging_steps=2", "train.stop_check.enabled=false"]  # fmt: skip
    text = _sectune(
        ["train", str(tmp_path / "data"), "--out", str(tmp_path / "run"), *_sets(common + train_sets)],
        tmp_path / "train.log",
    )
    steps = [int(m["done"]) for m in _progress(text, "train")]
    assert steps[-1] == 8 and len(steps) >= 3 and re.search(r"^step 2/8 · loss", text, re.MULTILINE)

    eval_sets = ["eval.max_examples=4", "eval.max_new_tokens=4", "eval.batch_size=1", "eval.metrics=[rouge_l]"]
    text = _sectune(
        ["eval", str(tmp_path / "run"), "--dataset", str(tmp_path / "data"), "--out", str(tmp_path / "eval"),
         *_sets(common + eval_sets)],
        tmp_path / "eval.log",
    )  # fmt: skip
    assert _progress(text, "eval")[-1]["done"] == "1"
    answers_lines = _progress(text, "eval run: held-out answers")
    assert answers_lines and answers_lines[-1]["done"] == answers_lines[-1]["total"]


def _sets(items: list[str]) -> list[str]:
    return [part for item in items for part in ("--set", item)]
