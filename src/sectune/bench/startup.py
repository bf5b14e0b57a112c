"""Start-up: how long ``sectune --help`` takes, and that ``import sectune.api`` leaves torch unimported.

Baseline: a bare ``python -c pass`` of the same interpreter, so the ratio says what sectune adds.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

from sectune.bench.measure import BenchContext, Measure

HELP_LIMIT_S = 0.5


def _seconds(argv: list[str], repeats: int) -> float:
    """Median wall time of ``argv`` over ``repeats`` runs, after one warm-up (disk cache, .pyc files)."""
    subprocess.run(argv, check=True, capture_output=True)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _sectune_command() -> list[str]:
    script = Path(sys.executable).with_name("sectune")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "sectune"]


def run(ctx: BenchContext) -> list[Measure]:
    repeats = 3 if ctx.quick else 7
    ctx.say(f"startup: sectune --help and import sectune.api, median of {repeats}")
    bare = _seconds([sys.executable, "-c", "pass"], repeats)
    help_s = _seconds([*_sectune_command(), "--help"], repeats)
    heavy_modules = "('torch', 'transformers', 'datasets')"
    probe = f"import sys, sectune.api; print(sorted(m for m in {heavy_modules} if m in sys.modules))"
    heavy = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    import_s = _seconds([sys.executable, "-c", "import sectune.api"], repeats)
    return [
        Measure(
            "startup",
            "sectune --help",
            help_s,
            "s",
            baseline="python -c pass",
            baseline_value=bare,
            target=f"< {HELP_LIMIT_S} s",
            met=help_s < HELP_LIMIT_S,
        ),
        Measure(
            "startup",
            "import sectune.api",
            import_s,
            "s",
            baseline="python -c pass",
            baseline_value=bare,
            target="imports no torch",
            met=heavy == "[]",
            note="heavy modules imported: " + heavy if heavy != "[]" else "",
        ),
    ]
