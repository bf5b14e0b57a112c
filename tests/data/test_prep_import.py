"""Import: every supported format becomes the same canonical rows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sectune.config.prep import PrepConfig
from sectune.data.io import read_input
from sectune.data.rows import to_canonical

EXPECTED = [
    {"role": "user", "content": "What is a firewall?"},
    {"role": "assistant", "content": "It filters traffic."},
]


def canonical(path: Path, **prep) -> list[dict]:
    config = PrepConfig(**prep)
    return [row.as_row() for row in to_canonical(read_input(path, config), config)]


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("row", "meta"),
    [
        ({"messages": EXPECTED, "meta": {"domain_type": "Cloud"}}, {"domain_type": "Cloud"}),
        (
            {
                "conversations": [
                    {"from": "human", "value": "What is a firewall?"},
                    {"from": "gpt", "value": "It filters traffic."},
                ],
                "id": 7,
            },
            {"id": 7},
        ),
        ({"instruction": "What is a firewall?", "input": "", "output": "It filters traffic."}, {}),
        ({"prompt": "What is a firewall?", "completion": "It filters traffic.", "topic": "net"}, {"topic": "net"}),
        ({"Question": "What is a firewall?", "Answer": "It filters traffic."}, {}),
    ],
    ids=["messages", "sharegpt", "alpaca", "prompt_completion", "qa"],
)
def test_jsonl_formats_are_detected(tmp_path, row, meta):
    rows = canonical(write_jsonl(tmp_path / "in.jsonl", [row, row]))
    assert rows == [{"messages": EXPECTED, "meta": meta}] * 2


def test_alpaca_input_is_appended_to_the_instruction(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Summarise.", "input": "Long text", "output": "Short."}])
    assert canonical(path)[0]["messages"][0]["content"] == "Summarise.\n\nLong text"


def test_forced_format_overrides_detection(tmp_path):
    path = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "Q?", "completion": "A.", "messages": "ignored"}])
    assert canonical(path, input_format="prompt_completion")[0]["messages"][0]["content"] == "Q?"


def test_json_list_and_csv_and_tsv(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps([{"messages": EXPECTED}]), encoding="utf-8")
    assert canonical(tmp_path / "a.json")[0]["messages"] == EXPECTED
    (tmp_path / "a.csv").write_text('Question,Answer,Domain Type\n"What is a firewall?","It filters traffic.",Cloud\n')
    assert canonical(tmp_path / "a.csv") == [{"messages": EXPECTED, "meta": {"domain_type": "Cloud"}}]
    (tmp_path / "a.tsv").write_text("question\tanswer\nWhat is a firewall?\tIt filters traffic.\n")
    assert canonical(tmp_path / "a.tsv")[0]["messages"] == EXPECTED  # header matched case-insensitively


def test_xlsx_any_sheet_column_map_and_system_column(tmp_path):
    from openpyxl import Workbook

    book = Workbook()
    book.active.title = "Notes"
    book.active.append(["nothing here"])
    sheet = book.create_sheet("QA")
    sheet.append(["Prompt text", "Reply", "Persona"])
    sheet.append(["What is a firewall?", "It filters traffic.", "You are terse."])
    book.save(tmp_path / "book.xlsx")
    rows = canonical(
        tmp_path / "book.xlsx",
        sheet="QA",
        question_column="Prompt text",
        answer_column="Reply",
        system_column="Persona",
    )
    assert rows == [{"messages": [{"role": "system", "content": "You are terse."}, *EXPECTED], "meta": {}}]
    assert canonical(tmp_path / "book.xlsx", sheet=1, question_column="Prompt text", answer_column="Reply")[0][
        "meta"
    ] == {"persona": "You are terse."}


def test_seed_style_xlsx(seed_xlsx):
    rows = canonical(seed_xlsx)
    assert len(rows) == 24
    assert rows[0]["meta"] == {"domain_type": "Cybersecurity"}
    assert [m["role"] for m in rows[0]["messages"]] == ["user", "assistant"]


def test_parquet_table_and_messages(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(
        pa.table({"Question": ["What is a firewall?"], "Answer": ["It filters traffic."]}), tmp_path / "t.parquet"
    )
    assert canonical(tmp_path / "t.parquet")[0]["messages"] == EXPECTED
    pq.write_table(pa.Table.from_pylist([{"messages": EXPECTED}]), tmp_path / "m.parquet")
    assert canonical(tmp_path / "m.parquet")[0]["messages"] == EXPECTED


def test_hf_dataset_on_disk(tmp_path):
    from datasets import Dataset, DatasetDict

    data = Dataset.from_list([{"messages": EXPECTED, "source": "x"}] * 2)
    DatasetDict({"train": data, "test": data}).save_to_disk(str(tmp_path / "hf"))
    rows = canonical(tmp_path / "hf")
    assert len(rows) == 4 and rows[0] == {"messages": EXPECTED, "meta": {"source": "x"}}


def test_seed_jsonl_imports_as_is(shared_dir):
    rows = canonical(shared_dir / "data" / "seed" / "output_01.jsonl")
    assert len(rows) == 100
    assert all(row["messages"][0]["role"] == "system" for row in rows)
    assert all(row["messages"][-1]["role"] == "assistant" for row in rows)


def test_system_prompt_added_only_where_missing(tmp_path):
    from sectune.data.validate import validate_rows

    path = write_jsonl(
        tmp_path / "a.jsonl",
        [{"messages": EXPECTED}, {"messages": [{"role": "system", "content": "Own."}, *EXPECTED]}],
    )
    config = PrepConfig(system_prompt="Default.")
    rows, report = validate_rows(to_canonical(read_input(path, config), config), config, path)
    assert [row.messages[0]["content"] for row in rows] == ["Default.", "Own."]
    assert report.system_prompt_added == 1


def test_empty_rows_dropped_and_long_messages_truncated_only_when_asked(tmp_path):
    from sectune.data.validate import validate_rows

    long_answer = {"role": "assistant", "content": "x" * 50}
    path = write_jsonl(
        tmp_path / "a.jsonl",
        [
            {"messages": EXPECTED},
            {"messages": [EXPECTED[0], {"role": "assistant", "content": ""}]},
            {"messages": [EXPECTED[0], long_answer]},
        ],
    )
    config = PrepConfig(on_empty="drop", max_chars=20, truncate_long_messages=True)
    rows, report = validate_rows(to_canonical(read_input(path, config), config), config, path)
    assert len(rows) == 2 and report.dropped_empty == 1 and report.truncated_messages == 1
    assert rows[1].messages[1]["content"] == "x" * 20


def test_errors_name_the_spreadsheet_row_even_after_blank_rows(tmp_path):
    from openpyxl import Workbook

    from sectune.data.validate import validate_rows
    from sectune.errors import UserError

    book = Workbook()
    for row in (["Question", "Answer"], ["What is a firewall?", "It filters."], [None, None], ["What is a VPN?", None]):
        book.active.append(row)
    book.save(tmp_path / "gaps.xlsx")
    config = PrepConfig()
    rows = to_canonical(read_input(tmp_path / "gaps.xlsx", config), config)
    assert [row.where for row in rows] == ["row 2", "row 4"]  # as Excel numbers them
    with pytest.raises(UserError, match="row 4: empty assistant content"):
        validate_rows(rows, config, tmp_path / "gaps.xlsx")
