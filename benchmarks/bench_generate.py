"""Generation throughput against the fake OpenAI-compatible server at a fixed latency.

The ceiling is in-flight ÷ latency (64 requests in flight, 200 ms each → 320 samples/s): the engine's own
overhead (parsing, dedup, fsync'd logs, the cache) shows as the gap to it. Target: ratio ≥ 0.9.

    .venv/bin/python benchmarks/bench_generate.py [--samples 1280] [--latency 0.2] [--in-flight 64]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.generate.conftest's responder

from tests.generate.conftest import sample_responder

from sectune.config import load_config
from sectune.generate.api import generate
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=1280)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--in-flight", type=int, default=64)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, FakeOpenAI(responder=sample_responder, latency=args.latency) as fake:
        topics = Path(tmp) / "topics.jsonl"
        topics.write_text("".join(json.dumps({"path": ["Security", f"Area {i}"]}) + "\n" for i in range(16)))
        sets = {
            "provider": "openai",
            "model": "fake-model",
            "base_url": fake.base_url,
            "num_samples": args.samples,
            "max_in_flight": args.in_flight,
            "topics": {"file": str(topics)},
            "formats": ["jsonl"],
        }
        cfg = load_config(None, [f"generate.{k}={json.dumps(v)}" for k, v in sets.items()])
        start = time.perf_counter()
        run = generate(cfg, Path(tmp) / "run")
        elapsed = time.perf_counter() - start
        summary = read_json(run / "summary.json")

    rate = summary["accepted"] / elapsed
    ceiling = args.in_flight / args.latency
    print(f"samples: {summary['accepted']}/{summary['requested']}  requests: {summary['http_requests_this_session']}")
    print(f"elapsed: {elapsed:.2f} s  rate: {rate:.1f} samples/s  ceiling: {ceiling:.1f} samples/s")
    print(f"ratio to ceiling: {rate / ceiling:.3f}  (target >= 0.9)")


if __name__ == "__main__":
    main()
