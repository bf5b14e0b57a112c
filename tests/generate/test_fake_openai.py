"""The fake OpenAI-compatible server: answers, faults, concurrency."""

from __future__ import annotations

import asyncio

import openai
import pytest

from sectune.testing.fake_openai import FakeOpenAI, completion_dict


def test_answers_like_openai_with_usage_and_finish_reason():
    with FakeOpenAI(responder=lambda body: "hi " + body["model"]) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        out = client.chat.completions.create(model="m1", messages=[{"role": "user", "content": "a b c"}])
    assert out.choices[0].message.content == "hi m1"
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.prompt_tokens == 3 and out.usage.completion_tokens == 2
    assert fake.requests[0]["messages"][0]["content"] == "a b c"


def test_forced_finish_reason_and_full_dict_responder():
    with FakeOpenAI(finish_reason="length") as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert out.choices[0].finish_reason == "length"
    with FakeOpenAI(responder=lambda b: completion_dict("{bad json", finish_reason="content_filter")) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        out = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert out.choices[0].finish_reason == "content_filter"
        assert out.choices[0].message.content == "{bad json"


def test_faults_are_deterministic_and_typed():
    def kinds(seed):
        fake = FakeOpenAI(fault_rate=0.5, seed=seed)
        return [fake._fault_for(i) for i in range(200)]

    first = kinds(3)
    assert first == kinds(3)
    assert first != kinds(4)
    assert {"429", "500", "timeout"} <= set(first)
    assert 60 < sum(k is not None for k in first) < 140


def test_429_carries_retry_after_and_500_and_timeout_surface_as_errors():
    with FakeOpenAI(fault_rate=1.0, faults=("429",), retry_after=7) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.RateLimitError) as err:
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        assert err.value.response.headers["retry-after"] == "7"
    with FakeOpenAI(fault_rate=1.0, faults=("500",)) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with FakeOpenAI(fault_rate=1.0, faults=("timeout",), timeout_sleep=1.0) as fake:
        client = openai.OpenAI(base_url=fake.base_url, api_key="k", max_retries=0, timeout=0.2)
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert fake.faults_sent["timeout"] == 1


def test_serves_64_concurrent_requests_in_parallel():
    async def main(base_url):
        async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
            calls = [
                client.chat.completions.create(model="m", messages=[{"role": "user", "content": str(i)}])
                for i in range(64)
            ]
            return await asyncio.gather(*calls)

    with FakeOpenAI(latency=0.3) as fake:
        results = asyncio.run(main(fake.base_url))
    assert sorted(r.choices[0].message.content for r in results) == sorted(f"echo: {i}" for i in range(64))
    assert fake.max_in_flight == 64  # all handled at once, none queued behind another


def test_anthropic_provider_through_the_fake_messages_route(monkeypatch):
    from sectune.llm import ProviderError, get_provider

    monkeypatch.setenv("ANTHROPIC_API_KEY", "anthropic-test-key")

    async def ask(base_url):
        provider = get_provider("anthropic", model="claude-test", base_url=base_url)
        try:
            return await provider.complete(
                [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}], max_tokens=9
            )
        finally:
            await provider.aclose()

    with FakeOpenAI(finish_reason="length") as fake:
        out = asyncio.run(ask(fake.anthropic_base_url))
    assert out.text == "echo: hello there" and out.finish_reason == "length"  # max_tokens → "length"
    assert fake.requests[0]["system"] == "be brief" and fake.requests[0]["max_tokens"] == 9
    with FakeOpenAI(fault_rate=1.0, faults=("429",), retry_after=2) as fake, pytest.raises(ProviderError) as err:
        asyncio.run(ask(fake.anthropic_base_url))
    assert err.value.kind == "rate_limit" and err.value.retry_after == 2
