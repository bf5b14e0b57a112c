"""LLM-as-judge (sectune.llm.judge) against the fake OpenAI-compatible server: garbage is excluded and counted,
never scored; transient errors are retried; answers are cached in the one response cache."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from sectune.config import load_config
from sectune.llm.judge import (
    AbsoluteVerdict,
    build_judge,
    judge_absolute,
    judge_pairwise,
    parse_score,
    parse_verdict,
)
from sectune.testing.fake_openai import FakeOpenAI, completion_dict

QUESTIONS = ["What is a firewall?", "What is phishing?", "What is a VPN?", "What is MFA?"]
REFERENCES = ["It filters traffic.", "A scam email.", "An encrypted tunnel.", "A second factor."]


@pytest.fixture(autouse=True)
def _key_and_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))


def _judge(fake, **overrides):
    sets = [f"eval.judge.base_url={fake.base_url}", "eval.judge.model=fake-judge"]
    sets += [f"eval.judge.{k}={v}" for k, v in overrides.items()]
    return build_judge(load_config(None, sets).eval.judge)


def _run(judge, function, *args):
    """Run one judging call and close the judge (provider and cache) in the same event loop."""

    async def go():
        try:
            return await function(judge, *args)
        finally:
            await judge.aclose()

    return asyncio.run(go())


def _answer_of(body):
    return re.search(r"ANSWER:\n(.*)$", body["messages"][-1]["content"], re.S).group(1)


def test_parse_verdict_validates_the_schema():
    assert parse_verdict('Sure! {"score": 4, "reason": "ok"}', AbsoluteVerdict).score == 4
    assert parse_verdict('{"score": 9}', AbsoluteVerdict) is None
    assert parse_verdict("4/5, quite good", AbsoluteVerdict) is None


def test_one_score_parser_for_every_judge():
    assert parse_score('Sure! {"score": 4, "reason": "ok"}') == 4
    assert parse_score('{"score": 3, "reason": "a {nested} brace"}') == 3  # not JSON as a whole: the field
    assert parse_score(" 5 ") == 5
    for garbage in ('{"score": 9}', '{"score": 0}', '{"score": 45}', "4/5, quite good", "I would give it a one"):
        assert parse_score(garbage) is None, garbage


def test_garbage_verdicts_are_excluded_and_counted_never_scored():
    replies = {
        "good": '{"score": 5, "reason": "fine"}',
        "meh": '{"score": 3}',
        "junk": "I would give it a one",
        "range": '{"score": 0}',
    }

    with FakeOpenAI(responder=lambda body: replies[_answer_of(body)]) as fake:
        judge = _judge(fake, cache="false")
        result = _run(judge, judge_absolute, QUESTIONS, REFERENCES, ["good", "meh", "junk", "range"])
    assert result["parsed"] == 2 and result["parse_failures"] == 2 and result["total"] == 4
    assert result["mean_score"] == pytest.approx(4.0)  # (5 + 3) / 2: the failures are not counted as 1
    assert result["scores"] == [5, 3, None, None]


def test_cut_off_verdicts_are_excluded():
    def responder(body):
        return completion_dict('{"score": 5}', finish_reason="length")

    with FakeOpenAI(responder=responder) as fake:
        result = _run(_judge(fake, cache="false"), judge_absolute, QUESTIONS[:2], REFERENCES[:2], ["a", "b"])
    assert result["parsed"] == 0 and result["truncated"] == 2 and result["mean_score"] is None
    assert result["parse_failures"] == 0  # cut at max_tokens, not unparseable


def test_judge_answers_are_cached_on_disk(tmp_path):
    with FakeOpenAI(responder=lambda body: '{"score": 4}') as fake:
        judge = _judge(fake)
        first = _run(judge, judge_absolute, QUESTIONS, REFERENCES, ["w", "x", "y", "z"])
        asked = len(fake.requests)
        second = _run(_judge(fake), judge_absolute, QUESTIONS, REFERENCES, ["w", "x", "y", "z"])
        assert len(fake.requests) == asked  # nothing asked twice
    assert first == second and asked == 4
    assert (tmp_path / "cache" / "judge" / "cache.sqlite").is_file()  # the llm response cache


def test_transient_judge_errors_are_retried():
    failed = set()

    def flaky(body):
        answer = _answer_of(body)
        if answer not in failed:  # every prompt fails once with a 500, then answers
            failed.add(answer)
            raise RuntimeError("overloaded")
        return '{"score": 4}'

    with FakeOpenAI(responder=flaky) as fake:
        result = _run(_judge(fake, cache="false"), judge_absolute, QUESTIONS[:2], REFERENCES[:2], ["x", "y"])
        assert len(fake.requests) == 4
    assert result["parsed"] == 2 and result["mean_score"] == 4.0


def _pairwise_answers(body):
    text = body["messages"][-1]["content"]
    first = re.search(r"ANSWER A:\n(.*)\n\nANSWER B:", text, re.S).group(1)
    second = re.search(r"ANSWER B:\n(.*)$", text, re.S).group(1)
    return first, second


def test_pairwise_runs_both_orders_and_cancels_position_bias():
    with FakeOpenAI(responder=lambda body: '{"winner": "A"}') as fake:  # always the first position
        biased = _run(_judge(fake, cache="false"), judge_pairwise, QUESTIONS, REFERENCES, ["b"] * 4, ["c"] * 4)
        assert len(fake.requests) == 8
    assert biased["first_position_rate"] == 1.0 and biased["agreement"] == 0.0
    assert biased["candidate_wins"] == 0 and biased["inconsistent"] == 4

    def fair(body):
        first, second = _pairwise_answers(body)
        return json.dumps({"winner": "A" if "good" in first else "B" if "good" in second else "tie"})

    with FakeOpenAI(responder=fair) as fake:
        candidate = ["good", "good", "good", "bad"]
        result = _run(_judge(fake, cache="false"), judge_pairwise, QUESTIONS, REFERENCES, ["bad"] * 4, candidate)
    assert result["candidate_wins"] == 3 and result["ties"] == 1 and result["agreement"] == 1.0
    assert result["first_position_rate"] == 0.5 and result["win_rate"] == 0.75


def test_pairwise_garbage_is_excluded():
    with FakeOpenAI(responder=lambda body: "B is better I think") as fake:
        result = _run(_judge(fake, cache="false"), judge_pairwise, QUESTIONS, REFERENCES, ["b"] * 4, ["c"] * 4)
    assert result["parse_failures"] == 4 and result["parsed"] == 0 and result["win_rate"] is None
