"""The one JSONL format sectune writes and reads: one JSON value per line, UTF-8, non-ASCII kept as is.

Every stage writes its line files with :func:`write_jsonl` (atomically: a temporary sibling renamed into place)
and reads them with :func:`read_jsonl` or :func:`iter_jsonl`; generate's append-only logs encode each line
with :func:`encode_line`. ``tolerant=True`` is for those logs: a process killed mid-write leaves at most one
torn last line, which is dropped and cut off the file so the next append starts on a clean line.

Lines break at ``\\n``, ``\\r\\n`` or ``\\r`` only, never at U+2028, U+2029 or U+0085: ``json.dumps(...,
ensure_ascii=False)`` leaves those raw inside strings, and ``str.splitlines()`` would cut such a row in two.
Blank lines are skipped; a UTF-8 byte order mark before the first line is ignored.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from sectune.errors import UserError

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_BOM = "\ufeff"


class JsonlError(UserError):
    """A line that is not JSON (or not UTF-8): ``line`` is its 1-based number, ``msg`` json's reason."""

    def __init__(self, path: str | Path | None, line: int, msg: str) -> None:
        self.path = path
        self.line = line
        self.msg = msg
        super().__init__(f"line {line}: not valid JSON ({msg})", file=path, fix="one JSON object per line")


def encode_line(row: Any, *, default: Callable[[Any], Any] | None = None) -> str:
    """One JSONL line, newline included: ``json.dumps(row, ensure_ascii=False)``; ``default=str`` turns
    values JSON does not know (dates in a row's meta) into text."""
    return json.dumps(row, ensure_ascii=False, default=default) + "\n"


def write_jsonl(path: str | Path, rows: Iterable[Any], *, default: Callable[[Any], Any] | None = None) -> Path:
    """Write ``rows`` one per line (:func:`encode_line`) to a temporary sibling, then rename it to ``path``:
    a reader never sees half a file, and a failure leaves the old file (or none)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("w", encoding="utf-8", newline="\n") as handle:
            for row in rows:
                handle.write(encode_line(row, default=default))
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line, read as it goes; a bad line raises :class:`JsonlError`."""
    path = Path(path)
    number = 0
    with path.open("rb") as handle:
        for chunk in handle:  # binary lines end at b"\n" only; splitlines() then also breaks at a lone \r
            for raw in chunk.splitlines():
                number += 1
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise JsonlError(path, number, f"not UTF-8 at byte {exc.start}") from None
                if number == 1:
                    line = line.removeprefix(_BOM)
                if line.strip():
                    yield number, _loads(line, path, number)


def iter_jsonl_text(text: str, path: str | Path | None = None) -> Iterator[tuple[int, Any]]:
    """:func:`iter_jsonl` over text already read (``path`` only names the file in errors)."""
    for number, line in enumerate(_LINE_BREAK.split(text.removeprefix(_BOM)), start=1):
        if line.strip():
            yield number, _loads(line, path, number)


def read_jsonl(path: str | Path, *, tolerant: bool = False) -> list[Any]:
    """Every value of a JSONL file, in order.

    ``tolerant``: the file is an append log (generate's resume state). A missing file is an empty log, and a
    torn last line (unterminated or unparsable: the process died mid-write) is dropped and cut off the file.
    A bad line anywhere else still raises :class:`JsonlError`.
    """
    if not tolerant:
        return [value for _, value in iter_jsonl(path)]
    path = Path(path)
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows: list[Any] = []
    good_end = 0
    position = 0
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        position += len(line)
        if not line.endswith(b"\n"):
            break  # torn: the process died mid-write
        try:
            text = line.decode("utf-8")
            if text.strip():
                rows.append(json.loads(text))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
            if position == len(data):
                break  # a garbled last line is the same case
            raise JsonlError(path, number, getattr(exc, "msg", None) or str(exc)) from None
        good_end = position
    if good_end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return rows


def _loads(line: str, path: str | Path | None, number: int) -> Any:
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise JsonlError(path, number, exc.msg) from None
