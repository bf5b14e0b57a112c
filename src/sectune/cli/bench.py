"""`sectune bench`: sectune against its peers in the same run (src/sectune/bench/, docs/performance.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)


def bench(
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Folder for bench.json and each area's files.", metavar="DIR")
    ] = Path("bench-out"),
    only: Annotated[
        str | None,
        typer.Option("--only", help="Comma-separated areas: startup, generate, eval, train, gpu (default: all)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Smallest sizes that exercise every path (minutes, figures rough).")
    ] = False,
) -> None:
    """Measure sectune against its peers in the same run and print one table of ratios (also OUT/bench.json).

    Peers (trl's defaults, deepfabric, bespokelabs-curator, lm-evaluation-harness) run in their own venvs under
    ~/.cache/sectune/bench (SECTUNE_BENCH_CACHE), installed on first use; the machine is described beside the
    figures. Nothing here is a test: run it on a quiet machine.
    """
    from sectune.bench.runner import parse_areas, print_table, run_bench

    areas = parse_areas(only)
    print_table(run_bench(out, areas=areas, quick=quick))
