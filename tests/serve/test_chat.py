"""`sectune chat`: one-shot (--prompt, piped stdin), the interactive loop on a pseudo-terminal, endpoints, runs.

The tiny random model answers greedy with special tokens only (nothing visible), so the local tests sample
(--temperature 1, a fixed seed): the answer is random text, but it is text, and it streams.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

SAMPLE = ["--temperature", "1.0", "--max-new-tokens", "12", "--set", "seed=3", "--set", "eval.dtype=float32"]


def run_cli(*args: str, input: str | None = "") -> subprocess.CompletedProcess:
    """``python -m sectune ARGS`` with stdin piped (``input``), stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "sectune", *args], input=input, capture_output=True, text=True, timeout=240
    )


def test_chat_prompt_on_the_tiny_model_prints_the_answer(tiny_model_dir):
    done = run_cli("chat", str(tiny_model_dir), "--prompt", "What is a firewall?", *SAMPLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() and done.stdout.endswith("\n")


def test_chat_api_streams_a_multi_token_answer(tiny_model_dir):
    from sectune.api import chat
    from sectune.config import load_config

    cfg = load_config(None, ["seed=3", "eval.dtype=float32"])
    pieces: list[str] = []
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a VPN?"}]
    answer = chat(cfg, tiny_model_dir, messages, on_token=pieces.append, temperature=1.0, max_new_tokens=16)
    assert len(pieces) > 1
    assert "".join(pieces).strip() == answer and answer


def test_chat_session_keeps_the_system_prompt_through_reset(tiny_model_dir, tmp_path):
    from sectune.config import load_config
    from sectune.data.jsonl import read_jsonl
    from sectune.serve.chat import ChatSession

    session = ChatSession(load_config(None, []), tiny_model_dir, system="Be brief.", max_new_tokens=4)
    session.ask("hello")
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    session.reset()
    assert session.messages == [{"role": "system", "content": "Be brief."}]
    [row] = read_jsonl(session.save(tmp_path / "chat.jsonl"))
    assert row["messages"] == session.messages and row["meta"]["target"] == str(tiny_model_dir)
    session.close()


def test_chat_prompt_on_a_tiny_train_run(tiny_model_dir, tmp_path):
    from sectune.api import train
    from sectune.config import load_config

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "meta": {}}
        for q, a in [("What is a firewall?", "It filters traffic."), ("What is phishing?", "A fake email.")] * 4
    ]
    (dataset / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    sets = [
        f"model={tiny_model_dir}",
        "seed=7",
        "train.max_steps=2",
        "train.batch_size=4",
        "train.grad_accum=1",
        "train.precision=fp32",
        "train.stop_check.enabled=false",
    ]
    run = train(load_config(None, sets), dataset, tmp_path / "run")
    done = run_cli("chat", str(run), "--prompt", "What is a firewall?", *SAMPLE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()


@pytest.fixture
def fake_endpoint():
    from sectune.testing.fake_openai import FakeOpenAI

    with FakeOpenAI(responder=lambda body: "A VPN encrypts traffic between two endpoints.") as fake:
        yield fake


def test_chat_prompt_against_an_endpoint_prints_the_answer_exactly(fake_endpoint):
    done = run_cli("chat", fake_endpoint.base_url, "--prompt", "What is a VPN?", "--model", "served", "--system", "S")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A VPN encrypts traffic between two endpoints.\n"
    [body] = fake_endpoint.requests
    assert body["model"] == "served" and body.get("temperature") == 0.0
    assert body["messages"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "What is a VPN?"}]


def test_chat_reads_a_piped_question_from_stdin(fake_endpoint):
    done = run_cli("chat", fake_endpoint.base_url, "--set", "eval.endpoint_model=served", input="What is a VPN?\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "A VPN encrypts traffic between two endpoints.\n"
    assert fake_endpoint.requests[0]["messages"][-1] == {"role": "user", "content": "What is a VPN?"}


def test_chat_endpoint_without_a_model_name_is_one_line_exit_2(fake_endpoint):
    done = run_cli("chat", fake_endpoint.base_url, "--prompt", "hi")
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "--model" in done.stderr and len(done.stderr.splitlines()) == 1
    assert not fake_endpoint.requests


def test_chat_endpoint_that_does_not_answer_is_one_line_exit_2():
    done = run_cli("chat", "http://127.0.0.1:9/v1", "--model", "m", "--prompt", "hi")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("error:") and "endpoint" in done.stderr and len(done.stderr.splitlines()) == 1


def test_chat_bad_target_is_one_line_exit_2(tmp_path):
    done = run_cli("chat", str(tmp_path / "no-such-run"), "--prompt", "hi")
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "not found" in done.stderr and len(done.stderr.splitlines()) == 1


def _read_until(fd: int, wanted: str, seen: list[str], timeout: float = 120.0) -> str:
    """Read the pseudo-terminal until ``wanted`` appears after what was seen so far; return the new text."""
    start, buffer = time.monotonic(), ""
    while wanted not in buffer:
        if time.monotonic() - start > timeout:
            raise AssertionError(f"no {wanted!r} in {''.join(seen) + buffer!r}")
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 4096).decode("utf-8", "replace")
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            buffer += chunk
    seen.append(buffer)
    return buffer


def test_chat_interactive_loop_on_a_terminal(tiny_model_dir, tmp_path):
    import pty

    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "dumb", "PYTHONUNBUFFERED": "1"}
    saved = tmp_path / "conversation.jsonl"
    child = subprocess.Popen(
        [sys.executable, "-m", "sectune", "chat", str(tiny_model_dir), "--system", "Be brief.", *SAMPLE],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    seen: list[str] = []
    try:
        _read_until(master, "you> ", seen)
        os.write(master, b"What is a firewall?\n")
        _read_until(master, "you> ", seen)
        os.write(master, b"/reset\n")
        assert "conversation cleared" in _read_until(master, "you> ", seen)
        os.write(master, b"What is phishing?\n")
        _read_until(master, "you> ", seen)
        os.write(master, f"/save {saved}\n".encode())
        assert "saved 3 messages" in _read_until(master, "you> ", seen)
        os.write(master, b"/exit\n")
        assert child.wait(timeout=60) == 0, "".join(seen)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    [row] = [json.loads(line) for line in saved.read_text(encoding="utf-8").splitlines()]
    roles = [m["role"] for m in row["messages"]]
    assert roles == ["system", "user", "assistant"]
    assert row["messages"][0]["content"] == "Be brief." and row["messages"][1]["content"] == "What is phishing?"
    assert row["messages"][2]["content"]  # the sampled answer, whatever it is
    assert row["meta"]["target"] == str(tiny_model_dir) and row["meta"]["source"] == "sectune chat"
    assert "Traceback" not in "".join(seen)


def test_chat_interactive_ends_on_eof(tiny_model_dir):
    import pty

    master, slave = pty.openpty()
    child = subprocess.Popen(
        [sys.executable, "-m", "sectune", "chat", str(tiny_model_dir), "--max-new-tokens", "2"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env={**os.environ, "TERM": "dumb"},
        close_fds=True,
    )
    os.close(slave)
    seen: list[str] = []
    try:
        _read_until(master, "you> ", seen)
        os.write(master, b"\x04")  # Ctrl-D on an empty line: end of input
        assert child.wait(timeout=60) == 0, "".join(seen)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)


def test_chat_is_in_the_api():
    import sectune.api
    from sectune.serve.chat import chat

    assert sectune.api.chat is chat and "chat" in sectune.api.__all__
    assert Path(sectune.api._FUNCTIONS["chat"].replace(".", "/")).name == "chat"
