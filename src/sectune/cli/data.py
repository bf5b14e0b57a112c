"""CLI commands of the data stage: ``sectune prep`` and ``sectune inspect``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

import typer

from sectune.cli.common import ConfigOption, OutOption, Sets, set_option

TokenizerOption = Annotated[
    Path | None,
    typer.Option(
        "--tokenizer",
        help="A local tokenizer folder to render with instead of the model's own (offline).",
        metavar="DIR",
    ),
]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("prep")(prep)
    app.command("inspect")(inspect)


def prep(
    input: Annotated[
        Path, typer.Argument(help="xlsx, CSV/TSV, JSONL/JSON, Parquet or a saved HF dataset folder.", metavar="INPUT")
    ],
    out: OutOption,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("prep.validation_size=0.2")] = None,
    tokenizer: TokenizerOption = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
) -> None:
    """Import, validate, de-duplicate, split and render a Q&A file for one model (--set model=KEY)."""
    from sectune.cli.common import console, load
    from sectune.data.api import prepare
    from sectune.runs import read_json

    with warnings_on_stderr("sectune.data"):
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
        Path,
        typer.Argument(
            help="A dataset folder written by `sectune prep`, or one input file (JSONL, xlsx, CSV …).",
            metavar="DATASET",
        ),
    ],
    model: Annotated[
        str | None, typer.Option("--model", "-m", help="Registry key or model folder.", metavar="MODEL")
    ] = None,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("prep.max_length=2048")] = None,
    tokenizer: TokenizerOption = None,
    split: Annotated[
        Literal["train", "validation", "test"], typer.Option("--split", help="Which split of a dataset folder.")
    ] = "train",
    rows: Annotated[
        int, typer.Option("--rows", "-n", min=0, help="How many rows to render token by token.", metavar="N")
    ] = 3,
    color: Annotated[
        bool, typer.Option("--color/--no-color", help="Colour trained tokens, or mark them [[ ]].")
    ] = True,
) -> None:
    """Show trained vs masked tokens and check masks, end-of-turn, BOS and lengths (exit 2 on a problem)."""
    from sectune.cli.common import load
    from sectune.data.api import inspect_dataset
    from sectune.data.inspect import print_report

    cfg = load(config, sets)
    if model:  # checked like the config's models, the error naming --model
        from sectune.registry.refs import check_model_ref

        check_model_ref(model, file=None, field="--model", runs_ok=False)
        cfg.model = model
    report = inspect_dataset(cfg, dataset, tokenizer=tokenizer, split=split, rows_shown=rows)
    print_report(report, color=color)
    if not report.ok:  # SystemExit, not typer.Exit: click swallows Exit's code outside standalone mode
        raise SystemExit(2)


@contextlib.contextmanager
def warnings_on_stderr(logger_name: str) -> Iterator[None]:
    """While a command runs, its stage's warnings go to stderr once each, as ``warning: ...`` lines."""
    import logging
    import sys

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:  # sys.stderr now, not when the handler was made
            print(f"warning: {record.getMessage()}", file=sys.stderr, flush=True)

    logger = logging.getLogger(logger_name)
    handler, propagate = Handler(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # not a second time through the root logger's handlers
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
