"""A corpus of malformed inputs: each gives its one-line error naming the file and leaves no output."""

from __future__ import annotations

from pathlib import Path

import pytest

from sectune.errors import UserError

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "data" / "malformed"

# file → (expected words in the error, config overrides)
CASES: dict[str, tuple[list[str], list[str]]] = {
    "empty.jsonl": (["file is empty"], []),
    "blank_lines.jsonl": (["no rows", "blank"], []),
    "bad_json_line.jsonl": (["line 2", "not valid JSON"], []),
    "not_an_object.jsonl": (["line 1", "expected a JSON object"], []),
    "unknown_format.jsonl": (["cannot tell the row format", "'questoin' → 'question'"], []),
    "messages_not_list.jsonl": (["line 1", "'messages' must be a non-empty list"], []),
    "messages_empty_list.jsonl": (["line 1", "non-empty list"], []),
    "unknown_role.jsonl": (["unknown role 'asistant'", "did you mean 'assistant'"], []),
    "assistant_first.jsonl": (["wrong role order", "messages[0] should be 'user'"], []),
    "two_users.jsonl": (["wrong role order", "messages[1] should be 'assistant'"], []),
    "ends_with_user.jsonl": (["last message must be the assistant"], []),
    "system_not_first.jsonl": (["only the first may be system"], []),
    "no_assistant.jsonl": (["last message must be the assistant"], []),
    "empty_answer.jsonl": (["line 2", "empty assistant content", "prep.on_empty=drop"], []),
    "content_not_string.jsonl": (["messages[1].content is NoneType"], []),
    "missing_role_key.jsonl": (["has no 'role'", "did you mean 'rol'"], []),
    "missing_content_key.jsonl": (["has no 'content'", "did you mean 'text'"], []),
    "latin1.jsonl": (["not valid UTF-8 at line 2", "save the file as UTF-8"], []),
    "utf16.jsonl": (["UTF-16"], []),
    "huge_cell.jsonl": (["exceeds prep.max_chars", "truncate_long_messages"], []),
    "sharegpt_bad_speaker.jsonl": (["conversations[1].from is 'robot'"], []),
    "mixed_formats.jsonl": (["line 2", "format differs"], []),
    "alpaca_empty_output.jsonl": (["empty assistant content"], []),
    "prompt_completion_number.jsonl": (["'completion' is list"], []),
    "not_a_list.json": (["must be a list of rows"], []),
    "broken.json": (["not valid JSON"], []),
    "notes.txt": (["unsupported file type '.txt'"], []),
    "misnamed_column.csv": (["column 'Question' not found", "did you mean 'Questions'", "prep.question_column"], []),
    "empty_cell.csv": (["row 3", "empty assistant content"], []),
    "header_only.csv": (["no rows found"], []),
    "latin1.csv": (["not valid UTF-8 at line 2"], []),
    "unclosed_quote.csv": (["not valid CSV"], []),
    "corrupt.xlsx": (["not a readable xlsx"], []),
    "text_renamed.xlsx": (["not a readable xlsx"], []),
    "misnamed_column.xlsx": (["column 'Question' not found in sheet 'Sheet1'", "did you mean 'Quesion'"], []),
    "empty_cell.xlsx": (["row 3", "empty user content"], []),
    "header_only.xlsx": (["no rows found"], []),
    "empty_sheet.xlsx": (["no header row"], []),
    "other_sheet.xlsx": (["sheet 'Dta' not found", "did you mean 'Data'"], ["prep.sheet=Dta"]),
    "huge_cell.xlsx": (["row 2", "exceeds prep.max_chars"], []),
    "corrupt.parquet": (["not a readable Parquet"], []),
    "misnamed_column.parquet": (["column 'Answer' not found", "prep.answer_column"], []),
    "stratify_missing_meta.jsonl": (["meta field 'domain_type' missing"], ["prep.stratify_by=domain_type"]),
}


def test_corpus_is_complete():
    """Every file in the corpus has an expected error, and there are at least 30."""
    files = sorted(path.name for path in CORPUS.iterdir())
    assert files == sorted(CASES)
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_malformed_input_gives_clear_error_and_no_output(name, tmp_path, cfg, family_tokenizer):
    from sectune.data.api import prepare

    expected, overrides = CASES[name]
    out = tmp_path / "dataset"
    with pytest.raises(UserError) as caught:
        prepare(cfg(*overrides), CORPUS / name, out, tokenizer=family_tokenizer("smollm2"))
    message = str(caught.value)
    assert "\n" not in message
    assert name in message  # names the file
    assert "fix:" in message
    for words in expected:
        assert words in message
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no temp sibling left either


def test_missing_input_file(tmp_path, cfg):
    from sectune.data.api import prepare

    with pytest.raises(UserError, match="input not found"):
        prepare(cfg(), tmp_path / "nope.jsonl", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_cli_exit_code_2_one_line(tmp_path, monkeypatch, capsys):
    """Through the real entry point: exit code 2, one line on stderr, no output folder."""
    import sys

    from sectune.cli.main import main

    out = tmp_path / "dataset"
    monkeypatch.setattr(sys, "argv", ["sectune", "prep", str(CORPUS / "two_users.jsonl"), "--out", str(out)])
    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "two_users.jsonl" in err and "wrong role order" in err
    assert len(err.splitlines()) == 1
    assert not out.exists()
