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
    header_row: int | None = None  # tables: the row (1-based) the column names were read from
    delimiter: str | None = None  # CSV/TSV: the delimiter the file was read with


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


CSV_DELIMITERS = ",;\t|"  # what the delimiter sniffer may pick
DELIMITER_NAMES = {",": "comma", ";": ";", "\t": "tab", "|": "|"}
HEADER_SEARCH_ROWS = 20  # the header is looked for in this many first rows (title rows above it are skipped)


class _CsvProblem(Exception):
    def __init__(self, message: str, line: int) -> None:
        super().__init__(message)
        self.line = line


def _read_csv(path: Path, cfg: PrepConfig) -> RawInput:
    text = read_text_utf8(path)
    default = "\t" if path.suffix.lower() == ".tsv" else ","
    rows: list[list[Any]] | None = None
    problem: _CsvProblem | None = None
    try:
        rows = _parse_csv(text, default)
    except _CsvProblem as exc:
        problem = exc
    delimiter = default
    if rows is None or _header_position(_numbered(rows), cfg) is None:
        # the question/answer columns are not where a `default`-delimited file has them: another delimiter?
        found = _other_delimiter(text, default, rows, cfg, path)
        if found is not None:
            delimiter, rows = found
    if rows is None:
        assert problem is not None
        raise UserError(
            f"not valid CSV at line {problem.line}: {problem}",
            file=path,
            fix="check the quoting (a cell that opens a quote must close it)",
        ) from None
    raw = _table(path, rows, cfg)
    raw.delimiter = delimiter
    return raw


def _parse_csv(text: str, delimiter: str) -> list[list[Any]]:
    """All rows; the field size limit is raised to the file's size (a cell can be no longer), so a huge cell
    reaches validation, where prep.max_chars / prep.truncate_long_messages decide and the row is named."""
    import csv
    import io

    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows: list[list[Any]] = []
    try:
        for row in reader:
            rows.append(row)
    except csv.Error as exc:
        raise _CsvProblem(str(exc), reader.line_num) from None
    finally:
        csv.field_size_limit(limit)
    return rows


def _sniff_delimiter(text: str, default: str) -> str | None:
    """Another delimiter than ``default`` for the first lines: csv.Sniffer's pick, else the one candidate that
    splits every one of those rows (quotes respected) into the same number (≥ 2) of cells; None: cannot tell."""
    import csv

    sample = "\n".join(text[:100_000].split("\n")[:HEADER_SEARCH_ROWS])
    try:
        sniffed = csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
        if sniffed != default:
            return sniffed
    except csv.Error:  # it gives up on e.g. one quoted cell holding the delimiter
        pass
    others = [delimiter for delimiter in CSV_DELIMITERS if delimiter != default]
    consistent = [delimiter for delimiter in others if _splits_evenly(sample, delimiter)]
    return consistent[0] if len(consistent) == 1 else None


def _splits_evenly(sample: str, delimiter: str) -> bool:
    import csv
    import io

    rows: list[list[str]] = []
    try:
        for row in csv.reader(io.StringIO(sample, newline=""), delimiter=delimiter, strict=True):
            rows.append(row)
    except csv.Error:
        pass  # the sample may end inside a quoted cell: judge the rows read so far
    rows = [row for row in rows if any(cell.strip() for cell in row)]
    while rows and len(rows[0]) < 2:  # title rows above the header
        rows.pop(0)
    rows = rows[:-1] if len(rows) > 2 else rows  # the sample may cut the last row
    return len(rows) >= 2 and all(len(row) == len(rows[0]) for row in rows)


def _other_delimiter(
    text: str, default: str, rows: list[list[Any]] | None, cfg: PrepConfig, path: Path
) -> tuple[str, list[list[Any]]] | None:
    """(delimiter, rows) when the sniffed delimiter reads the file better than ``default``; a UserError when the
    header clearly splits on another delimiter but the rows do not; None: keep ``default``."""
    sniffed = _sniff_delimiter(text, default)
    if sniffed is not None:
        try:
            candidate = _parse_csv(text, sniffed)
        except _CsvProblem:
            candidate = None
        if candidate is not None:
            if _header_position(_numbered(candidate), cfg) is not None:
                return sniffed, candidate  # the columns are found: read it as it is
            if rows is None or _width(candidate) > max(_width(rows), 1):
                return sniffed, candidate  # no columns either way: errors will list the columns it really has
    import csv

    header_line = next((line for line in text.splitlines() if line.strip()), "")
    for other in CSV_DELIMITERS:
        if other == default:
            continue
        cells = [cell.strip() for cell in next(csv.reader([header_line], delimiter=other), [])]
        if _has_columns(cells, cfg):
            name = DELIMITER_NAMES[other]
            raise UserError(
                f"looks {name}-delimited: the header splits on {name} into {cells}, but the rows do not split "
                "the same way",
                file=path,
                fix="re-save it from the spreadsheet as comma-separated CSV (cells that contain a delimiter quoted)",
            )
    return None


def _width(rows: list[list[Any]]) -> int:
    """How many columns the first non-blank row has."""
    return next((len(row) for row in rows if _non_blank(row)), 0)


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
        if _header_position(_numbered(rows), cfg) is None:
            _columns_on_another_sheet(workbook, sheet.title, cfg, path)  # raises when another sheet has them
    finally:
        workbook.close()
    raw = _table(path, rows, cfg)
    raw.sheet = sheet.title
    return raw


