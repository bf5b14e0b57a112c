"""The generate-stage judge has its own provider settings: never the generator's base_url or API key (issue 16)."""

from __future__ import annotations

import pytest
from generate_helpers import make_config, sample_responder

from sectune.generate.api import generate
from sectune.generate.resume import content_changes as _content_changes
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def _is_judge_request(body: dict) -> bool:
    return body["messages"][-1]["content"].startswith("Rate this")


@pytest.mark.parametrize("where", ["base_url", "OPENAI_BASE_URL"])
def test_the_judge_goes_to_its_own_server_not_the_generators(tmp_path, monkeypatch, where):
    """Generating on server A (think: a local vLLM) and judging on B (think: OpenAI) sends every judge request to B.

    ``base_url``: B named by generate.quality.judge.base_url. ``OPENAI_BASE_URL``: the judge sets only a model,
    so it takes its provider's default endpoint (the environment), not generate.base_url.
    """
    monkeypatch.setenv("GEN_KEY", "generator-secret")
    monkeypatch.setenv("OPENAI_API_KEY", "judge-secret")
    with (
        FakeOpenAI(responder=sample_responder) as generator,
        FakeOpenAI(responder=lambda body: '{"score": 5}', require_key="judge-secret") as judge_server,
    ):
        judge = {"enabled": True, "model": "judge-model"}
        if where == "base_url":
            judge.update(provider="openai", base_url=judge_server.base_url, api_key_env="OPENAI_API_KEY")
            monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
        else:
            monkeypatch.setenv("OPENAI_BASE_URL", judge_server.base_url)
        cfg = make_config(
            generator.base_url, api_key_env="GEN_KEY", num_samples=4, topics={"depth": 0}, quality={"judge": judge}
        )
        run = generate(cfg, tmp_path / "run")
    summary = read_json(run / "summary.json")
    assert summary["accepted"] == 4 and summary["counts_add_up"]
    assert not any(_is_judge_request(body) for body in generator.requests)  # none at A
    assert len(judge_server.requests) == 4 and all(_is_judge_request(body) for body in judge_server.requests)
    assert {body["model"] for body in judge_server.requests} == {"judge-model"}
    assert {h["authorization"] for h in judge_server.headers} == {"Bearer judge-secret"}
    assert {h["authorization"] for h in generator.headers} == {"Bearer generator-secret"}


def test_a_judge_without_settings_of_its_own_judges_with_the_generator(tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with FakeOpenAI(responder=lambda b: '{"score": 5}' if _is_judge_request(b) else sample_responder(b)) as fake:
        cfg = make_config(fake.base_url, num_samples=3, topics={"depth": 0}, quality={"judge": {"enabled": True}})
        generate(cfg, tmp_path / "run")
    judged = [body for body in fake.requests if _is_judge_request(body)]
    assert len(judged) == 3 and {body["model"] for body in judged} == {"fake-model"}


def test_the_judges_endpoint_may_change_on_resume():
    """Like generate.base_url, where the judge's requests go does not shape the samples (and old runs lack it)."""
    cfg = make_config("http://127.0.0.1:1/v1", quality={"judge": {"enabled": True, "model": "m"}})
    earlier = cfg.model_dump(mode="json")
    del earlier["generate"]["quality"]["judge"]["base_url"], earlier["generate"]["quality"]["judge"]["api_key_env"]
    moved = make_config(
        "http://127.0.0.1:1/v1", quality={"judge": {"enabled": True, "model": "m", "base_url": "http://x/v1"}}
    )
    assert _content_changes(earlier, moved) == []
    other_model = make_config("http://127.0.0.1:1/v1", quality={"judge": {"enabled": True, "model": "n"}})
    assert _content_changes(earlier, other_model) == ["generate.quality"]
