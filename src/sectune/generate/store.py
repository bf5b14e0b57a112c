"""The run folder as resume state: append-only JSONL logs written line by line.

``samples.jsonl`` holds accepted samples (canonical rows, ``meta.slot`` names the request that made each),
``requests.jsonl`` one outcome per finished request slot. Each line is written whole and flushed (then
fsync'd in the background), so a killed process leaves at most one torn last line, which
:func:`read_jsonl_tolerant` drops (and truncates).
A sample line is written before its outcome line, so a crash between the two keeps the sample.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from pathlib import Path
from typing import Any

SAMPLES_FILE = "samples.jsonl"
REQUESTS_FILE = "requests.jsonl"
INCOMPLETE_MARKER = "INCOMPLETE"


class AppendLog:
    """A JSONL append log: each line written whole and flushed to the OS at once (a killed process loses
    nothing written), and fsync'd to disk by a background thread at most ``fsync_interval_s`` later (group
    commit: an fsync per line would cost ~5 ms on the event loop each, capping throughput), and on close."""

    def __init__(self, path: Path, *, fsync_interval_s: float = 0.2):
        self.path = path
        self.fsync_interval_s = fsync_interval_s
        self._handle = path.open("a", encoding="utf-8")
        self._dirty = threading.Event()
        self._closing = threading.Event()
        self._syncer = threading.Thread(target=self._sync_loop, name=f"fsync-{path.name}", daemon=True)
        self._syncer.start()

    def append(self, row: dict[str, Any]) -> None:
        self._handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        self._handle.flush()
        self._dirty.set()

    def _sync_loop(self) -> None:
        while not self._closing.is_set():
            if self._dirty.wait(timeout=self.fsync_interval_s):
                self._dirty.clear()
                with contextlib.suppress(OSError, ValueError):  # closed meanwhile: close() syncs itself
                    os.fsync(self._handle.fileno())
                self._closing.wait(self.fsync_interval_s)

    def close(self) -> None:
        self._closing.set()
        self._dirty.set()
        self._syncer.join()
        self._handle.flush()
        os.fsync(self._handle.fileno())
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
