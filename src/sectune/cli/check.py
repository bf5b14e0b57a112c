"""``sectune check``: validate a config and print it resolved, without doing any work."""

from __future__ import annotations

from typing import Annotated

import typer

from sectune.cli.common import ConfigOption, Sets, set_option


def register(app: typer.Typer) -> None:
    """Add the command to the app."""
    app.command("check")(check)


def check(
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("train.max_steps=100")] = None,
) -> None:
    """Validate a config (every key, bound, name and model) and print it resolved as YAML; nothing runs.

    Exit 0 when it is valid, else one line naming the file, the key and the fix (exit 2), as every stage would.
    """
    import yaml

    from sectune.cli.common import load

    cfg = load(config, sets)
    print(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True, width=1000), end="")
