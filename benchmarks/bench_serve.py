"""`sectune serve` throughput: N concurrent clients against the same requests sent one at a time.

Both runs go to one server process (`sectune serve MODEL --port 0`, the embedded model by default) over HTTP
with the official openai client; greedy, the same prompts, a fixed max_tokens. The ratio is concurrent tokens/s
over one-at-a-time tokens/s, measured in the same session on the same machine. Target (issue 18): ≥ 2.5 with
8 clients on the embedded model on CPU.

    .venv/bin/python benchmarks/bench_serve.py [--model smollm2-135m] [--clients 8] [--max-tokens 64]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
import time

import httpx

QUESTIONS = [
    "What is a firewall and how does it protect a network?",
    "Explain how phishing attacks trick users.",
    "How do I reset a forgotten password on a cloud account?",
    "What does multi-factor authentication add to a login?",
    "Why should backups be kept offline against ransomware?",
    "What is the principle of least privilege in IAM?",
    "How does a VPN protect traffic on public Wi-Fi?",
    "What should I do when my router keeps dropping the connection?",
    "How do TLS certificates prove a website's identity?",
    "What is the difference between symmetric and asymmetric encryption?",
    "How can I tell whether an email attachment is safe?",
    "What is a security group in a cloud VPC?",
    "Why do operating system updates matter for security?",
    "What is a zero-day vulnerability?",
    "How do password managers keep passwords safe?",
    "What logs should I keep to investigate an intrusion?",
]


def start(model: str, batch: int) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "sectune", "serve", f"bench={model}", "--port", "0"]
    cmd += ["--set", f"serve.max_batch={batch}", "--set", "serve.dtype=float32"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "SECTUNE_API_KEY": ""})
    assert proc.stdout is not None
    line = proc.stdout.readline()
    url = line.split()[2].rstrip(";")
    for _ in range(600):
        try:
            httpx.get(url.removesuffix("/v1") + "/health", timeout=2)
            return proc, url
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("server did not start")


def ask(client, question: str, max_tokens: int) -> int:
    reply = client.chat.completions.create(
        model="bench", messages=[{"role": "user", "content": question}], max_tokens=max_tokens, temperature=0
    )
    return reply.usage.completion_tokens


def one_at_a_time(client, questions: list[str], max_tokens: int) -> tuple[int, float]:
    started = time.perf_counter()
    tokens = sum(ask(client, q, max_tokens) for q in questions)
    return tokens, time.perf_counter() - started


def concurrent(client, questions: list[str], max_tokens: int, clients: int) -> tuple[int, float]:
    """``clients`` threads, each asking its share of the questions in turn."""
    counts = [0] * clients

    def work(i: int) -> None:
        for question in questions[i::clients]:
            counts[i] += ask(client, question, max_tokens)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts), time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--questions", type=int, default=16)
    args = parser.parse_args()
    from openai import OpenAI

    proc, url = start(args.model, args.clients)
    try:
        client = OpenAI(base_url=url, api_key="none", max_retries=0, timeout=600)
        questions = (QUESTIONS * 4)[: args.questions]
        ask(client, "warm up", 4)
        seq_tokens, seq_s = one_at_a_time(client, questions, args.max_tokens)
        par_tokens, par_s = concurrent(client, questions, args.max_tokens, args.clients)
        health = httpx.get(url.removesuffix("/v1") + "/health").json()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    seq_rate, par_rate = seq_tokens / seq_s, par_tokens / par_s
    print(f"model {args.model}, {len(questions)} requests, max_tokens {args.max_tokens}, torch threads default")
    print(f"one at a time : {seq_tokens} tokens in {seq_s:.1f} s = {seq_rate:.1f} tokens/s")
    print(f"{args.clients} clients     : {par_tokens} tokens in {par_s:.1f} s = {par_rate:.1f} tokens/s")
    print(f"largest batch {health['largest_batch']}, batches {health['batches']}")
    print(f"ratio {par_rate / seq_rate:.2f} (target >= 2.5)")


if __name__ == "__main__":
    main()
