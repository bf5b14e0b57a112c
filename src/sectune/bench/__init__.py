"""`sectune bench`: sectune measured against its peers in the same run, as one table of ratios.

Each area (``startup``, ``train``, ``generate``, ``eval``, ``gpu``) is a module of this package with a
``run(ctx) -> list[Measure]``; the runner (``runner.py``) describes the machine, runs the areas asked for,
prints the table and writes it as JSON. No benchmark is a test: the suite only checks that the harness works.
"""

from __future__ import annotations

from sectune.bench.measure import BenchContext, Measure

__all__ = ["BenchContext", "Measure"]
