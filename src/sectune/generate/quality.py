"""Quality gates for generated samples: filters (length, refusals, empty turns) and deduplication.

Exact duplicates are caught on the normalised question; near duplicates of question + answer by the one
definition in :mod:`sectune.data.dedup` (MinHash LSH over byte 5-grams, as prep uses), so each check costs
about the same however many samples exist.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.config.generate import QualityConfig
from sectune.data.dedup import NUM_PERM, NearDuplicateIndex, normalise, signature
from sectune.data.jsonl import JsonlError, iter_jsonl
from sectune.errors import UserError

REFUSAL = re.compile(
    r"^\W*(i'?m sorry,? but|i am sorry,? but|i can(?:no|')t (?:help|assist|provide|answer)|i'?m (?:not able|unable) to"
    r"|i am (?:not able|unable) to|as an ai(?: language model)?,? i)",
    re.IGNORECASE,
)


def filter_reason(question: str, answer: str, quality: QualityConfig) -> str | None:
    """The rejection reason of a parsed sample, or None when it passes the filters."""
    if not question.strip() or not answer.strip():
        return "empty_turn"
    if len(question.strip()) < quality.min_question_chars or len(answer.strip()) < quality.min_answer_chars:
        return "too_short"
    if len(answer) > quality.max_answer_chars:
        return "too_long"
    if quality.reject_refusals and REFUSAL.search(answer[:300]):
        return "refusal"
    return None


@dataclass(frozen=True)
class Fingerprint:
    """What deduplication needs of one sample, computed once: the exact key and the MinHash."""

    exact: str  # digest of the normalised question
    minhash: Any  # datasketch MinHash of question + answer


class Deduplicator:
    """Exact (normalised question) and near-duplicate (MinHash LSH) detection over accepted samples."""

    def __init__(self, threshold: float = 0.8, num_perm: int = NUM_PERM):
        self.num_perm = num_perm
        self._near = NearDuplicateIndex(threshold, num_perm)
        self._exact: set[str] = set()

    def fingerprint(self, question: str, answer: str) -> Fingerprint:
        """Computed once per sample (the engine checks, and later adds, the same fingerprint)."""
        exact = hashlib.sha1(normalise(question).encode()).hexdigest()
        return Fingerprint(exact, signature(f"{question} {answer}", self.num_perm))

    def check(self, fingerprint: Fingerprint) -> str | None:
        """ "duplicate", "near_duplicate" or None (not added: call :meth:`add` once accepted)."""
        if fingerprint.exact in self._exact:
            return "duplicate"
        if self._near.query(fingerprint.minhash):
            return "near_duplicate"
        return None

    def add(self, fingerprint: Fingerprint) -> None:
        self._exact.add(fingerprint.exact)
        self._near.add(len(self._near), fingerprint.minhash)

    def add_pair(self, question: str, answer: str) -> None:
        self.add(self.fingerprint(question, answer))

    def check_and_add(self, fingerprint: Fingerprint) -> str | None:
        reason = self.check(fingerprint)
        if reason is None:
            self.add(fingerprint)
        return reason

    def __len__(self) -> int:
        return len(self._near)


def first_pair(row: dict) -> tuple[str, str] | None:
    """(first user turn, first assistant turn) of a canonical row, or None."""
    messages = row.get("messages") or []
    user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), None)
    assistant = next((m.get("content") or "" for m in messages if m.get("role") == "assistant"), None)
    return (user, assistant) if user is not None and assistant is not None else None


def load_existing(paths: Iterable[str | Path]) -> list[tuple[str, str]]:
    """Question/answer pairs of existing canonical JSONL datasets (files or dataset folders)."""
    pairs: list[tuple[str, str]] = []
    for path in map(Path, paths):
        files = sorted(path.glob("*.jsonl")) if path.is_dir() else [path]
        if not files or not all(f.is_file() for f in files):
            raise UserError(
                "existing dataset not found",
                file=path,
                field="generate.quality.against",
                fix="give a JSONL file or a dataset folder",
            )
        for file in files:
            try:
                rows = list(iter_jsonl(file))
            except JsonlError as exc:
                raise _not_a_row(file, exc.line) from None
            for number, row in rows:
                try:
                    pair = first_pair(row)
                except AttributeError:
                    raise _not_a_row(file, number) from None
                if pair:
                    pairs.append(pair)
    return pairs


def _not_a_row(file: Path, number: int) -> UserError:
    return UserError(
        f"line {number} is not a JSON row",
        file=file,
        field="generate.quality.against",
        fix="give canonical messages JSONL",
    )
