"""Exporters from canonical rows (``{"messages": [...], "meta": {...}}``) to other formats; the importers
are beside them in :mod:`sectune.data.io`.

Pure converters (``to_question_answer``, ``to_sharegpt``, ``to_alpaca``) plus writers for CSV, XLSX, Parquet,
HF datasets on disk, ShareGPT and Alpaca JSON (JSONL is :func:`sectune.data.jsonl.write_jsonl`). Turns are
found by role, never by position, so a row without a system message (or without any user turn) still
converts correctly.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

Row = dict[str, Any]
SHAREGPT_ROLES = {"system": "system", "user": "human", "assistant": "gpt"}


def _first(row: Row, role: str) -> str:
    return next((m.get("content") or "" for m in row.get("messages") or [] if m.get("role") == role), "")


def to_question_answer(row: Row) -> tuple[str, str]:
    """(first user turn, first assistant turn); a missing role gives ""."""
    return _first(row, "user"), _first(row, "assistant")


def to_sharegpt(row: Row) -> dict[str, Any]:
    """ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system", "value": ...}]}``."""
    turns = [
        {"from": SHAREGPT_ROLES.get(m.get("role", ""), m.get("role", "")), "value": m.get("content") or ""}
        for m in row.get("messages") or []
    ]
    return {"conversations": turns}


def to_alpaca(row: Row) -> dict[str, Any]:
    """Alpaca: instruction (first user turn), empty input, output (first assistant turn), system."""
    question, answer = to_question_answer(row)
    return {"instruction": question, "input": "", "output": answer, "system": _first(row, "system")}


def write_csv(rows: Iterable[Row], path: Path) -> Path:
    """Question,Answer CSV (RFC 4180 quoting: commas, quotes and newlines in answers survive)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Question", "Answer"])
        for row in rows:
            writer.writerow(to_question_answer(row))
    return path


def write_xlsx(rows: Iterable[Row], path: Path) -> Path:
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "samples"
    sheet.append(["Question", "Answer", "Topic", "Domain Type"])
    for row in rows:
        meta = row.get("meta") or {}
        sheet.append([*to_question_answer(row), meta.get("topic", ""), meta.get("domain_type", "")])
    workbook.save(path)
    return path


def _table_records(rows: Sequence[Row]) -> list[dict[str, Any]]:
    # meta differs between rows (domain_type, ...): stored as a JSON string so every row has one schema.
    return [
        {
            "messages": [
                {"role": m.get("role", ""), "content": m.get("content") or ""} for m in row.get("messages") or []
            ],
            "meta": json.dumps(row.get("meta") or {}, ensure_ascii=False, sort_keys=True),
        }
        for row in rows
    ]


def write_parquet(rows: Sequence[Row], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(_table_records(rows)), path)
    return path


def write_hf(rows: Sequence[Row], folder: Path) -> Path:
    """An HF ``datasets`` dataset saved with ``save_to_disk`` (load with ``datasets.load_from_disk``)."""
    from datasets import Dataset

    Dataset.from_list(_table_records(rows)).save_to_disk(str(folder))
    return folder


def write_json_list(items: Iterable[dict[str, Any]], path: Path) -> Path:
    path.write_text(json.dumps(list(items), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    return path


WRITERS = {
    "csv": ("samples.csv", write_csv),
    "xlsx": ("samples.xlsx", write_xlsx),
    "parquet": ("samples.parquet", write_parquet),
    "hf": ("hf_dataset", write_hf),
    "sharegpt": ("sharegpt.json", lambda rows, p: write_json_list(map(to_sharegpt, rows), p)),
    "alpaca": ("alpaca.json", lambda rows, p: write_json_list(map(to_alpaca, rows), p)),
}


def export_rows(rows: Sequence[Row], folder: Path, formats: Iterable[str]) -> dict[str, str]:
    """Write ``rows`` in each format into ``folder``; returns format → file name. JSONL is already the log."""
    written: dict[str, str] = {}
    for fmt in formats:
        if fmt == "jsonl":
            written[fmt] = "samples.jsonl"
            continue
        name, writer = WRITERS[fmt]
        target = folder / name
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        writer(list(rows), target)
        written[fmt] = name
    return written
