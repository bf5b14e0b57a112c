"""The `sectune` command: a small table from subcommand to API function, no logic.

Each stage's commands live in their own module with a ``register(app)`` function; heavy
imports happen inside the commands so that ``sectune --help`` answers at once.
"""

from __future__ import annotations

import os
import sys
import traceback
from enum import StrEnum

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


class ProgressChoice(StrEnum):
    auto = "auto"
    bar = "bar"
    plain = "plain"
    off = "off"


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
    progress: ProgressChoice = typer.Option(
        ProgressChoice.auto,
        "--progress",
        help="How long steps report: auto (a bar on a terminal, plain lines every ~10 s otherwise), bar, plain, off.",
    ),
) -> None:
    if debug:
        os.environ["SECTUNE_DEBUG"] = "1"
    if progress is not ProgressChoice.auto:
        os.environ["SECTUNE_PROGRESS"] = progress.value
    from sectune.progress import quiet_third_party_bars

    quiet_third_party_bars()  # before transformers or datasets are imported: their bars stay off
    os.environ.setdefault("TQDM_DISABLE", "1")  # any other raw tqdm bar too (read when tqdm is imported)


def main() -> None:
    """Entry point: UserError (and an OS error on a named path) → one line on stderr, exit 2; else exit 1."""
    from sectune.errors import UserError

    try:
        app(standalone_mode=False)
    except UserError as exc:
        _user_error(exc)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", None)
        sys.exit(code if code is not None else getattr(exc, "code", 0))
    except typer.Abort:
        print("aborted", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if not exc.filename:  # not about a path the user gave (a socket, a library): unexpected
            _unexpected(exc)
        from sectune.runs import os_error

        _user_error(os_error(exc))
    except Exception as exc:
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(2)
        _unexpected(exc)


def _user_error(exc: Exception) -> None:
    if os.environ.get("SECTUNE_DEBUG"):
        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(getattr(exc, "exit_code", 2))


def _unexpected(exc: Exception) -> None:
    if os.environ.get("SECTUNE_DEBUG"):
        traceback.print_exc()
    print(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
