"""User-facing errors: one line naming the file, the field and the fix.

Exit codes of the CLI (defined here once): 2 bad input or config (``UserError``: nothing ran, or a run was
refused); 3 a run that ended with some results but fewer than asked (``IncompleteRunError``); 4 a run that
ended with nothing usable (``NothingUsableError``).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path

EXIT_USER_ERROR = 2
EXIT_INCOMPLETE = 3
EXIT_NOTHING_USABLE = 4


class UserError(Exception):
    """Bad input or config. The CLI prints ``str(err)`` as one line and exits with code 2."""

    exit_code = EXIT_USER_ERROR

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        field: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = str(file) if file is not None else None
        self.field = field
        self.fix = fix
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ": ".join(part for part in (self.file, self.field) if part)
        text = f"{where}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return " ".join(text.split())  # always one line


class IncompleteRunError(UserError):
    """A run ended below its target with some results (e.g. 3 of 5 samples): the CLI exits with code 3.

    The folder is kept (resumable); the message says why (the top rejection or failure reason and its count)
    and the fix names the flag that helps (``--retry-failed`` or ``--resume``).
    """

    exit_code = EXIT_INCOMPLETE


class NothingUsableError(IncompleteRunError):
    """A run ended with no usable result at all (0 samples accepted): the CLI exits with code 4."""

    exit_code = EXIT_NOTHING_USABLE


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def closest_sibling(path: str | Path) -> str | None:
    """The existing folder beside ``path`` (same parent) whose name is closest to its name, written the way
    ``path`` was (``runs/lroa`` → ``runs/lora``); None when the parent is missing or nothing is close."""
    import os

    path = Path(path).expanduser()
    parent = path.parent
    if not path.name or not parent.is_dir():
        return None
    try:
        names = [entry.name for entry in os.scandir(parent) if entry.is_dir() and not entry.name.startswith(".")]
    except OSError:
        return None
    match = difflib.get_close_matches(path.name, names[:10_000], n=1, cutoff=0.6)
    if not match:
        return None
    return (parent / match[0]).as_posix() if str(parent) != "." else match[0]


def unknown_name_error(kind: str, name: str, choices: Iterable[str], *, file: str | Path | None = None) -> UserError:
    """A UserError for an unknown key/model/option, suggesting the closest valid one."""
    choices = sorted(choices)
    suggestion = closest(name, choices)
    fix = f"did you mean '{suggestion}'?" if suggestion else f"valid: {', '.join(choices)}"
    return UserError(f"unknown {kind} '{name}'", file=file, field=name, fix=fix)
