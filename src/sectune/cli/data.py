"""CLI commands of the data stage: ``sectune prep`` and ``sectune inspect``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import ConfigOption, OutOption, SetOption

TokenizerOption = Annotated[
    Path | None,
    typer.Option("--tokenizer", help="A local tokenizer folder to render with instead of the model's own (offline)."),
]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("prep")(prep)
    app.command("inspect")(inspect)


def prep(
    input: Annotated[Path, typer.Argument(help="xlsx, CSV/TSV, JSONL/JSON, Parquet or a saved HF dataset folder.")],
    out: OutOption,
    config: ConfigOption = None,
    sets: SetOption = None,
    tokenizer: TokenizerOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
) -> None:
    """Import, validate, de-duplicate, split and render a Q&A file for one model (--set model=KEY)."""
    from sectune.cli.common import console, load
    from sectune.data.api import prepare
    from sectune.runs import read_json

    folder = prepare(load(config, sets), input, out, tokenizer=tokenizer, overwrite=overwrite)
    summary = read_json(folder / "summary.json")
    counts = summary["counts"]
    dedup = summary["dedup"]
    tokens = summary["tokens"]
    console().print(
        f"wrote {folder}: train {counts['train']}, validation {counts['validation']}, test {counts['test']} rows; "
        f"duplicates removed {dedup['exact_duplicates_removed']} exact + {dedup['near_duplicates_removed']} near; "
        f"tokens median {tokens['all'].get('median')}, max {tokens['all'].get('max')}, "
        f"over max_length {tokens['rows_over_max_length_before_policy']} ({tokens['length_policy']})",
        highlight=False,
        soft_wrap=True,
    )


def inspect(
    dataset: Annotated[
        Path, typer.Argument(help="A dataset folder written by `sectune prep`, or one input file (JSONL, xlsx, CSV …).")
    ],
    model: Annotated[str | None, typer.Option("--model", "-m", help="Registry key or model folder.")] = None,
    config: ConfigOption = None,
    sets: SetOption = None,
    tokenizer: TokenizerOption = None,
    split: Annotated[str, typer.Option("--split", help="Which split of a dataset folder.")] = "train",
    rows: Annotated[int, typer.Option("--rows", "-n", help="How many rows to render token by token.")] = 3,
    color: Annotated[
        bool, typer.Option("--color/--no-color", help="Colour trained tokens, or mark them [[ ]].")
    ] = True,
) -> None:
    """Show trained vs masked tokens and check masks, end-of-turn, BOS and lengths (exit 2 on a problem)."""
    from sectune.cli.common import load
    from sectune.data.api import inspect_dataset
    from sectune.data.inspect import print_report

    cfg = load(config, [*(sets or []), *([f"model={model}"] if model else [])])
    report = inspect_dataset(cfg, dataset, tokenizer=tokenizer, split=split, rows_shown=rows)
    print_report(report, color=color)
    if not report.ok:  # SystemExit, not typer.Exit: click swallows Exit's code outside standalone mode
        raise SystemExit(2)
