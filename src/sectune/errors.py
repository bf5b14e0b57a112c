"""User-facing errors: one line naming the file, the field and the fix; exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """Bad input or config. The CLI prints ``str(err)`` as one line and exits with code 2."""

    exit_code = 2

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


def closest(name: str, choices: Iterable[str]) -> str | None:
    """The closest valid name to ``name``, or None when nothing is close."""
    matches = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.5)
    return matches[0] if matches else None


def unknown_name_error(kind: str, name: str, choices: Iterable[str], *, file: str | Path | None = None) -> UserError:
    """A UserError for an unknown key/model/option, suggesting the closest valid one."""
    choices = sorted(choices)
    suggestion = closest(name, choices)
    fix = f"did you mean '{suggestion}'?" if suggestion else f"valid: {', '.join(choices)}"
    return UserError(f"unknown {kind} '{name}'", file=file, field=name, fix=fix)
