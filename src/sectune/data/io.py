"""Read input files into raw records: JSONL/JSON, CSV/TSV, xlsx, Parquet, HF datasets saved to disk.

Each record keeps where it came from (``where``: "line 7", "row 12"), so later errors can name it.
Tables (xlsx, CSV, Parquet without a messages column) come back as dicts keyed by column header.
"""

from __future__ import annotations

import codecs
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.config.prep import PrepConfig
from sectune.errors import UserError, closest

TABLE_SUFFIXES = {".csv", ".tsv", ".xlsx", ".xlsm"}
SUPPORTED = [".jsonl", ".ndjson", ".json", ".csv", ".tsv", ".xlsx", ".xlsm", ".parquet", "a saved HF dataset folder"]


@dataclass
class RawRecord:
    data: dict[str, Any]
    where: str  # "line 3" or "row 12": what a user finds in their file


@dataclass
class RawInput:
    path: Path
    records: list[RawRecord]
    table: bool  # True: records are rows of Q&A columns
    columns: list[str]
    sheet: str | None = None


def read_input(path: str | Path, cfg: PrepConfig) -> RawInput:
    """Read ``path`` into raw records, or raise a UserError naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise UserError("input not found", file=path, fix="pass an existing file or dataset folder")
    if path.is_dir():
        return _read_hf_dataset(path)
    suffix = path.suffix.lower()
    if path.stat().st_size == 0:
        raise UserError("file is empty", file=path, fix="pass a file with at least one row")
    readers = {
        ".jsonl": _read_jsonl,
        ".ndjson": _read_jsonl,
        ".json": _read_json,
        ".csv": _read_csv,
        ".tsv": _read_csv,
        ".xlsx": _read_xlsx,
        ".xlsm": _read_xlsx,
        ".parquet": _read_parquet,
    }
    reader = readers.get(suffix)
    if reader is None:
        raise UserError(
            f"unsupported file type '{suffix or path.name}'",
            file=path,
            fix=f"convert it to one of: {', '.join(SUPPORTED)}",
        )
    raw = reader(path, cfg)
    if not raw.records:
        raise UserError("no rows found", file=path, fix="pass a file with at least one data row")
    return raw


def read_text_utf8(path: Path) -> str:
    """The file's text; a clear error (with the line) when it is not UTF-8."""
    data = path.read_bytes()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UserError("file is UTF-16, not UTF-8", file=path, fix="save it as UTF-8")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UserError(
            f"not valid UTF-8 at line {line} (byte {exc.start})",
            file=path,
            fix="save the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)",
        ) from None


def _read_jsonl(path: Path, cfg: PrepConfig) -> RawInput:
    from sectune.data.jsonl import iter_jsonl_text

    records = []
    # read_text_utf8 first: its errors name the line of a non-UTF-8 byte and spot UTF-16
    for number, value in iter_jsonl_text(read_text_utf8(path), path):  # a bad line: "line N: not valid JSON"
        if not isinstance(value, dict):
            raise UserError(
                f"line {number}: expected a JSON object, got {type(value).__name__}",
                file=path,
                fix="one JSON object per line",
            )
        records.append(RawRecord(value, f"line {number}"))
    if not records:
        raise UserError("file has no rows (only blank lines)", file=path, fix="pass a file with at least one row")
    return RawInput(path, records, table=False, columns=[])


def _read_json(path: Path, cfg: PrepConfig) -> RawInput:
    try:
        value = json.loads(read_text_utf8(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"not valid JSON at line {exc.lineno} ({exc.msg})", file=path, fix="fix the JSON") from None
    if not isinstance(value, list):
        raise UserError("a .json input must be a list of rows", file=path, fix="write [ {...}, {...} ] or use JSONL")
    records = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise UserError(f"item {index}: expected a JSON object", file=path, fix="a list of objects")
        records.append(RawRecord(item, f"item {index}"))
    return RawInput(path, records, table=False, columns=[])


def _read_csv(path: Path, cfg: PrepConfig) -> RawInput:
    import csv
    import io

    text = read_text_utf8(path)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise UserError(f"not valid CSV: {exc}", file=path, fix="check the quoting") from None
    return _table(path, rows, first_data_row=2)


def _read_xlsx(path: Path, cfg: PrepConfig) -> RawInput:
    import zipfile

    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise UserError(
            f"not a readable xlsx workbook ({type(exc).__name__})", file=path, fix="re-save it from Excel as .xlsx"
        ) from None
    try:
        sheet = _pick_sheet(workbook, cfg.sheet, path)
        rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    finally:
        workbook.close()
    raw = _table(path, rows, first_data_row=2)
    raw.sheet = sheet.title
    return raw


def _pick_sheet(workbook, wanted: str | int | None, path: Path):
    names = workbook.sheetnames
    if wanted is None:
        return workbook[names[0]]
    if isinstance(wanted, int):
        if 0 <= wanted < len(names):
            return workbook[names[wanted]]
        raise UserError(f"sheet index {wanted} out of range", file=path, field="prep.sheet", fix=f"sheets: {names}")
    if wanted in names:
        return workbook[wanted]
    suggestion = closest(wanted, names)
    fix = f"did you mean '{suggestion}'?" if suggestion else f"sheets: {', '.join(names)}"
    raise UserError(f"sheet '{wanted}' not found", file=path, field="prep.sheet", fix=fix)


def _table(path: Path, rows: list[list[Any]], *, first_data_row: int) -> RawInput:
    """Header row + data rows → records keyed by header; blank rows are skipped but keep their numbers."""
    numbered = [(number, row) for number, row in enumerate(rows, start=first_data_row - 1) if _non_blank(row)]
    if not numbered:
        raise UserError("file has no header row", file=path, fix="the first row must name the columns")
    header = [_cell_text(cell) for cell in numbered[0][1]]
    records = []
    for number, row in numbered[1:]:
        cells = {name: row[i] if i < len(row) else None for i, name in enumerate(header) if name}
        records.append(RawRecord(cells, f"row {number}"))
    return RawInput(path, records, table=True, columns=[name for name in header if name])


def _non_blank(row: list[Any]) -> bool:
    return any(_cell_text(cell) for cell in row)


def _cell_text(cell: Any) -> str:
    return "" if cell is None else str(cell).strip()


def _read_parquet(path: Path, cfg: PrepConfig) -> RawInput:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"not a readable Parquet file ({exc})".splitlines()[0], file=path, fix="re-export it") from None
    return _from_column_rows(path, table.column_names, table.to_pylist())


def _read_hf_dataset(path: Path) -> RawInput:
    try:
        from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk

        dataset = load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise UserError(
            f"not a saved HF dataset ({exc})".splitlines()[0],
            file=path,
            fix="pass a file, or a folder written by datasets' save_to_disk",
        ) from None
    if isinstance(dataset, DatasetDict):
        dataset = concatenate_datasets([dataset[name] for name in sorted(dataset)])
    assert isinstance(dataset, Dataset)
    return _from_column_rows(path, dataset.column_names, dataset.to_list())


def _from_column_rows(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> RawInput:
    records = [RawRecord(row, f"row {index}") for index, row in enumerate(rows)]
    record_like = {"messages", "conversations", "instruction", "prompt"} & set(columns)
    return RawInput(path, records, table=not record_like, columns=list(columns))
