"""Options and helpers every stage command shares: --config, --set, --out, error handling."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="Experiment YAML (see configs/).", show_default=False)
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Dotted override, repeatable: --set train.lora.r=32", show_default=False),
]
OutOption = Annotated[Path, typer.Option("--out", "-o", help="Output folder (created only on success).")]
ResumeOption = Annotated[bool, typer.Option("--resume", help="Continue a killed run in --out.")]


def load(config: Path | None, sets: list[str] | None) -> ExperimentConfig:
    """Load the experiment config with the command's overrides."""
    from sectune.config import load_config

    return load_config(config, sets or [])


def console():
    from rich.console import Console

    return Console()
