"""`sectune serve` on the tiny model with two random adapters, spoken to with the official `openai` client.

The server runs as a real subprocess (`python -m sectune serve ... --port 0`); the in-process references are
the same model loaded with sectune's own loaders, so a wrong adapter, padding or position id shows as a
different token or logprob.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

KEY = "test-serve-key-7f3a"
QUESTION = [{"role": "user", "content": "What is a firewall?"}]


def start_server(*args: str, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "sectune", "serve", *args, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("serving on "):
        proc.kill()
        raise AssertionError(f"server did not start: {line}{proc.stderr.read() if proc.stderr else ''}")
    url = line.split()[2].rstrip(";")
    for _ in range(200):
        try:
            if httpx.get(url.removesuffix("/v1") + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError("server never became healthy")


@pytest.fixture(scope="module")
def adapters(tiny_model_dir, tmp_path_factory) -> tuple[Path, Path]:
    from sectune.testing.tiny import build_tiny_adapter

    root = tmp_path_factory.mktemp("adapters")
    return (
        build_tiny_adapter(tiny_model_dir, root / "sec-a", seed=1),
        build_tiny_adapter(tiny_model_dir, root / "sec-b", seed=2),
    )


@pytest.fixture(scope="module")
def server(tiny_model_dir, adapters):
    proc, url = start_server(
        f"base={tiny_model_dir}",
        f"a={adapters[0]}",
        str(adapters[1]),  # named after its folder: sec-b
        "--set",
        "serve.max_body_bytes=65536",
        "--set",
        "serve.max_tokens_limit=256",
        "--set",
        "serve.batch_wait_ms=50",
        env={"SECTUNE_API_KEY": KEY},
    )
    yield url
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert KEY not in err  # the key is never logged


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server, api_key=KEY, max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def local(tiny_model_dir, adapters):
    """In-process references: name → (model, tokenizer)."""
    from sectune.models.load import load_for_inference, load_with_adapter

    return {
        "base": load_for_inference(tiny_model_dir),
        "a": load_with_adapter(tiny_model_dir, adapters[0]),
        "sec-b": load_with_adapter(tiny_model_dir, adapters[1]),
    }


def greedy_chat(client, model: str, messages=QUESTION, **kwargs):
    return client.chat.completions.create(model=model, messages=messages, max_tokens=12, temperature=0, **kwargs)


# ---------------------------------------------------------------- what works


def test_models_lists_the_base_and_both_adapters(client):
    models = {m.id: m for m in client.models.list()}
    assert set(models) == {"base", "a", "sec-b"}
    assert models["a"].model_extra["parent"] == "base" and models["base"].model_extra["parent"] is None


@pytest.mark.parametrize("name", ["base", "a", "sec-b"])
def test_greedy_chat_is_the_in_process_answer(client, local, name):
    from sectune.models.generation import generate_chat

    model, tokenizer = local[name]
    [expected] = generate_chat(model, tokenizer, [QUESTION], max_new_tokens=12)
    reply = greedy_chat(client, name)
    assert reply.choices[0].message.content.strip() == expected.text
    assert reply.choices[0].finish_reason == expected.finish_reason
    assert reply.usage.prompt_tokens == expected.prompt_tokens
    assert reply.usage.completion_tokens == expected.completion_tokens


def test_the_adapters_answer_differently(client):
    answers = {name: greedy_chat(client, name).choices[0].message.content for name in ("base", "a", "sec-b")}
    assert len(set(answers.values())) == 3, answers


def test_streaming_chat_sends_the_same_answer_in_pieces(client):
    plain = greedy_chat(client, "sec-b").choices[0].message.content
    stream = greedy_chat(client, "sec-b", stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    pieces = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(pieces) > 1 and "".join(pieces) == plain
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].usage.completion_tokens == 12


def test_a_stop_string_cuts_the_answer(client):
    full = greedy_chat(client, "sec-b").choices[0].message.content
    stop = full[2:5]
    reply = greedy_chat(client, "sec-b", stop=[stop])
    assert reply.choices[0].message.content == full[: full.index(stop)]
    assert reply.choices[0].finish_reason == "stop"


def test_a_seed_repeats_a_sampled_answer(client):
    def sampled(seed: int) -> str:
        reply = client.chat.completions.create(model="a", messages=QUESTION, max_tokens=16, temperature=1.0, seed=seed)
        return reply.choices[0].message.content

    assert sampled(11) == sampled(11)
    assert sampled(11) != sampled(12)


def test_completions_echo_logprobs_are_the_in_process_logprobs(client, local):
    from sectune.evaluate.metrics import continuation_logprobs

    model, tokenizer = local["a"]
    ids = tokenizer("Firewalls filter network traffic", add_special_tokens=False)["input_ids"]
    reply = client.completions.create(model="a", prompt=ids, max_tokens=0, echo=True, logprobs=2, temperature=0)
    logprobs = reply.choices[0].logprobs
    assert logprobs.tokens == [tokenizer.decode([i]) for i in ids]
    assert logprobs.token_logprobs[0] is None and logprobs.top_logprobs[0] is None
    [expected] = continuation_logprobs(model, [(ids, 1)], tokenizer.pad_token_id)
    assert logprobs.token_logprobs[1:] == pytest.approx(expected, abs=1e-4)
    assert all(len(top) == 2 for top in logprobs.top_logprobs[1:])
    assert logprobs.text_offset[0] == 0 and logprobs.text_offset == sorted(logprobs.text_offset)
    assert reply.choices[0].text == tokenizer.decode(ids)


def test_completions_echo_with_one_new_token_as_lm_eval_asks(client):
    reply = client.completions.create(
        model="base", prompt="Firewalls filter", max_tokens=1, echo=True, logprobs=1, temperature=0
    )
    logprobs = reply.choices[0].logprobs
    assert reply.choices[0].text.startswith("Firewalls filter")
    assert len(logprobs.tokens) == reply.usage.prompt_tokens + 1
    greedy = max(logprobs.top_logprobs[-1], key=logprobs.top_logprobs[-1].get)
    assert logprobs.tokens[-1] == greedy  # temperature 0: the new token is the most likely one


def test_concurrent_requests_are_batched_and_answered_as_alone(server, client):
    """Prompts of different lengths share a left-padded batch: each row's tokens and logprobs are its own."""

    def answer(messages) -> tuple[str, list[float]]:
        reply = greedy_chat(client, "sec-b", messages, logprobs=True)
        return reply.choices[0].message.content, [t.logprob for t in reply.choices[0].logprobs.content]

    prompts = [[{"role": "user", "content": "hi " * n}] for n in range(1, 7)]
    alone = [answer(p) for p in prompts]
    before = httpx.get(server.removesuffix("/v1") + "/health").json()["batches"]
    together: list = [None] * len(prompts)

    def ask(i: int) -> None:
        together[i] = answer(prompts[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(prompts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    health = httpx.get(server.removesuffix("/v1") + "/health").json()
    for (text, logprobs), (text_alone, logprobs_alone) in zip(together, alone, strict=True):
        assert text == text_alone and logprobs == pytest.approx(logprobs_alone, abs=1e-4)
    assert health["batches"] - before < len(prompts)  # some requests shared a batch
    assert health["largest_batch"] >= 2


# ---------------------------------------------------------------- what is refused


def _post(server: str, path: str, body: object, *, key: str | None = KEY, raw: bytes | None = None):
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(server + path, content=content, headers=headers, timeout=60)


CHAT = {"model": "base", "messages": QUESTION, "max_tokens": 4}
BAD_REQUESTS = {
    "invalid json": ("/chat/completions", None, b"{not json", KEY, 400, None),
    "missing messages": ("/chat/completions", {"model": "base"}, None, KEY, 400, "messages"),
    "empty messages": ("/chat/completions", {**CHAT, "messages": []}, None, KEY, 400, "messages"),
    "bad role": ("/chat/completions", {**CHAT, "messages": [{"role": "robot", "content": "x"}]}, None, KEY, 400, None),
    "unknown model": ("/chat/completions", {**CHAT, "model": "gpt-9"}, None, KEY, 404, "model"),
    "max_tokens over the limit": ("/chat/completions", {**CHAT, "max_tokens": 5000}, None, KEY, 400, "max_tokens"),
    "prompt over the context": (
        "/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": "firewall " * 1500}]},
        None,
        KEY,
        400,
        "messages",
    ),
    "temperature out of range": ("/chat/completions", {**CHAT, "temperature": 3}, None, KEY, 400, "temperature"),
    "n above one": ("/chat/completions", {**CHAT, "n": 2}, None, KEY, 400, "n"),
    "body too large": ("/chat/completions", None, b'{"x": "' + b"a" * 70000 + b'"}', KEY, 413, None),
    "missing api key": ("/chat/completions", CHAT, None, None, 401, None),
    "wrong api key": ("/chat/completions", CHAT, None, "not-the-key", 401, None),
    "token id out of the vocabulary": (
        "/completions",
        {"model": "base", "prompt": [1, 2, 10**6], "max_tokens": 1},
        None,
        KEY,
        400,
        "prompt",
    ),
    "max_tokens 0 without echo": (
        "/completions",
        {"model": "base", "prompt": "hi", "max_tokens": 0},
        None,
        KEY,
        400,
        "max_tokens",
    ),
    "unknown route": ("/embeddings", {"model": "base", "input": "x"}, None, KEY, 404, None),
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_a_bad_request_gets_an_openai_error_and_the_server_keeps_serving(server, client, kind):
    path, body, raw, key, status, param = BAD_REQUESTS[kind]
    response = _post(server, path, body, key=key, raw=raw)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"]
    if param:
        assert error["param"] == param
    assert greedy_chat(client, "base").choices[0].finish_reason in {"stop", "length"}


def test_the_openai_client_sees_typed_errors(client):
    import openai

    with pytest.raises(openai.NotFoundError, match="gpt-9"):
        greedy_chat(client, "gpt-9")
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model="base", messages=QUESTION, max_tokens=10_000)


