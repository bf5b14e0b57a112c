"""Run the bench areas asked for, describe the machine, print one table and write ``bench.json``."""

from __future__ import annotations

import importlib
import os
import platform
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sectune.bench.measure import BenchContext, Measure, log
from sectune.errors import UserError

AREAS = ("startup", "generate", "eval", "train", "gpu")  # cheapest first: a failure late costs the least
RESULT_FILE = "bench.json"


def default_cache() -> Path:
    return Path(os.environ.get("SECTUNE_BENCH_CACHE", Path.home() / ".cache" / "sectune" / "bench"))


def parse_areas(only: str | None) -> tuple[str, ...]:
    """``--only train,eval`` → ("train", "eval") in the table's order; unknown names are a one-line error."""
    if not only:
        return AREAS
    asked = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in asked if name not in AREAS]
    if unknown:
        raise UserError(f"--only: unknown area {', '.join(unknown)}; choose from {', '.join(AREAS)}")
    return tuple(area for area in AREAS if area in asked)


def describe_machine() -> dict[str, Any]:
    """CPU model and the flags that decide speed, cores, the precision sectune picks, and versions."""
    import psutil

    from sectune.hardware import cpu_flags, fast_dtypes
    from sectune.runs import versions

    flags = cpu_flags()
    shown = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
    return {
        "cpu": _cpu_model(),
        "cpu_flags": [flag for flag in shown if flag in flags],
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "precision": fast_dtypes().as_dict(),
        "machine": platform.machine(),
        "versions": versions(),
    }


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_bench(out: Path, *, areas: tuple[str, ...] = AREAS, quick: bool = False, cache: Path | None = None) -> dict:
    """Every area in ``areas`` in turn; an area that fails becomes one row saying so, the others still run."""
    out.mkdir(parents=True, exist_ok=True)
    cache = cache or default_cache()
    started = time.time()
    measures: list[Measure] = []
    for area in areas:
        work = out / area
        work.mkdir(parents=True, exist_ok=True)
        ctx = BenchContext(work=work, cache=cache / area, quick=quick)
        log.info("bench %s …", area)
        measures.extend(_run_area(area, ctx))
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": quick,
        "seconds": round(time.time() - started, 1),
        "machine": describe_machine(),
        "measures": [m.as_dict() for m in measures],
    }
    _write_atomically(out / RESULT_FILE, result)
    return result


def _run_area(area: str, ctx: BenchContext) -> list[Measure]:
    module = importlib.import_module(f"sectune.bench.{area}")
    try:
        return [m.with_ratio() for m in module.run(ctx)]
    except Exception as exc:  # one area's failure is a row of the table, not the end of the bench
        (ctx.work / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return [Measure(area, "(failed)", None, "", note=f"{line} (traceback: {ctx.work / 'error.txt'})")]


def _write_atomically(path: Path, data: Any) -> None:
    import json

    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def print_table(result: dict) -> None:
    """The machine in two lines, then one row per measure: figure, baseline, ratio, target, met."""
    from rich.console import Console
    from rich.table import Table

    machine = result["machine"]
    precision = machine["precision"]
    out = Console()
    out.soft_wrap = not out.is_terminal  # in a log, a line stays one line (as the CLI's console does)
    out.print(
        f"{machine['cpu']} · {machine['cores']} cores · flags {' '.join(machine['cpu_flags']) or 'none'} · "
        f"{machine['memory_gb']} GB · {precision['device']} training in {precision['train_precision']}"
    )
    vers = machine["versions"]
    out.print(" · ".join(f"{k} {vers[k]}" for k in ("python", "torch", "transformers", "trl", "peft") if k in vers))
    table = Table(title=f"sectune bench ({result['date']}{', quick' if result['quick'] else ''})")
    for column in ("area", "measure", "sectune", "baseline", "ratio", "target", "met", "note"):
        keep_whole = column in ("area", "measure", "ratio", "met", "note")  # what a reader scans for: never folded
        table.add_column(column, overflow="fold", no_wrap=keep_whole)
    notes: list[str] = []  # under the table, one line each: a narrow column would fold them beyond reading
    for m in result["measures"]:
        if m["note"]:
            notes.append(m["note"])
        table.add_row(
            m["area"],
            m["name"],
            _figure(m["value"], m["unit"]),
            f"{m['baseline']}: {_figure(m['baseline_value'], m['unit'])}" if m["baseline"] else "",
            f"{m['ratio']:.2f}×" if m["ratio"] is not None else "",
            m["target"],
            {True: "yes", False: "NO", None: "–"}[m["met"]],
            f"[{len(notes)}]" if m["note"] else "",
        )
    out.print(table)
    for number, note in enumerate(notes, 1):
        out.print(f"[{number}] {note}", soft_wrap=True)


def _figure(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return f"{text} {unit}".strip()
