"""Structured output (issue 24 point 5): the sample schema as a strict json_schema response_format, JSON mode
after a server's 400 (remembered for the run), and no pydantic docstring in any prompt."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest

from sectune.config import load_config
from sectune.generate.samples import ConversationSchema, SampleSchema, response_format, sample_prompt
from sectune.generate.topics import Topic
from sectune.llm.factory import get_provider
from sectune.llm.requests import Caller, Limits
from sectune.testing.fake_openai import FakeHTTPError, FakeOpenAI

ANSWER = '{"question": "How do I rotate a key?", "answer": "Create the new key, switch, then revoke the old."}'
MESSAGES = [{"role": "user", "content": "Write a sample."}]


def _ask(base_url: str, response_formats: list[dict]) -> tuple[list, object]:
    """One request per response_format, one after the other, through sectune's caller (no retries)."""

    async def run() -> tuple[list, object]:
        provider = get_provider("openai", model="m", base_url=base_url)
        caller = Caller(provider, Limits(max_retries=0, max_in_flight=1))
        try:
            return [await caller.call(MESSAGES, {"response_format": rf}) for rf in response_formats], provider
        finally:
            await provider.aclose()

    return asyncio.run(run())


def test_the_default_is_json_schema_and_json_object_stays_available():
    assert load_config(None, []).generate.response_format == "json_schema"
    assert load_config(None, ["generate.response_format=json_object"]).generate.response_format == "json_object"
    with pytest.raises(Exception, match="response_format"):
        load_config(None, ["generate.response_format=grammar"])


def test_the_request_carries_the_strict_sample_schema():
    with FakeOpenAI(responder=lambda body: ANSWER) as fake:
        results, _ = _ask(fake.base_url, [response_format("json_schema"), response_format("json_schema", turns=3)])
        sent = [body["response_format"] for body in fake.requests]
    assert all(r.completion is not None and r.completion.text == ANSWER for r in results)
    sample, conversation = sent
    assert sample["type"] == "json_schema" and sample["json_schema"]["strict"] is True
    assert sample["json_schema"]["name"] == "sample"
    assert sample["json_schema"]["schema"] == {
        "type": "object",
        "properties": {"question": {"type": "string"}, "answer": {"type": "string"}},
        "required": ["question", "answer"],
        "additionalProperties": False,
    }
    turns = conversation["json_schema"]["schema"]["properties"]["turns"]
    assert conversation["json_schema"]["name"] == "conversation"
    assert turns["type"] == "array" and turns["items"] == sample["json_schema"]["schema"]  # inlined, no $ref
    assert response_format("json_object") == {"type": "json_object"}


def test_a_server_refusing_json_schema_gets_json_object_after_and_the_run_remembers(caplog):
    caplog.set_level(logging.WARNING, logger="sectune.llm.openai_compat")

    def responder(body):
        if body["response_format"]["type"] == "json_schema":  # an older server: JSON mode only
            raise FakeHTTPError(400, "response_format type json_schema is not supported")
        return ANSWER

    with FakeOpenAI(responder=responder) as fake:
        results, provider = _ask(fake.base_url, [response_format("json_schema")] * 3)
        sent = [body["response_format"]["type"] for body in fake.requests]
    assert [r.completion.text if r.completion else r.error for r in results] == [ANSWER] * 3
    assert sent == ["json_schema", "json_object", "json_object", "json_object"]  # asked with json_schema once
    assert provider.json_schema_refused
    notices = [r.getMessage() for r in caplog.records if "json_schema" in r.getMessage()]
    assert len(notices) == 1 and "json_object" in notices[0]


def test_a_400_that_json_mode_does_not_cure_is_not_taken_for_a_json_schema_refusal():
    def responder(body):
        raise FakeHTTPError(400, "model 'm' not found")

    with FakeOpenAI(responder=responder) as fake:
        results, provider = _ask(fake.base_url, [response_format("json_schema")] * 2)
        sent = [body["response_format"]["type"] for body in fake.requests]
    assert [r.error.kind for r in results] == ["bad_request"] * 2
    assert sent == ["json_schema", "json_object"] * 2 and not provider.json_schema_refused


@pytest.mark.parametrize(("json_output", "turns"), [(True, 1), (True, 3)])
def test_prompts_hold_no_docstring_nor_schema_text(json_output, turns):
    prompt = json.dumps(sample_prompt(Topic(["Security", "Keys"]), 2, json_output=json_output, turns=turns))
    for model in (SampleSchema, ConversationSchema):
        assert (model.__doc__ or "").strip()
        assert model.__doc__.strip() not in prompt and model.__name__ not in prompt
    for keyword in ('"properties"', '"description"', '"$defs"', '"title"', '"required"'):
        assert keyword.replace('"', '\\"') not in prompt  # the schema's own keys: a small model copied them


def test_the_schema_sent_holds_no_docstring_either():
    for turns in (1, 3):
        sent = json.dumps(response_format("json_schema", turns=turns))
        assert SampleSchema.__doc__.strip() not in sent and ConversationSchema.__doc__.strip() not in sent
        assert '"description"' not in sent and '"title"' not in sent


# ---------------------------------------------------------------- through a whole generate run


def test_a_generate_run_sends_the_json_schema(tmp_path):
    from generate_helpers import make_config, sample_responder

    from sectune.generate.api import generate

    with FakeOpenAI(responder=sample_responder) as fake:
        generate(make_config(fake.base_url, num_samples=3, topics={"depth": 0}), tmp_path / "run")
    assert [b.get("response_format", {}).get("type") for b in fake.requests] == ["json_schema"] * 3


def test_a_generate_run_falls_back_to_json_mode_after_a_400(tmp_path):
    from generate_helpers import make_config, sample_responder

    from sectune.generate.api import generate
    from sectune.runs import read_json

    def responder(body):
        if body.get("response_format", {}).get("type") == "json_schema":
            raise FakeHTTPError(400, "response_format json_schema is not supported")
        return sample_responder(body)

    with FakeOpenAI(responder=responder) as fake:
        cfg = make_config(fake.base_url, num_samples=3, max_in_flight=1, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
    kinds = [b.get("response_format", {}).get("type") for b in fake.requests]
    assert kinds == ["json_schema", "json_object", "json_object", "json_object"]
    assert read_json(run / "summary.json")["accepted"] == 3


def test_a_multi_turn_run_sends_the_conversation_schema(tmp_path):
    from generate_helpers import make_config, sample_responder

    from sectune.generate.api import generate

    def responder(body):
        topic = body["messages"][-1]["content"][:40]
        turns = [json.loads(sample_responder(body)) | {"question": f"How {i} do I {topic}?"} for i in range(2)]
        return json.dumps({"turns": turns})

    with FakeOpenAI(responder=responder) as fake:
        cfg = make_config(fake.base_url, num_samples=2, turns=2, topics={"depth": 0}, quality={"dedup": False})
        generate(cfg, tmp_path / "run")
    assert fake.requests[0]["response_format"]["json_schema"]["name"] == "conversation"
