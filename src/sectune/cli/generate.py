"""CLI commands of the generate stage: `sectune topics` and `sectune generate`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import ConfigOption, ResumeOption, Sets, console, load, set_option


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("topics")(topics_command)
    app.command("generate")(generate_command)


def topics_command(
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("generate.topics.depth=1")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Topics JSONL to write.")] = Path("topics.jsonl"),
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing topics file.")] = False,
) -> None:
    """Build a topic tree (or graph) from generate.topics.root with the configured provider; write JSONL."""
    from sectune.generate.api import topics

    cfg = load(config, sets)
    path = topics(cfg, out, overwrite=overwrite)
    lines = path.read_text(encoding="utf-8").splitlines()
    console().print(f"wrote {len(lines)} topic lines to {path}")


def generate_command(
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("generate.num_samples=100")] = None,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Run folder, written in place (it is the resume state).")
    ] = Path("runs/generate"),
    resume: ResumeOption = False,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Re-run only the failed or rejected requests of the run in --out.")
    ] = False,
    topics_file: Annotated[
        Path | None,
        typer.Option(
            "--topics", help="Topics JSONL (from `sectune topics`) or a spreadsheet (.xlsx).", show_default=False
        ),
    ] = None,
    focus: Annotated[
        Path | None,
        typer.Option(
            "--focus",
            help="An evaluation folder: more samples for its weakest topics (same as --set generate.focus=DIR).",
            show_default=False,
        ),
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="Same as sectune --progress off.")] = False,
) -> None:
    """Generate Q&A samples into a run folder (samples.jsonl + exports, summary.json).

    The folder is written in place and is its own resume state: a killed run keeps the file INCOMPLETE and
    continues with --resume. With no provider configured, the embedded model runs locally (no key, no network).

    Exit codes: 0 every sample asked for; 2 bad input or config (nothing ran); 3 incomplete (some samples, fewer
    than asked); 4 nothing usable (no sample). On 3 and 4 one line says why and which flag helps:
    --retry-failed redoes failed or rejected requests, --resume continues a run stopped before its end.
    """
    from sectune.generate.api import generate
    from sectune.generate.progress import describe_plan, describe_summary
    from sectune.generate.summary import shortfall_error
    from sectune.runs import read_json

    if no_progress:
        os.environ["SECTUNE_PROGRESS"] = "off"
    cfg = load(config, [*(sets or []), *([f"generate.focus={focus}"] if focus else [])])
    term = console()
    generate(
        cfg,
        out,
        resume=resume,
        retry_failed=retry_failed,
        topics_file=topics_file,
        on_start=lambda plan: term.print(describe_plan(plan)),
    )
    summary = read_json(out / "summary.json")
    term.print(describe_summary(summary, out), markup=False)
    problem = shortfall_error(summary, out)
    if problem is not None:
        raise problem  # one line on stderr, exit 3 (incomplete) or 4 (nothing usable)
