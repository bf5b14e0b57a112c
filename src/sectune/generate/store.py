"""The run folder as resume state: append-only JSONL logs written line by line.

``samples.jsonl`` holds accepted samples (canonical rows, ``meta.slot`` names the request that made each),
``requests.jsonl`` one outcome per finished request slot. Each line is sectune's JSONL line
(:func:`sectune.data.jsonl.encode_line`), written whole and flushed (then fsync'd in the background), so a
killed process leaves at most one torn last line, which ``read_jsonl(path, tolerant=True)`` drops (and cuts
off the file).
A sample line is written before its outcome line, so a crash between the two keeps the sample.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.data.jsonl import encode_line
from sectune.runs import INCOMPLETE_MARKER as INCOMPLETE_MARKER  # the run-folder contract's marker

SAMPLES_FILE = "samples.jsonl"
REQUESTS_FILE = "requests.jsonl"


@dataclass
class SlotOutcome:
    """How one request slot ended: one line of ``requests.jsonl`` (the latest line of a slot wins on resume)."""

    slot: str  # "t:k"
    topic: int  # t: index into the run's topics
    k: int  # the topic's variation number
    status: str = ""  # "accepted", "rejected" or "failed" ("" while the slot runs)
    reason: str | None = None  # the rejection reason or error kind; None when accepted
    error: str | None = None  # failed: the error message (200 characters at most)
    cached: bool = True  # every answer of the slot came from the cache
    prompt_tokens: int = 0  # tokens sent and received, uncached requests only
    completion_tokens: int = 0
    cost_usd: float | None = None  # None: the model's price is unknown
    # Errors the session's requests met since its previous line, retried ones included (with several requests in
    # flight not only this slot's): each error is on one line only, so their sum over the file counts the run's
    # errors across sessions, also those of a session killed before its summary.
    errors: dict[str, int] = field(default_factory=dict)
    # rejected: an excerpt of the answer, for summary.json's rejection_examples (in memory only, never a line)
    example: str | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON line, keys in the order runs have always written them (a failure's cost comes last)."""
        row: dict[str, Any] = {
            "slot": self.slot,
            "topic": self.topic,
            "k": self.k,
            "cached": self.cached,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }
        if self.status != "failed":
            row["cost_usd"] = self.cost_usd
        row["status"], row["reason"] = self.status, self.reason
        if self.error is not None:
            row["error"] = self.error
        if self.status == "failed":
            row["cost_usd"] = self.cost_usd
        if self.errors:
            row["errors"] = self.errors
        return row

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> SlotOutcome:
        """An outcome read back on resume; a missing count is 0, a missing ``cached`` means not cached."""
        return cls(
            slot=row["slot"],
            topic=row["topic"],
            k=row["k"],
            status=row["status"],
            reason=row.get("reason"),
            error=row.get("error"),
            cached=bool(row.get("cached", False)),
            prompt_tokens=row.get("prompt_tokens", 0),
            completion_tokens=row.get("completion_tokens", 0),
            cost_usd=row.get("cost_usd"),
            errors={str(kind): int(count) for kind, count in (row.get("errors") or {}).items()},
        )


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
        self._handle.write(encode_line(row))
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
