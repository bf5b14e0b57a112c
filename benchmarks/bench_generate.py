"""Generation throughput against the fake OpenAI-compatible server at a fixed latency (sectune.bench.generate).

The ceiling is in-flight ÷ latency (64 requests in flight, 200 ms each → 320 samples/s). Target: ratio ≥ 0.9.
The baseline, measured in the same process, is the bare openai client doing the same calls at the same
concurrency: engine/baseline isolates the engine's own overhead (parsing, dedup, logs, cache) from the machine.
``--peers`` adds deepfabric and bespokelabs-curator on the same server (venvs under --cache), ``--local`` the
local provider against a bare ``model.generate`` loop; ``sectune bench --only generate`` runs all of it.

    .venv/bin/python benchmarks/bench_generate.py [--samples 2560] [--latency 0.2] [--in-flight 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from sectune.bench.generate import Sizes, measure_all
from sectune.bench.runner import default_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=Sizes.samples)
    parser.add_argument("--latency", type=float, default=Sizes.latency)
    parser.add_argument("--in-flight", type=int, default=Sizes.in_flight)
    parser.add_argument("--repeat", type=int, default=Sizes.repeat, help="runs of each; the medians are reported")
    parser.add_argument("--peers", action="store_true", help="also deepfabric and bespokelabs-curator")
    parser.add_argument("--local", action="store_true", help="also the local provider vs bare model.generate")
    parser.add_argument("--cache", type=Path, default=default_cache() / "generate", help="peer venvs")
    args = parser.parse_args()

    sizes = Sizes(
        samples=args.samples,
        latency=args.latency,
        in_flight=args.in_flight,
        repeat=args.repeat,
        peers=args.peers,
        local=args.local,
    )
    print(f"ceiling (in-flight / latency): {sizes.ceiling:.1f} samples/s")
    with tempfile.TemporaryDirectory() as work:
        measures = measure_all(sizes, Path(work), args.cache, say=print)
    for m in measures:
        m = m.with_ratio()
        ratio = f" = {m.ratio:.3f}× {m.baseline}" if m.ratio is not None else ""
        met = {True: "met", False: "NOT met", None: "not judged"}[m.met]
        value = "–" if m.value is None else f"{m.value:.2f}"
        print(f"{m.name}: {value} {m.unit}{ratio} (target {m.target}: {met}) {m.note}")
    print(f"load average: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")


if __name__ == "__main__":
    main()
