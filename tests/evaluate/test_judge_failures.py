"""Judge failures against the fake server (issue 24): rows whose generation request failed are not judged, and
a missing verdict is counted by why (transport failure after the retries, cut at max_tokens, unparseable)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time

import pytest

from sectune.config import load_config
from sectune.evaluate.api import evaluate
from sectune.llm import get_provider
from sectune.llm.judge import Judge, build_judge, judge_absolute, judge_pairwise
from sectune.llm.requests import Caller, Limits
from sectune.testing.fake_openai import FakeHTTPError, FakeOpenAI, completion_dict

QUESTIONS = ["What is a firewall?", "What is phishing?", "What is a VPN?", "What is MFA?"]
REFERENCES = ["It filters traffic.", "A scam email.", "An encrypted tunnel.", "A second factor."]


@pytest.fixture(autouse=True)
def _key_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))


def _run(judge, function, *args):
    """Run one judging call and close the judge's provider in the same event loop."""

    async def go():
        try:
            return await function(judge, *args)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def _answer_of(body):
    return re.search(r"ANSWER:\n(.*)$", body["messages"][-1]["content"], re.S).group(1)


def test_eval_does_not_judge_rows_whose_generation_failed(tiny_dataset, tmp_path):
    """The failed row's empty answer would be the best-scored one: judged, it would lift the mean."""

    def responder(body):
        prompt = body["messages"][-1]["content"]
        if body["model"] == "judge":
            if "ANSWER A:" in prompt:
                return '{"winner": "tie"}'
            return '{"score": 5}' if not _answer_of(body).strip() else '{"score": 2}'
        if "phishing" in prompt:
            raise RuntimeError("this prompt always fails")  # a 500: the row's finish_reason is error:server_error
        return "A firewall filters network traffic."

    sets = [
        "eval.metrics=[rouge_l,length]",
        "eval.bootstrap_samples=50",
        "eval.max_new_tokens=4",
        "eval.endpoint_model=served",
        "eval.endpoint_max_retries=0",
        "eval.judge.enabled=true",
        "eval.judge.pairwise=true",
        "eval.judge.model=judge",
        "eval.judge.cache=false",  # every judge request reaches the server: the count below is exact
    ]
    with FakeOpenAI(responder=responder) as fake:
        cfg = load_config(None, [*sets, f"eval.judge.base_url={fake.base_url}"])
        out = evaluate(cfg, [fake.base_url, fake.base_url], tmp_path / "e", dataset=tiny_dataset)
        judged = [body for body in fake.requests if body["model"] == "judge"]
    summary = json.loads((out / "summary.json").read_text())
    first, second = summary["order"]
    absolute = summary["targets"][first]["judge_absolute"]
    assert absolute["skipped_failed"] == 1 and absolute["total"] == 3 and absolute["parsed"] == 3
    assert absolute["mean_score"] == 2.0 and absolute["scores"].count(None) == 1
    pairwise = summary["targets"][second][f"judge_pairwise_vs_{first}"]
    assert pairwise["skipped_failed"] == 1 and pairwise["total"] == 3 and pairwise["outcomes"].count("skipped") == 1
    assert not any("phishing" in body["messages"][-1]["content"] for body in judged)  # never asked
    assert len(judged) == 2 * 3 + 3 * 2  # absolute for both targets, pairwise in both orders


def test_judge_failures_are_counted_apart_and_transport_ones_retried():
    asked: dict[str, int] = {}
    lock = threading.Lock()

    def responder(body):
        answer = _answer_of(body)
        with lock:
            asked[answer] = asked.get(answer, 0) + 1
        if answer == "down":
            raise FakeHTTPError(503, "overloaded", "server_error")
        if answer == "cut":
            return completion_dict('{"score": 5, "reason": "a long', finish_reason="length")
        return '{"score": 4}' if answer == "ok" else "I would give it a four"

    with FakeOpenAI(responder=responder) as fake:
        sets = [f"eval.judge.base_url={fake.base_url}", "eval.judge.cache=false", "eval.judge.max_retries=2"]
        judge = build_judge(load_config(None, sets).eval.judge)
        result = _run(judge, judge_absolute, QUESTIONS, REFERENCES, ["ok", "cut", "junk", "down"])
    assert result["parsed"] == 1 and result["mean_score"] == 4.0 and result["total"] == 4
    assert (result["transport_failures"], result["truncated"], result["parse_failures"]) == (1, 1, 1)
    assert result["transport_errors"] == {"server_error": 1}
    assert asked["down"] == 3 and asked["ok"] == asked["cut"] == asked["junk"] == 1  # only transport is retried


def _timeout_judge(fake, max_retries):
    """A judge whose client gives up after 0.3 s (the fake server sleeps longer for slow answers)."""
    provider = get_provider("openai", model="judge", base_url=fake.base_url)
    limits = Limits(timeout_s=0.3, max_retries=max_retries, backoff_initial_s=0.01, backoff_max_s=0.05)
    return Judge(Caller(provider, limits))


def test_judge_timeouts_are_retried_then_counted_as_transport_failures():
    seen: set[str] = set()

    def responder(body):
        answer = _answer_of(body)
        if answer == "stuck" or answer not in seen:  # "slow" times out once, "stuck" every time
            seen.add(answer)
            time.sleep(1.0)
        return '{"score": 3}'

    with FakeOpenAI(responder=responder) as fake:
        result = _run(
            _timeout_judge(fake, max_retries=1), judge_absolute, QUESTIONS[:2], REFERENCES[:2], ["slow", "stuck"]
        )
        stuck = sum(_answer_of(body) == "stuck" for body in fake.requests)
    assert result["scores"] == [3, None] and result["parse_failures"] == 0
    assert result["transport_failures"] == 1 and result["transport_errors"] == {"timeout": 1}
    assert stuck == 2  # asked, then retried once


def test_pairwise_skips_failed_rows_and_counts_failures_by_kind():
    def responder(body):
        text = body["messages"][-1]["content"]
        if "What is a VPN?" in text:
            raise FakeHTTPError(401, "bad key", "invalid_api_key")  # not retryable: a transport failure at once
        if "What is MFA?" in text and "ANSWER A:\ncand" in text:  # only one order is cut off
            return completion_dict('{"winner": ', finish_reason="length")
        return '{"winner": "tie"}'

    with FakeOpenAI(responder=responder) as fake:
        sets = [f"eval.judge.base_url={fake.base_url}", "eval.judge.cache=false"]
        judge = build_judge(load_config(None, sets).eval.judge)
        candidate = ["cand", None, "cand", "cand"]  # the phishing row's generation failed
        result = _run(judge, judge_pairwise, QUESTIONS, REFERENCES, ["base"] * 4, candidate)
        asked = len(fake.requests)
    assert result["outcomes"] == ["tie", "skipped", None, None]
    assert result["skipped_failed"] == 1 and result["total"] == 3 and result["parsed"] == 1
    assert (result["transport_failures"], result["truncated"], result["parse_failures"]) == (1, 1, 0)
    assert result["transport_errors"] == {"auth": 1} and asked == 6  # three questions, both orders, no retry
