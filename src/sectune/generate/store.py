"""The run folder as resume state: append-only JSONL logs written line by line.

``samples.jsonl`` holds accepted samples (canonical rows, ``meta.slot`` names the request that made each),
``requests.jsonl`` one outcome per finished request slot. Each line is written whole, flushed and fsync'd, so
a killed process leaves at most one torn last line, which :func:`read_jsonl_tolerant` drops (and truncates).
A sample line is written before its outcome line, so a crash between the two keeps the sample.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
REQUESTS_FILE = "requests.jsonl"
INCOMPLETE_MARKER = "INCOMPLETE"


class AppendLog:
    """An fsync'd JSONL append log."""

    def __init__(self, path: Path, *, fsync: bool = True):
        self.path = path
        self.fsync = fsync
        self._handle = path.open("a", encoding="utf-8")

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        if self.fsync:
            os.fsync(self._handle.fileno())

    def close(self) -> None:
        self._handle.close()


def read_jsonl_tolerant(path: Path, *, repair: bool = True) -> list[dict[str, Any]]:
    """Rows of a JSONL log; a torn (unterminated or unparsable) LAST line is dropped and cut off the file."""
    if not path.is_file():
        return []
    data = path.read_bytes()
    rows: list[dict[str, Any]] = []
    good_end = 0
    position = 0
    for line in data.splitlines(keepends=True):
        position += len(line)
        if not line.endswith(b"\n"):
            break  # torn: the process died mid-write
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                if position == len(data):
                    break  # a garbled last line is the same case
                raise
        good_end = position
    if repair and good_end < len(data):
        with path.open("r+b") as handle:
            handle.truncate(good_end)
    return rows
