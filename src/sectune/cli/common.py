"""Options and helpers every stage command shares: --config, --set, --out, error handling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Experiment YAML (see configs/).", show_default=False, metavar="FILE"),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created only on success).", metavar="DIR")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue a killed run in --out.")]


Sets = list[str] | None  # the values of --set: ``sets: Annotated[Sets, set_option("train.lora.r=32")] = None``


SetOption = Annotated[Sets, typer.Option("--set", "-s", help="Dotted override, repeatable.", metavar="KEY=VALUE")]


def set_option(example: str) -> Any:
    """The repeatable ``--set KEY=VALUE`` option, its help showing ``example`` (a key of the command's section)."""
    return typer.Option(
        "--set",
        "-s",
        help=f"Dotted config override, repeatable: --set {example}",
        show_default=False,
        metavar="KEY=VALUE",
    )


def load(config: Path | None, sets: list[str] | None) -> ExperimentConfig:
    """Load the experiment config with the command's overrides, and check every model it names.

    Fails (UserError: file, dotted key, fix) before any data or model is opened.
    """
    from sectune.config import load_config
    from sectune.registry.refs import check_model_refs

    overrides = sets or []
    cfg = load_config(config, overrides)
    return check_model_refs(cfg, source=config or "--set", overrides=overrides)


def console():
    """The CLI's rich console. Off a terminal (a log file, a UI job's log) a printed line stays one line, so
    whoever reads the log line by line (the UI shows its last line) gets it whole; a terminal wraps as usual."""
    from rich.console import Console

    out = Console()
    out.soft_wrap = not out.is_terminal
    return out
