"""The response cache: one sqlite row per answer, keyed by a hash of everything that shaped it.

The key covers (provider, model, messages, temperature, seed, output schema) and deliberately NOT the limits
(max_tokens, timeout, retries): an answer that finished normally is the same answer under a larger limit.
Only answers with ``finish_reason == "stop"`` are stored, so a cut-off answer is asked again next time.
WAL mode: every put is committed at once, and a killed process loses nothing already committed.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from sectune.llm.base import Completion

CACHE_FILE = "cache.sqlite"


def cache_key(*, provider: str, model: str, messages: list[dict[str, str]], params: dict[str, Any]) -> str:
    """sha256 over what shapes an answer; ``params`` must hold only content-shaping settings."""
    payload = {"provider": provider, "model": model, "messages": messages, "params": params}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class ResponseCache:
    """A small crash-safe key → Completion store."""

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / CACHE_FILE
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT, finish_reason TEXT,"
            " prompt_tokens INTEGER, completion_tokens INTEGER)"
        )

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens FROM responses WHERE key = ?", (key,)
            ).fetchone()
        return Completion(*row) if row else None

    def put(self, key: str, completion: Completion) -> bool:
        """Store a normally finished answer; returns False (nothing stored) for any other finish reason."""
        if completion.finish_reason != "stop":
            return False
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
                (
                    key,
                    completion.text,
                    completion.finish_reason,
                    completion.prompt_tokens,
                    completion.completion_tokens,
                ),
            )
        return True

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
