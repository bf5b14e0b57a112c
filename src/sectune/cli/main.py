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

from sectune.cli import bench, check, data, evaluate, generate, info, serve, train, ui

app = typer.Typer(
    name="sectune",
    help="Turn a domain into a fine-tuned assistant: generate → prep → train → evaluate.",
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

for module in (info, check, generate, data, train, evaluate, serve, ui, bench):
    module.register(app)


class ProgressChoice(StrEnum):
    auto = "auto"
    bar = "bar"
    plain = "plain"
    off = "off"


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sectune")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


def _print_version(value: bool) -> None:
    if value:
        print(f"sectune {_version()}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
def _root(
    ctx: typer.Context,
    debug: bool = typer.Option(False, "--debug", help="Show the full traceback on errors."),
    progress: ProgressChoice = typer.Option(
        ProgressChoice.auto,
        "--progress",
        help="How long steps report: auto (a bar on a terminal, plain lines every ~10 s otherwise), bar, plain, off.",
    ),
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    if ctx.invoked_subcommand is None:  # `sectune` alone: the help, exit 0
        print(ctx.get_help())
        raise typer.Exit(0)
    if debug:
        os.environ["SECTUNE_DEBUG"] = "1"
    if progress is not ProgressChoice.auto:
        os.environ["SECTUNE_PROGRESS"] = progress.value
    from sectune.progress import quiet_third_party_bars

    quiet_third_party_bars()  # before transformers or datasets are imported: their bars stay off
    os.environ.setdefault("TQDM_DISABLE", "1")  # any other raw tqdm bar too (read when tqdm is imported)


def _listen_for_interrupts() -> None:
    """Ctrl-C handling even where SIGINT came ignored (a UI started with ``nohup … &``: its jobs inherit that)."""
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)


def main() -> None:
    """Entry point: UserError, a usage error (bad option, missing argument ...) and an OS error on a named path
    → one line on stderr, exit 2; anything unexpected → one line, exit 1 (``--debug``: with the traceback)."""
    from sectune.errors import UserError
    from sectune.progress import INTERRUPTIBLE

    if os.environ.get(INTERRUPTIBLE) == "1":
        _listen_for_interrupts()
    code = None
    try:
        code = app(standalone_mode=False, prog_name="sectune")
    except UserError as exc:
        _user_error(exc)
    except typer.TyperException as exc:  # typer's own click: a usage error (no such option, bad value, ...)
        _usage_error(exc)
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
        _unexpected(exc)
    if isinstance(code, int) and code:  # typer.Exit(code) outside standalone mode comes back as a value
        if code == 130:
            print("interrupted", file=sys.stderr)
        sys.exit(code)


def _usage_error(exc: typer.TyperException) -> None:
    """One line: the problem, the command's usage and where its help is; exit 2."""
    if os.environ.get("SECTUNE_DEBUG"):
        traceback.print_exc()
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError":  # a command that answers no arguments with its help
        print(exc.format_message())
        sys.exit(0)
    message = " ".join(exc.format_message().split()).replace(": Value error, ", ": ")
    ctx = ctx or _context_from_argv()
    usage = " ".join(ctx.get_usage().split()).removeprefix("Usage: ")
    print(f"error: {message} (usage: {usage}; see: {ctx.command_path} --help)", file=sys.stderr)
    sys.exit(2)


def _context_from_argv() -> typer.Context:
    """The command's context for errors the parser raises without one (``--out`` given no value, ...)."""
    import typer.main

    group = typer.main.get_command(app)
    root = typer.Context(group, info_name="sectune")
    commands = getattr(group, "commands", {})
    name = next((arg for arg in sys.argv[1:] if arg in commands), None)
    return typer.Context(commands[name], info_name=name, parent=root) if name else root


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
