"""Check canonical rows: roles and their order, empty and over-long messages.

Every problem raises a one-line UserError naming the file, the row and the field, unless the config
asks to drop (empty) or truncate (over-long) — then the row is counted in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sectune.config.prep import PrepConfig
from sectune.data.rows import SourcedRow
from sectune.errors import UserError, closest

ROLES = ("system", "user", "assistant")


@dataclass
class ValidationReport:
    rows_in: int = 0
    dropped_empty: int = 0
    truncated_messages: int = 0
    system_prompt_added: int = 0
    notes: list[str] = field(default_factory=list)


def validate_rows(rows: list[SourcedRow], cfg: PrepConfig, path: Path) -> tuple[list[SourcedRow], ValidationReport]:
    """The rows that pass, plus counts of what was dropped or changed on request."""
    report = ValidationReport(rows_in=len(rows))
    kept = []
    for row in rows:
        check_roles(row, path)
        if _has_empty_message(row, path, cfg):
            report.dropped_empty += 1
            continue
        report.truncated_messages += _check_lengths(row, path, cfg)
        if cfg.system_prompt and row.messages[0]["role"] != "system":
            row.messages.insert(0, {"role": "system", "content": cfg.system_prompt})
            report.system_prompt_added += 1
        kept.append(row)
    if not kept:
        raise UserError("no usable rows left after validation", file=path, fix="check the input's content")
    return kept, report


def check_roles(row: SourcedRow, path: Path | str) -> None:
    """system? then user/assistant alternating, starting with user and ending with assistant."""
    roles = [message["role"] for message in row.messages]
    for index, role in enumerate(roles):
        if role not in ROLES:
            suggestion = closest(str(role), ROLES)
            fix = f"did you mean '{suggestion}'?" if suggestion else f"use one of {', '.join(ROLES)}"
            raise UserError(
                f"{row.where}: messages[{index}] has unknown role '{role}'", file=path, field="role", fix=fix
            )
    turns = roles[1:] if roles[0] == "system" else roles
    if "system" in turns:
        raise UserError(
            f"{row.where}: a system message at position {roles.index('system', 1)}; only the first may be system",
            file=path,
            field="role",
            fix="move the system prompt to the first message",
        )
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    if turns != expected:
        bad = next((i for i, (a, b) in enumerate(zip(turns, expected, strict=False)) if a != b), len(turns))
        position = bad + (len(roles) - len(turns))
        raise UserError(
            f"{row.where}: wrong role order {roles} (messages[{position}] should be '{expected[bad]}')",
            file=path,
            field="role",
            fix="alternate user/assistant after an optional first system message",
        )
    if not turns or turns[-1] != "assistant":
        raise UserError(
            f"{row.where}: the last message must be the assistant's answer (roles: {roles})",
            file=path,
            field="role",
            fix="end each row with an assistant message",
        )


def _has_empty_message(row: SourcedRow, path: Path, cfg: PrepConfig) -> bool:
    for index, message in enumerate(row.messages):
        if message["content"].strip():
            continue
        if cfg.on_empty == "drop":
            return True
        raise UserError(
            f"{row.where}: empty {message['role']} content (messages[{index}])",
            file=path,
            field=message["role"],
            fix="fill it, remove the row, or set prep.on_empty=drop",
        )
    return False


def _check_lengths(row: SourcedRow, path: Path, cfg: PrepConfig) -> int:
    truncated = 0
    for index, message in enumerate(row.messages):
        size = len(message["content"])
        if size <= cfg.max_chars:
            continue
        if not cfg.truncate_long_messages:
            raise UserError(
                f"{row.where}: {message['role']} message of {size} characters exceeds prep.max_chars={cfg.max_chars} "
                f"(messages[{index}])",
                file=path,
                field=message["role"],
                fix="shorten it, raise prep.max_chars, or set prep.truncate_long_messages=true",
            )
        message["content"] = message["content"][: cfg.max_chars]
        truncated += 1
    return truncated


def check_row(row: SourcedRow, cfg: PrepConfig, path: Path) -> bool:
    """Raise the row's first problem as :func:`validate_rows` would; False when the config drops the row."""
    check_roles(row, path)
    if _has_empty_message(row, path, cfg):
        return False
    _check_lengths(row, path, cfg)
    return True