def test_health_needs_no_key_but_models_does(server):
    root = server.removesuffix("/v1")
    assert httpx.get(root + "/health").json()["status"] == "ok"
    assert httpx.get(server + "/models").status_code == 401


# ---------------------------------------------------------------- what is served


def test_two_base_models_are_refused_in_one_line(tiny_model_dir, tmp_path):
    from sectune.testing.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=3)
    done = subprocess.run(
        [sys.executable, "-m", "sectune", "serve", str(tiny_model_dir), str(other)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "one base model" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_an_adapter_of_another_base_is_refused(tiny_model_dir, adapters, tmp_path):
    from sectune.errors import UserError
    from sectune.serve.engine import plan_targets
    from sectune.testing.tiny import build_tiny_model

    other = build_tiny_model(tmp_path / "other", seed=3)
    with pytest.raises(UserError, match="is not the served base"):
        plan_targets([str(other), str(adapters[0])])
    base, served = plan_targets([str(adapters[0]), str(adapters[1])])  # the base comes from the adapters
    assert base.source == str(tiny_model_dir) and len(served) == 2


def test_one_batch_holds_one_adapter():
    from sectune.serve.engine import Batcher, Job, Sampling

    class Recorder:
        def __init__(self) -> None:
            self.batches: list[list[str]] = []

        def run(self, jobs, join=None) -> None:
            self.batches.append([job.model for job in jobs])

    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=3, wait_ms=200)  # type: ignore[arg-type]
    for name in ["a", "b", "a", "a", "a", "b"]:
        batcher.submit(Job(name, [1], Sampling(max_tokens=1), emit=lambda event: None))
    batcher.start()
    deadline = time.monotonic() + 10
    while sum(map(len, recorder.batches)) < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    batcher.stop()
    assert recorder.batches == [["a", "a", "a"], ["b", "b"], ["a"]]


def test_a_job_that_joins_a_running_decode_gets_its_own_answer(tiny_model_dir, adapters):
    """Continuous batching: rows merged mid-decode (shorter and longer prompts) answer as they would alone."""
    from sectune.serve.engine import Delta, Engine, Finished, Job, Sampling

    engine = Engine.load([f"base={tiny_model_dir}", f"b={adapters[1]}"])
    prompts = {
        "first": engine.text_ids("Firewalls filter network traffic according to rules."),
        "short": engine.text_ids("A VPN"),
        "long": engine.text_ids("Phishing emails trick users into revealing passwords. Backups let you restore"),
    }

    def job(name: str, events: list) -> Job:
        return Job("b", prompts[name], Sampling(max_tokens=10, logprobs=0), emit=events.append)

    def answer(events: list) -> tuple[list[int], list[float], str]:
        tokens = [lp for e in events if isinstance(e, Delta) for lp in e.logprobs]
        assert isinstance(events[-1], Finished)
        return [t.token_id for t in tokens], [t.logprob for t in tokens], events[-1].finish_reason

    alone = {}
    for name in prompts:
        events: list = []
        engine.run([job(name, events)])
        alone[name] = answer(events)
    together = {name: [] for name in prompts}
    steps = []

    def join(running: int) -> list[Job]:
        steps.append(running)
        if len(steps) == 3:
            return [job("short", together["short"]), job("long", together["long"])]
        return []

    engine.run([job("first", together["first"])], join=join)
    assert max(steps) == 3  # the joined rows decoded beside the first
    for name in prompts:
        ids, logprobs, reason = answer(together[name])
        assert ids == alone[name][0] and reason == alone[name][2]
        assert logprobs == pytest.approx(alone[name][1], abs=1e-4)


def test_sectune_chat_streams_from_the_server(server, client, monkeypatch):
    """`sectune chat http://...` against sectune serve: the answer arrives in pieces and equals the plain one."""
    from sectune.config import load_config
    from sectune.serve.chat import ChatSession

    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    session = ChatSession(load_config(None, []), server, model="sec-b", max_new_tokens=12)
    pieces: list[str] = []
    answer = session.ask("What is a firewall?", on_token=pieces.append)
    session.close()
    assert len(pieces) > 1 and "".join(pieces) == answer
    assert answer == greedy_chat(client, "sec-b").choices[0].message.content
