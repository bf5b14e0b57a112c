"""Generation throughput against the fake OpenAI-compatible server at a fixed latency.

The ceiling is in-flight ÷ latency (64 requests in flight, 200 ms each → 320 samples/s). Target: ratio ≥ 0.9.
The baseline, measured in the same process, is the bare openai client doing the same calls at the same
concurrency: engine/baseline isolates the engine's own overhead (parsing, dedup, logs, cache) from the machine.

    .venv/bin/python benchmarks/bench_generate.py [--samples 2560] [--latency 0.2] [--in-flight 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "generate"))  # the tests' helpers

from generate_helpers import parse_request

from sectune.config import load_config
from sectune.generate.api import generate
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def bench_responder(body: dict) -> str:
    """Valid, unique samples (hex words never repeat between variations: no near-duplicate rejections)."""
    import hashlib

    topic, variation = parse_request(body)
    words = [hashlib.sha256(f"{topic}|{variation}|{i}".encode()).hexdigest()[:8] for i in range(40)]
    return json.dumps({"question": f"How do I handle {' '.join(words[:8])}?", "answer": " ".join(words[8:])})


def serve(latency: float, ports: mp.Queue, stop: mp.Event) -> None:
    """The fake server in its own process, so its threads do not share the engine's GIL (like a real server)."""
    with FakeOpenAI(responder=bench_responder, latency=latency) as fake:
        ports.put(fake.base_url)
        stop.wait()


async def raw_client_rate(base_url: str, samples: int, in_flight: int) -> float:
    """Baseline: the same number of bare provider calls at the same concurrency, no engine around them."""
    from sectune.llm import get_provider

    provider = get_provider("openai", model="fake-model", base_url=base_url)
    semaphore = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with semaphore:
            await provider.complete([{"role": "user", "content": f"Topic: raw\nVariation: {i}"}], max_tokens=512)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(samples)))
    elapsed = time.perf_counter() - start
    await provider.aclose()
    return samples / elapsed


def warm_up() -> None:
    """Import what a run imports (openai, datasketch: seconds on a busy 2-core machine) before timing."""
    import datasketch.lsh  # noqa: F401
    import openai  # noqa: F401

    from sectune.generate.engine import Engine  # noqa: F401


def engine_run(base_url: str, args: argparse.Namespace, folder: Path) -> tuple[float, float, dict]:
    """One generate run: (samples/s, CPU ms per sample, summary)."""
    topics = folder / "topics.jsonl"
    topics.write_text("".join(json.dumps({"path": ["Security", f"Area {i}"]}) + "\n" for i in range(16)))
    sets = {
        "provider": "openai",
        "model": "fake-model",
        "base_url": base_url,
        "num_samples": args.samples,
        "max_in_flight": args.in_flight,
        "topics": {"file": str(topics)},
        "formats": ["jsonl"],
    }
    cfg = load_config(None, [f"generate.{k}={json.dumps(v)}" for k, v in sets.items()])
    start, cpu_start = time.perf_counter(), time.process_time()
    run = generate(cfg, folder / "run")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    summary = read_json(run / "summary.json")
    return summary["accepted"] / elapsed, 1000 * cpu / max(1, summary["accepted"]), summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2560)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3, help="runs of each; the medians are reported")
    args = parser.parse_args()

    warm_up()
    ports: mp.Queue = mp.Queue()
    stop = mp.Event()
    server = mp.Process(target=serve, args=(args.latency, ports, stop), daemon=True)
    server.start()
    base_url = ports.get(timeout=60)
    ceiling = args.in_flight / args.latency
    rates, cpus, raw_rates = [], [], []
    for repeat in range(args.repeat):  # engine and baseline alternate, so a noisy neighbour hits both
        with tempfile.TemporaryDirectory() as tmp:
            rate, cpu_ms, summary = engine_run(base_url, args, Path(tmp))
        raw_rate = asyncio.run(raw_client_rate(base_url, args.samples, args.in_flight))
        rates.append(rate)
        cpus.append(cpu_ms)
        raw_rates.append(raw_rate)
        print(
            f"run {repeat + 1}: {summary['accepted']}/{summary['requested']} samples, "
            f"{summary['http_requests_this_session']} requests, {rate:.1f} samples/s = {rate / ceiling:.3f} of the "
            f"ceiling; bare client {raw_rate:.1f}/s; engine CPU {cpu_ms:.2f} ms per sample"
        )
    stop.set()
    server.join(timeout=10)

    rate, raw_rate, cpu_ms = statistics.median(rates), statistics.median(raw_rates), statistics.median(cpus)
    print(f"ceiling (in-flight / latency): {ceiling:.1f} samples/s; medians of {args.repeat} runs:")
    print(f"ratio to ceiling: {rate / ceiling:.3f}  (target >= 0.9)")
    print(
        f"baseline (bare client calls, same concurrency): {raw_rate / ceiling:.3f} of the ceiling"
        f" -> engine/baseline {rate / raw_rate:.3f}"
    )
    # The engine is one Python process: on a busy machine its CPU share, not the design, caps the rate.
    print(f"engine CPU: {cpu_ms:.2f} ms per sample -> one free core sustains ~{1000 / cpu_ms:.0f}/s")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
