"""Every problem of an input file, each with its row: what prep would refuse, listed all at once.

``prepare`` stops at the first bad row (one line, exit 2). Before a long run a person wants the whole list, so
this reads the file once and runs prep's own conversion and validation row by row, collecting each row's first
problem instead of raising it. The checks are prep's (``rows.to_canonical``, ``validate.check_row``): nothing
here decides on its own what a bad row is.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sectune.config.prep import PrepConfig
from sectune.data.io import read_input
from sectune.data.rows import to_canonical
from sectune.data.split import normalise_rows
from sectune.data.validate import check_row
from sectune.errors import UserError

MAX_PROBLEMS = 500  # enough to show; a file broken on every row says so in its first lines


def input_problems(path: str | Path, cfg: PrepConfig, *, limit: int = MAX_PROBLEMS) -> list[str]:
    """One line per bad row of ``path`` (file, row, field, fix), or the one error that stops reading it."""
    path = Path(path)
    try:
        raw = read_input(path, cfg)
    except UserError as exc:
        return [str(exc)]
    problems: list[str] = []
    first_ok = True
    for index, record in enumerate(raw.records):
        # after the first row, each row goes with it: prep's "differs from the first row's format" check needs it
        batch = [record] if index == 0 or not first_ok else [raw.records[0], record]
        try:
            row = to_canonical(dataclasses.replace(raw, records=batch), cfg)[-1]
            normalise_rows([row])
            check_row(row, cfg, path)
        except UserError as exc:
            problems.append(str(exc))
            first_ok = first_ok and index > 0
            if len(problems) >= limit:
                break
    return problems
