"""The `sectune` command: a small table from subcommand to API function, no logic.

Each stage's commands live in their own module with a ``register(app)`` function; heavy
imports happen inside the commands so that ``sectune --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback

import typer

from sectune.cli import data, evaluate, generate, info, train

app = typer.Typer(
    name="sectune",
    help="Turn a domain into a fine-tuned assistant: generate → prep → train → evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (info, generate, data, train, evaluate):
    module.register(app)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
) -> None:
    if debug:
        os.environ["SECTUNE_DEBUG"] = "1"


def main() -> None:
    """Entry point: UserError → one line on stderr, exit 2; anything else → exit 1."""
    from sectune.errors import UserError

    try:
        app(standalone_mode=False)
    except UserError as exc:
        if os.environ.get("SECTUNE_DEBUG"):
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        sys.exit(code if code is not None else getattr(exc, "code", 0))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        if os.environ.get("SECTUNE_DEBUG"):
            traceback.print_exc()
        print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
