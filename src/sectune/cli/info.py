"""CLI commands about the toolkit itself: models, doctor, demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import Sets, set_option


def register(app: typer.Typer) -> None:
    app.command("models")(models)
    app.command("doctor")(doctor)
    app.command("demo")(demo)


def models() -> None:
    """List the model registry: keys, hub ids, chat families, LoRA targets, defaults."""
    from rich.table import Table

    from sectune.cli.common import console
    from sectune.registry.models import REGISTRY

    table = Table(title="sectune model registry")
    min_width = {"family": max(len(spec.family) for spec in REGISTRY.values())}  # names the template file: never cut
    for column in ("key", "hub id", "family", "params", "LoRA targets", "r/alpha/lr", "notes"):
        table.add_column(column, min_width=min_width.get(column), overflow="fold")  # wrap, never cut with "…"
    for spec in REGISTRY.values():
        d = spec.defaults
        notes = "; ".join(n for n in (spec.note, "gated" if spec.gated else "") if n)
        table.add_row(
            spec.key,
            spec.hub_id,
            spec.family,
            f"{spec.arch.params_b:g}B",
            ",".join(spec.lora_targets),
            f"{d.lora_r}/{d.lora_alpha}/{d.learning_rate:g}",
            notes,
        )
    console().print(table)


def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    measure: Annotated[
        bool, typer.Option("--measure", help="Also time fp32 and bf16 matmuls here (about 2 s).")
    ] = False,
) -> None:
    """What this machine has, which dtypes it runs fast, and what that means for each training method."""
    from sectune.doctor import print_report

    print_report(as_json=as_json, measure=measure)


def demo(
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Folder for every stage's output (a re-run reuses finished stages).", metavar="DIR"
        ),
    ] = Path("demo-out"),
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="YAML merged over the packaged demo experiment.", metavar="FILE"),
    ] = None,
    sets: Annotated[Sets, set_option("train.max_steps=60")] = None,
) -> None:
    """Run the whole pipeline on the embedded model with small sizes (offline, CPU)."""
    from sectune.demo import demo_config, run_demo

    cfg = demo_config(config, sets or [])  # bad config fails before any work starts
    run_demo(cfg, out)
