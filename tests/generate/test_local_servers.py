"""Slow local servers (issue 24 point 3): the fake server made to behave like a one-slot llama.cpp server.

One generation at a time (the others queued), a delay per answer token, a request cancelled when its client
hangs up, and ``/props`` reporting ``total_slots: 1``. sectune caps its requests in flight at the slots such a
server reports, and stops with a one-line hint when every request times out instead of retrying on.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import urllib.request

import pytest
from generate_helpers import make_config, sample_responder

from sectune.cli.main import main
from sectune.errors import EXIT_USER_ERROR, UserError
from sectune.generate.api import generate
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI

SLOW = 0.05  # s per answer token: a sample answer (~45 tokens) takes ~2 s, far over the 0.3 s timeouts below


def _get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as answer:
        return json.loads(answer.read())


def test_the_fake_one_slot_server_queues_and_cancels_requests_whose_client_left():
    import openai

    async def three_at_once(base_url: str, fake: FakeOpenAI) -> list:  # the bare client: sectune caps at one slot
        # The first holds the slot for 1 s; the two queued behind it give up at 0.3 s, while it still generates
        # (timed out together, a queued one could take the freed slot before its own hang-up reached the server).
        async with openai.AsyncOpenAI(base_url=base_url, api_key="k", max_retries=0) as client:
            messages = [{"role": "user", "content": "hi"}]
            first = asyncio.ensure_future(client.chat.completions.create(model="m", messages=messages, timeout=1.0))
            await _until(lambda: fake.generating == 1)
            queued = (client.chat.completions.create(model="m", messages=messages, timeout=0.3) for _ in range(2))
            return await asyncio.gather(first, *queued, return_exceptions=True)

    with FakeOpenAI(responder=lambda body: "word " * 40, slots=1, token_delay=SLOW) as fake:
        root = fake.base_url.removesuffix("/v1")
        assert _get(f"{root}/props")["total_slots"] == 1
        assert _get(f"{root}/slots") == [{"id": 0, "is_processing": False}]
        results = asyncio.run(three_at_once(fake.base_url, fake))
        all_cancelled = asyncio.run(_until(lambda: fake.generations_cancelled == 3))
    assert all(isinstance(r, openai.APITimeoutError) for r in results)
    assert fake.max_in_flight == 3  # all three reached the server ...
    assert fake.max_generating == 1 and fake.generations_started == 1  # ... one generated, two queued
    assert all_cancelled and fake.generations_finished == 0 and fake.completed == 0  # cancelled on hang-up


async def _until(condition, seconds: float = 5.0) -> bool:
    for _ in range(int(seconds / 0.01)):
        if condition():
            return True
        await asyncio.sleep(0.01)
    return condition()


def test_requests_in_flight_are_capped_at_the_slots_the_local_server_reports(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="sectune.llm.requests")
    with FakeOpenAI(responder=sample_responder, slots=1, token_delay=0.001) as fake:
        cfg = make_config(fake.base_url, num_samples=6, max_in_flight=8, timeout_s=5, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")
    assert read_json(run / "summary.json")["accepted"] == 6
    assert fake.max_in_flight == 1  # never a second request queued behind the one being generated
    assert fake.generations_cancelled == 0
    notices = [r.getMessage() for r in caplog.records if "slot" in r.getMessage()]
    assert notices == ["the server reports 1 slot: sending at most 1 request at once (max_in_flight 8)"]


# slots=1: capped at 1 in flight, the storm is 4 timeouts in a row; no /props (Ollama): 4 in flight, 8 in a row
# (and the 3 others in flight when the 8th timed out).
@pytest.mark.parametrize(("slots", "in_flight", "most_sent"), [(1, 4, 4), (None, 4, 8 + 3)])
def test_a_timeout_storm_stops_the_run_with_a_hint(tmp_path, slots, in_flight, most_sent):
    from sectune.llm.requests import TimeoutStormError

    # Every answer takes ~2 s and the client waits 0.3 s: each request times out, is retried, times out again.
    with FakeOpenAI(responder=sample_responder, slots=slots, token_delay=SLOW) as fake:
        cfg = make_config(
            fake.base_url, num_samples=4, max_in_flight=in_flight, timeout_s=0.3, max_retries=5, topics={"depth": 0}
        )
        with pytest.raises(TimeoutStormError) as caught:
            generate(cfg, tmp_path / "run")
        sent = len(fake.requests)
    error = caught.value
    assert isinstance(error, UserError) and error.exit_code == EXIT_USER_ERROR
    text = str(error)
    assert "\n" not in text and "max_in_flight" in text and "timeout_s" in text and "timed out" in text
    # A window of timeouts (2 rounds of what is in flight, at least 4), then nothing more goes out.
    assert most_sent - 3 <= sent <= most_sent
    assert (tmp_path / "run" / "INCOMPLETE").is_file()  # resumable with better settings


def test_the_cli_exits_2_with_the_hint_on_a_timeout_storm(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SECTUNE_PROGRESS", "off")
    with FakeOpenAI(responder=sample_responder, slots=1, token_delay=SLOW) as fake:
        settings = {
            "provider": "openai", "model": "m", "base_url": fake.base_url, "timeout_s": 0.3, "max_retries": 5,
            "backoff_initial_s": 0.01, "backoff_max_s": 0.05, "num_samples": 4, "topics": {"depth": 0},
            "formats": ["jsonl"],
        }  # fmt: skip
        args = [arg for key, value in settings.items() for arg in ("--set", f"generate.{key}={json.dumps(value)}")]
        monkeypatch.setattr(sys, "argv", ["sectune", "generate", "--out", str(tmp_path / "run"), *args])
        with pytest.raises(SystemExit) as exited:
            main()
    assert exited.value.code == EXIT_USER_ERROR
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "max_in_flight" in last and "timeout_s" in last