def _columns_on_another_sheet(workbook, current: str, cfg: PrepConfig, path: Path) -> None:
    """A UserError naming the sheet (and the setting) when another sheet has the question/answer columns."""
    for index, name in enumerate(workbook.sheetnames):
        other = workbook[name]
        if name == current or not hasattr(other, "iter_rows"):
            continue
        numbered = _numbered([list(row) for row in other.iter_rows(max_row=HEADER_SEARCH_ROWS, values_only=True)])
        position = _header_position(numbered, cfg, search=True)
        if position is None:
            continue
        header_row = numbered[position][0]
        setting = f"--set {_sheet_setting(name, index)}"
        if cfg.header_row is not None and cfg.header_row != header_row:
            setting += f" --set prep.header_row={header_row}"
        raise UserError(
            f"columns '{cfg.question_column}' and '{cfg.answer_column}' not found in sheet '{current}'; sheet "
            f"'{name}' has them (header row {header_row})",
            file=path,
            field="prep.sheet",
            fix=f"read that sheet: {setting}",
        )


def _sheet_setting(name: str, index: int) -> str:
    """``prep.sheet=NAME`` as a shell word; the index where --set would not read the name back as that text."""
    import shlex

    import yaml

    try:
        same = yaml.safe_load(name) == name
    except yaml.YAMLError:
        same = False
    return shlex.quote(f"prep.sheet={name}") if same else f"prep.sheet={index}"


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


def _numbered(rows: list[list[Any]]) -> list[tuple[int, list[Any]]]:
    """(row number counting from 1, row) for the non-blank rows."""
    return [(number, row) for number, row in enumerate(rows, start=1) if _non_blank(row)]


def _has_columns(cells: list[str], cfg: PrepConfig) -> bool:
    """Whether a row names the question and the answer column (exactly, or differing in case only)."""
    folded = {cell.lower().strip() for cell in cells}
    return all(
        wanted in cells or wanted.lower().strip() in folded for wanted in (cfg.question_column, cfg.answer_column)
    )


def _header_position(numbered: list[tuple[int, list[Any]]], cfg: PrepConfig, *, search: bool = False) -> int | None:
    """Index (in ``numbered``) of the header row when it names the question and answer columns, else None.

    The header row is ``prep.header_row`` when set (and ``search`` is False), else the first of the first 20 rows
    that names both columns.
    """
    if cfg.header_row is not None and not search:
        found = [i for i, (number, row) in enumerate(numbered) if number == cfg.header_row]
        return found[0] if found and _has_columns([_cell_text(c) for c in numbered[found[0]][1]], cfg) else None
    for position, (number, row) in enumerate(numbered):
        if number > HEADER_SEARCH_ROWS:
            break
        if _has_columns([_cell_text(cell) for cell in row], cfg):
            return position
    return None


def _table(path: Path, rows: list[list[Any]], cfg: PrepConfig) -> RawInput:
    """Header row + data rows → records keyed by header; blank rows are skipped but keep their numbers.

    The header is ``prep.header_row``, else the first non-blank row, unless a later one of the first 20 rows
    names the question and answer columns (title rows above the header): then that one.
    """
    numbered = _numbered(rows)
    if not numbered:
        raise UserError("file has no header row", file=path, fix="the first row must name the columns")
    if cfg.header_row is not None:
        position = next((i for i, (number, _) in enumerate(numbered) if number == cfg.header_row), None)
        if position is None:
            why = "is blank" if cfg.header_row <= len(rows) else f"is past the end ({len(rows)} rows)"
            raise UserError(
                f"header row {cfg.header_row} {why}",
                file=path,
                field="prep.header_row",
                fix=f"set it to the row that names the columns (the first non-blank row is {numbered[0][0]}), "
                "or unset it",
            )
    else:
        position = _header_position(numbered, cfg, search=True)
        if position is None:
            _refuse_title_row(path, numbered)
            position = 0
    header_number, header_cells = numbered[position]
    header = [_cell_text(cell) for cell in header_cells]
    records = []
    for number, row in numbered[position + 1 :]:
        cells = {name: row[i] if i < len(row) else None for i, name in enumerate(header) if name}
        records.append(RawRecord(cells, f"row {number}"))
    return RawInput(path, records, table=True, columns=[name for name in header if name], header_row=header_number)


def _refuse_title_row(path: Path, numbered: list[tuple[int, list[Any]]]) -> None:
    """A UserError when the first row is a lone title cell and a later one of the first rows has columns."""
    first_number, first = numbered[0]
    title = [_cell_text(cell) for cell in first if _cell_text(cell)]
    if len(title) != 1:
        return
    for number, row in numbered[1:]:
        if number > HEADER_SEARCH_ROWS:
            return
        cells = [_cell_text(cell) for cell in row if _cell_text(cell)]
        if len(cells) >= 2:
            raise UserError(
                f"row {first_number} holds one cell ({title[0]!r}), a title rather than the header; row {number} "
                f"has the cells {cells}",
                file=path,
                field="prep.header_row",
                fix=f"read the header from row {number}: --set prep.header_row={number} (then name its question "
                "and answer columns with prep.question_column / prep.answer_column if they differ)",
            )


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
