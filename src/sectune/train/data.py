"""Read the dataset folder contract (train.jsonl, validation.jsonl, test.jsonl) for training.

Rows are canonical ``{"messages": [...], "meta": {...}}``; trl only needs ``messages``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sectune.data.jsonl import JsonlError, iter_jsonl
from sectune.errors import UserError

TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
TEST_FILE = "test.jsonl"
ROLES = {"system", "user", "assistant"}


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Canonical rows of one JSONL file, reduced to ``{"messages": [...]}``; empty when the file is absent."""
    if not path.is_file():
        return []
    try:
        return [{"messages": _messages(path, number, row)} for number, row in iter_jsonl(path)]
    except JsonlError as exc:
        raise UserError(
            f"not valid JSON: {exc.msg}", file=path, field=f"line {exc.line}", fix="re-run sectune prep"
        ) from None


def _messages(path: Path, number: int, row: Any) -> list[dict[str, str]]:
    messages = row.get("messages") if isinstance(row, dict) else None
    if not isinstance(messages, list) or not messages:
        raise UserError("row has no 'messages' list", file=path, field=f"line {number}", fix="re-run sectune prep")
    for message in messages:
        if (
            not isinstance(message, dict)
            or message.get("role") not in ROLES
            or not isinstance(message.get("content"), str)
        ):
            raise UserError(
                "message needs a role (system/user/assistant) and a string content",
                file=path,
                field=f"line {number}",
                fix="re-run sectune prep",
            )
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError("row has no assistant turn to train on", file=path, field=f"line {number}", fix="drop the row")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def read_dataset(folder: str | Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(train, validation, test) rows of a dataset folder; train must exist and be non-empty."""
    folder = Path(folder)
    if not (folder / TRAIN_FILE).is_file():
        raise UserError(
            f"no {TRAIN_FILE} in the dataset folder",
            file=folder,
            fix="pass a folder written by sectune prep (train.jsonl, validation.jsonl, test.jsonl)",
        )
    train = read_rows(folder / TRAIN_FILE)
    if not train:
        raise UserError("the training split is empty", file=folder / TRAIN_FILE, fix="add rows or re-run sectune prep")
    return train, read_rows(folder / VALIDATION_FILE), read_rows(folder / TEST_FILE)


def dataset_files(folder: str | Path) -> list[Path]:
    """The split files that exist (what the data fingerprint covers)."""
    folder = Path(folder)
    return [folder / name for name in (TRAIN_FILE, VALIDATION_FILE, TEST_FILE) if (folder / name).is_file()]


def held_out_prompts(test: list[dict[str, Any]], validation: list[dict[str, Any]], count: int) -> list[list[dict]]:
    """Conversations up to (not including) the first assistant answer, from the test split, else validation."""
    prompts = []
    for row in (test or validation)[:count]:
        messages = row["messages"]
        first_answer = next(i for i, m in enumerate(messages) if m["role"] == "assistant")
        prompts.append(messages[:first_answer])
    return [p for p in prompts if p and p[-1]["role"] == "user"]
