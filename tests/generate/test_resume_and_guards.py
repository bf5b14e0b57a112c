"""Crash resume (SIGKILL), budget stop, --retry-failed, finish_reason guards, cache reuse, key hygiene."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from generate_helpers import make_config, parse_request, sample_responder

from sectune.errors import UserError
from sectune.generate.api import generate
from sectune.llm import keys
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI, completion_dict

SECRET = "sk-test-SECRET-4242-never-log-me"


def sample_requests(fake) -> Counter:
    """How often each (topic, variation) sample prompt reached the server."""
    return Counter(parse_request(body) for body in fake.requests if parse_request(body)[1] >= 0)


def rows_of(folder):
    return [json.loads(line) for line in (folder / "samples.jsonl").read_text().splitlines() if line.strip()]


def all_output_bytes(folder) -> bytes:
    return b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file())


def test_sigkilled_run_resumes_to_exact_count_without_rerequesting_saved_samples(tmp_path):
    out = tmp_path / "run"
    with FakeOpenAI(responder=sample_responder, latency=0.1, require_key=SECRET) as fake:
        sets = {
            "provider": "openai",
            "model": "fake-model",
            "base_url": fake.base_url,
            "num_samples": 60,
            "max_in_flight": 4,
            "timeout_s": 2,
            "topics": {"root": "Security", "degree": 3, "depth": 1},
        }
        args = [sys.executable, "-m", "sectune", "generate", "--out", str(out), "--no-progress"]
        args += [arg for key, value in sets.items() for arg in ("--set", f"generate.{key}={json.dumps(value)}")]
        env = {**os.environ, "OPENAI_API_KEY": SECRET}
        proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        samples = out / "samples.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if samples.is_file() and samples.read_text().count("\n") >= 10:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        saved_before = {r["meta"]["slot"] for r in rows_of(out)}
        assert 10 <= len(saved_before) < 60
        assert (out / "INCOMPLETE").exists()
        requests_before = len(fake.requests)

        cfg = make_config(
            fake.base_url,
            num_samples=60,
            max_in_flight=4,
            timeout_s=2,
            topics={"root": "Security", "degree": 3, "depth": 1},
        )
        os.environ["OPENAI_API_KEY"] = SECRET
        try:
            generate(cfg, out, resume=True)
        finally:
            del os.environ["OPENAI_API_KEY"]

    rows = rows_of(out)
    assert len(rows) == 60
    assert len({r["messages"][1]["content"] for r in rows}) == 60
    assert len({r["meta"]["slot"] for r in rows}) == 60
    per_prompt = sample_requests(fake)
    assert max(per_prompt.values()) <= 2  # at most the few in flight at the kill were asked twice
    saved_keys = {key for key in per_prompt if f"{_topic_index(out, key[0])}:{key[1] - 1}" in saved_before}
    assert len(saved_keys) == len(saved_before)
    assert all(per_prompt[key] == 1 for key in saved_keys)  # nothing already saved was asked again
    assert len(fake.requests) - requests_before <= 60 - len(saved_before) + 4  # no topic re-requests either
    summary = read_json(out / "summary.json")
    assert summary["status"] == "complete" and summary["counts_add_up"]
    assert not (out / "INCOMPLETE").exists()
    assert SECRET.encode() not in all_output_bytes(out)


def _topic_index(out, topic_text: str) -> int:
    paths = [" > ".join(json.loads(line)["path"]) for line in (out / "topics.jsonl").read_text().splitlines()]
    return paths.index(topic_text)


def test_key_from_dotenv_is_used_and_never_written(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(keys, "_loaded", False)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    try:
        with FakeOpenAI(responder=sample_responder, require_key=SECRET) as fake:
            run = generate(
                make_config(
                    fake.base_url,
                    num_samples=3,
                    topics={"depth": 0},
                    formats=["jsonl", "csv", "xlsx", "parquet", "sharegpt", "alpaca"],
                ),
                tmp_path / "run",
            )
    finally:
        os.environ.pop("OPENAI_API_KEY", None)
    assert read_json(run / "summary.json")["accepted"] == 3
    assert fake.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert SECRET.encode() not in all_output_bytes(run)


def test_budget_cap_stops_cleanly_and_resume_finishes(tmp_path):
    with FakeOpenAI(responder=sample_responder) as fake:
        prices = {"fake-model": [1000.0, 1000.0]}  # ~0.1 USD per request: the budget binds quickly
        cfg = make_config(
            fake.base_url, num_samples=20, max_in_flight=2, budget_usd=0.5, prices=prices, topics={"depth": 0}
        )
        run = generate(cfg, tmp_path / "run")
        summary = read_json(run / "summary.json")
        assert summary["status"] == "stopped_budget"
        assert summary["cost_usd"] >= 0.5 and summary["accepted"] < 20
        assert (run / "INCOMPLETE").exists()
        assert isinstance(summary["cost_estimate_usd"], float) and summary["cost_estimate_usd"] > summary["cost_usd"]
        first = len(rows_of(run))
        generate(
            cfg.model_copy(update={"generate": cfg.generate.model_copy(update={"budget_usd": 100.0})}), run, resume=True
        )
    summary = read_json(run / "summary.json")
    assert summary["status"] == "complete" and len(rows_of(run)) == 20 > first
    assert max(sample_requests(fake).values()) == 1


def test_bad_input_is_refused_before_anything_is_written(tmp_path):
    with FakeOpenAI(responder=sample_responder) as fake:
        with pytest.raises(UserError, match="prices"):
            generate(make_config(fake.base_url, budget_usd=1.0, topics={"depth": 0}), tmp_path / "run")
        with pytest.raises(UserError, match="topics file not found"):
            generate(make_config(fake.base_url, topics={"file": str(tmp_path / "nope.xlsx")}), tmp_path / "run")
        with pytest.raises(UserError, match="existing dataset not found"):
            generate(make_config(fake.base_url, quality={"against": [str(tmp_path / "old.jsonl")]}), tmp_path / "run")
    assert not (tmp_path / "run").exists() and not fake.requests


def length_for_some(body):
    """Variations 3 and 6 need more than 1000 tokens: cut off ("length") below that."""
    _, variation = parse_request(body)
    if variation in (3, 6) and body.get("max_tokens", 0) < 1000:
        return completion_dict("Question: half an answ", finish_reason="length")
    if variation == 5:
        return completion_dict(sample_responder(body), finish_reason="content_filter")
    return sample_responder(body)


def test_length_and_content_filter_never_become_samples_and_retry_failed_redoes_only_them(tmp_path):
    with FakeOpenAI(responder=length_for_some) as fake:
        cfg = make_config(fake.base_url, num_samples=8, max_requests_factor=1.0, max_tokens=200, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
        summary = read_json(run / "summary.json")
        assert summary["status"] == "incomplete" and summary["accepted"] == 5
        assert summary["rejected"] == {"content_filter": 1, "finish_length": 2}
        rows = rows_of(run)
        assert len(rows) == 5 and all("half an answ" not in r["messages"][2]["content"] for r in rows)
        before = len(fake.requests)
        bigger = cfg.generate.model_copy(update={"max_tokens": 2000})
        generate(cfg.model_copy(update={"generate": bigger}), run, retry_failed=True)
        retried = [parse_request(body)[1] for body in fake.requests[before:]]
    assert sorted(retried) == [3, 5, 6]  # only the failed slots, nothing that finished normally
    summary = read_json(run / "summary.json")
    assert summary["accepted"] == 7 and summary["rejected"] == {"content_filter": 1}
    assert summary["counts_add_up"]


def test_normal_answers_are_reused_when_only_limits_change(tmp_path):
    shared = str(tmp_path / "cache")
    with FakeOpenAI(responder=sample_responder) as fake:
        run_a = generate(
            make_config(fake.base_url, num_samples=6, cache_dir=shared, topics={"depth": 1, "degree": 2}),
            tmp_path / "a",
        )
        asked = len(fake.requests)
        limits = {"max_tokens": 999, "timeout_s": 3.0, "max_retries": 1, "max_in_flight": 2}
        run_b = generate(
            make_config(fake.base_url, num_samples=6, cache_dir=shared, topics={"depth": 1, "degree": 2}, **limits),
            tmp_path / "b",
        )
        assert len(fake.requests) == asked  # every answer (topics included) came from the cache
        generate(
            make_config(
                fake.base_url, num_samples=6, cache_dir=shared, temperature=0.3, topics={"depth": 1, "degree": 2}
            ),
            tmp_path / "c",
        )
        assert len(fake.requests) > asked  # temperature shapes answers: it is in the cache key

    def contents(run):
        return sorted(json.dumps(r["messages"]) for r in rows_of(run))

    assert len(contents(run_a)) == 6 and contents(run_a) == contents(run_b)
    assert read_json(run_b / "summary.json")["cache_hits_this_session"] >= 6


def test_existing_run_needs_resume_and_same_content_settings(tmp_path):
    with FakeOpenAI(responder=sample_responder) as fake:
        cfg = make_config(fake.base_url, num_samples=2, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
        with pytest.raises(UserError, match="--resume"):
            generate(cfg, run)
        changed = make_config(fake.base_url, num_samples=2, temperature=0.1, topics={"depth": 0})
        with pytest.raises(UserError, match=r"generate\.temperature"):
            generate(changed, run, resume=True)
        with pytest.raises(UserError, match="no earlier run"):
            generate(cfg, tmp_path / "none", retry_failed=True)


def test_error_summary_groups_final_failures_by_type(tmp_path):
    with FakeOpenAI(responder=sample_responder, fault_rate=1.0, faults=("500",)) as fake:
        cfg = make_config(fake.base_url, num_samples=3, max_retries=1, max_requests_factor=1.0, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
    summary = read_json(run / "summary.json")
    assert summary["failed"] == {"server_error": 3} and summary["accepted"] == 0
    assert summary["errors_this_session"] == {"server_error": 6}  # each slot: one try + one retry
    assert summary["status"] == "incomplete" and summary["counts_add_up"]


def test_a_server_refusing_every_request_stops_the_run_with_a_fix(tmp_path):
    with FakeOpenAI(responder=sample_responder, fault_rate=1.0, faults=("400",)) as fake:
        cfg = make_config(fake.base_url, num_samples=50, max_in_flight=2, topics={"depth": 0})
        with pytest.raises(UserError, match=r"generate\.output=text"):
            generate(cfg, tmp_path / "run")
    summary = read_json(tmp_path / "run" / "summary.json")
    assert summary["status"] == "stopped_bad_request" and summary["failed"]["bad_request"] >= 10
    # stopped early, not 150 refused requests later: each slot asks with json_schema, then once in JSON mode
    slots = [b for b in fake.requests if b.get("response_format", {}).get("type") == "json_schema"]
    assert len(slots) < 20 and len(fake.requests) <= 2 * len(slots)
    assert "unsupported parameter" in summary["error_examples"]["bad_request"]
    assert (tmp_path / "run" / "INCOMPLETE").exists()
