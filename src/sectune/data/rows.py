"""Raw records → canonical rows ``{"messages": [...], "meta": {...}}``.

JSONL/JSON rows are auto-detected as one of: messages (OpenAI chat), ShareGPT (conversations/from/value),
Alpaca (instruction/input/output), prompt/completion, or Q&A keys. Tables map a question and an
answer column (configurable) plus an optional system column; other columns go into ``meta``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sectune.config.prep import PrepConfig
from sectune.data.io import DELIMITER_NAMES, RawInput, RawRecord
from sectune.errors import UserError, closest

SHAREGPT_ROLES = {"system": "system", "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
FORMAT_KEYS = {
    "messages": "messages",
    "sharegpt": "conversations",
    "alpaca": "instruction/output",
    "prompt_completion": "prompt/completion",
    "qa": "question/answer",
}
# (question field, answer field) of the formats that have one key each
FORMAT_FIELDS = {
    "alpaca": ("instruction", "output"),
    "prompt_completion": ("prompt", "completion"),
    "qa": ("question", "answer"),
}


@dataclass
class SourcedRow:
    """A canonical row and where it came from in the input file."""

    messages: list[dict[str, Any]]
    meta: dict[str, Any]
    where: str

    def as_row(self) -> dict[str, Any]:
        return {"messages": self.messages, "meta": self.meta}


def to_canonical(raw: RawInput, cfg: PrepConfig) -> list[SourcedRow]:
    """Convert every record of ``raw``; errors name the file and the row."""
    if raw.table:
        return _from_table(raw, cfg)
    fmt = cfg.input_format if cfg.input_format != "auto" else detect_format(raw.records[0], raw)
    rows = []
    how = "detected from the first row" if cfg.input_format == "auto" else "set by prep.input_format"
    for record in raw.records:
        _require_fields(record, fmt, how, raw)
        if cfg.input_format == "auto" and detect_format(record, raw, first=False) != fmt:
            raise UserError(
                f"{record.where}: row format differs from the first row's ({fmt})",
                file=raw.path,
                fix="use one row format per file",
            )
        rows.append(_convert(record, fmt, raw, cfg))
    return rows


def detect_format(record: RawRecord, raw: RawInput, *, first: bool = True) -> str:
    """Which row format a record has; a UserError listing the formats when none fits."""
    keys = set(record.data)
    if "messages" in keys:
        return "messages"
    if "conversations" in keys:
        return "sharegpt"
    if "instruction" in keys and "output" in keys:
        return "alpaca"
    if "prompt" in keys and "completion" in keys:
        return "prompt_completion"
    lower = {key.lower() for key in keys}
    if {"question", "answer"} <= lower:
        return "qa"
    if not first:
        return "unknown"
    for fmt in FORMAT_FIELDS:
        _require_fields(record, fmt, "guessed from its keys", raw, partial_only=True)
    known = ["messages", "conversations", "instruction", "output", "prompt", "completion", "question", "answer"]
    hints = [f"'{key}' → '{closest(key, known)}'" for key in sorted(keys) if closest(key, known)]
    fix = f"did you mean {', '.join(hints)}?" if hints else "rows need one of: " + "; ".join(FORMAT_KEYS.values())
    raise UserError(f"{record.where}: cannot tell the row format from keys {sorted(keys)}", file=raw.path, fix=fix)


def _require_fields(record: RawRecord, fmt: str, how: str, raw: RawInput, *, partial_only: bool = False) -> None:
    """A UserError naming the row, the missing field and the format when a row lacks its format's question or
    answer field (keys are matched case-insensitively for the question/answer format, as when converting).

    ``partial_only``: only when the row has the other field of the pair (the format is recognisable).
    """
    if fmt not in FORMAT_FIELDS:
        return
    keys = {key.lower() for key in record.data} if fmt == "qa" else set(record.data)
    missing = [name for name in FORMAT_FIELDS[fmt] if name not in keys]
    if not missing or (partial_only and len(missing) == len(FORMAT_FIELDS[fmt])):
        return
    hint = closest(missing[0], [str(key) for key in record.data if str(key).lower() not in FORMAT_FIELDS[fmt]])
    fix = f"rename '{hint}' to '{missing[0]}'" if hint else f"add '{missing[0]}' to this row, or remove the row"
    raise UserError(
        f"{record.where}: no '{missing[0]}' field (row format {fmt}: {FORMAT_KEYS[fmt]}, {how}; keys: "
        f"{sorted(record.data)})",
        file=raw.path,
        field=missing[0],
        fix=fix,
    )


def _convert(record: RawRecord, fmt: str, raw: RawInput, cfg: PrepConfig) -> SourcedRow:
    data = record.data
    where = record.where
    if fmt == "messages":
        messages = _message_list(data.get("messages"), "messages", raw, where)
        meta = dict(data.get("meta") or {}) if isinstance(data.get("meta"), dict) else {}
        meta.update({k: v for k, v in data.items() if k not in {"messages", "meta"}})
        return SourcedRow(messages, meta, where)
    if fmt == "sharegpt":
        turns = _message_list(data.get("conversations"), "conversations", raw, where, role_key="from", text_key="value")
        messages = []
        for index, turn in enumerate(turns):
            role = SHAREGPT_ROLES.get(str(turn["role"]).lower())
            if role is None:
                raise UserError(
                    f"{where}: conversations[{index}].from is '{turn['role']}'",
                    file=raw.path,
                    field="from",
                    fix=f"use one of {sorted(SHAREGPT_ROLES)}",
                )
            messages.append({"role": role, "content": turn["content"]})
        return SourcedRow(messages, _rest(data, {"conversations"}), where)
    if fmt == "alpaca":
        instruction = _text(data.get("instruction"), "instruction", raw, where)
        extra = data.get("input")
        user = f"{instruction}\n\n{extra}" if isinstance(extra, str) and extra.strip() else instruction
        messages = _with_system(data.get("system"), user, _text(data.get("output"), "output", raw, where))
        return SourcedRow(messages, _rest(data, {"instruction", "input", "output", "system"}), where)
    if fmt == "prompt_completion":
        prompt = _text(data.get("prompt"), "prompt", raw, where)
        completion = _text(data.get("completion"), "completion", raw, where)
        messages = _with_system(data.get("system"), prompt, completion)
        return SourcedRow(messages, _rest(data, {"prompt", "completion", "system"}), where)
    if fmt == "qa":
        by_lower = {key.lower(): key for key in data}
        question = _text(data.get(by_lower.get("question", "")), "question", raw, where)
        answer = _text(data.get(by_lower.get("answer", "")), "answer", raw, where)
        used = {by_lower.get("question"), by_lower.get("answer"), "system"}
        return SourcedRow(_with_system(data.get("system"), question, answer), _rest(data, used), where)
    raise UserError(f"unknown input format '{fmt}'", field="prep.input_format", fix=f"one of {list(FORMAT_KEYS)}")


def _message_list(
    value: Any, name: str, raw: RawInput, where: str, *, role_key: str = "role", text_key: str = "content"
) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value:
        raise UserError(f"{where}: '{name}' must be a non-empty list", file=raw.path, field=name, fix="list the turns")
    messages = []
    for index, turn in enumerate(value):
        if not isinstance(turn, dict):
            raise UserError(
                f"{where}: {name}[{index}] is not an object", file=raw.path, field=name, fix="{role, content}"
            )
        for key in (role_key, text_key):
            if key not in turn:
                suggestion = closest(key, [str(k) for k in turn])
                fix = (
                    f"did you mean '{suggestion}'?" if suggestion else f"each turn needs '{role_key}' and '{text_key}'"
                )
                raise UserError(f"{where}: {name}[{index}] has no '{key}'", file=raw.path, field=key, fix=fix)
        content = turn[text_key]
        if not isinstance(content, str):
            raise UserError(
                f"{where}: {name}[{index}].{text_key} is {type(content).__name__}, not text",
                file=raw.path,
                field=text_key,
                fix="write the content as a string",
            )
        messages.append({"role": turn[role_key], "content": content})
    return messages


def _text(value: Any, field: str, raw: RawInput, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise UserError(
            f"{where}: '{field}' is {type(value).__name__}, not text", file=raw.path, field=field, fix="write text"
        )
    return value


def _with_system(system: Any, user: str, assistant: str) -> list[dict[str, Any]]:
    messages = [{"role": "system", "content": system}] if isinstance(system, str) and system.strip() else []
    return [*messages, {"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _rest(data: dict[str, Any], used: set[Any]) -> dict[str, Any]:
    meta = dict(data["meta"]) if isinstance(data.get("meta"), dict) else {}
    meta.update({k: v for k, v in data.items() if k not in used and k != "meta"})
    return meta


def _from_table(raw: RawInput, cfg: PrepConfig) -> list[SourcedRow]:
    question = _column(cfg.question_column, "prep.question_column", raw)
    answer = _column(cfg.answer_column, "prep.answer_column", raw)
    system = _column(cfg.system_column, "prep.system_column", raw) if cfg.system_column else None
    used = {question, answer, system}
    rows = []
    for record in raw.records:
        cells = record.data
        messages = _with_system(
            _text(cells.get(system), system or "", raw, record.where) if system else None,
            _text(cells.get(question), question, raw, record.where),
            _text(cells.get(answer), answer, raw, record.where),
        )
        meta = {snake_case(k): _plain(v) for k, v in cells.items() if k not in used and v is not None}
        rows.append(SourcedRow(messages, meta, record.where))
    return rows


def _column(wanted: str, field: str, raw: RawInput) -> str:
    """The header matching ``wanted`` (exact, else case-insensitive), or an error suggesting the closest."""
    if wanted in raw.columns:
        return wanted
    folded = {name.lower().strip(): name for name in raw.columns}
    if wanted.lower().strip() in folded:
        return folded[wanted.lower().strip()]
    suggestion = closest(wanted, raw.columns)
    where = f" in sheet '{raw.sheet}'" if raw.sheet else ""
    if raw.header_row and raw.header_row != 1:
        where += f" (header row {raw.header_row})"
    if raw.delimiter and raw.delimiter != ("\t" if raw.path.suffix.lower() == ".tsv" else ","):
        where += f" (read as {DELIMITER_NAMES.get(raw.delimiter, raw.delimiter)}-delimited)"
    fix = (
        f"did you mean '{suggestion}'? set --set {field}={suggestion!r}"
        if suggestion
        else f"set --set {field}=<column>; columns: {', '.join(raw.columns)}"
    )
    raise UserError(f"column '{wanted}' not found{where} (columns: {raw.columns})", file=raw.path, field=field, fix=fix)


def snake_case(name: str) -> str:
    """'Domain Type' → 'domain_type' (meta keys)."""
    return re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower() or "column"


def _plain(value: Any) -> Any:
    """Spreadsheet cells (dates, decimals) as JSON-friendly values."""
    return value if isinstance(value, (str, int, float, bool)) else str(value)
