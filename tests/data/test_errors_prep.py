"""Issue 17, classes 3 and 7: prep errors whose fix works when followed, and warnings for datasets too small.

Class 3 (wrong fixes): each input used to get an error whose fix did not help. Each now gets the real diagnosis
(or is read correctly) through the real entry point: exit code 2, one line on stderr naming the file and the
field, no traceback, no output folder; and where the fix is a setting, following it works.
Class 7 (small datasets): one ``warning:`` line on stderr with the numbers, or a refusal at config load / split.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from prep_samples import qa_rows

# ---------------------------------------------------------------- helpers


@pytest.fixture(autouse=True)
def no_progress_bars(monkeypatch):
    """Progress off, so that stderr holds only the messages under test."""
    monkeypatch.setenv("SECTUNE_PROGRESS", "off")


@pytest.fixture
def tokenizer_dir(tmp_path, family_tokenizer) -> Path:
    folder = tmp_path / "tok"
    family_tokenizer("smollm2").save_pretrained(str(folder))
    return folder


def assert_refused(code: int, err: str, out: Path, *words: str, fix: bool = True) -> str:
    """Exit 2, one stderr line naming ``words`` (file, field, …), no traceback, nothing written beside ``out``."""
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("error: ") and ("fix:" in line or not fix), line
    assert "Traceback" not in err
    for word in words:
        assert word in line, (word, line)
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]  # no hidden temp sibling
    return line


def assert_one_warning(code: int, err: str, out: Path, *words: str) -> str:
    """Exit 0, the dataset written, exactly one ``warning:`` line on stderr naming ``words``."""
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("warning: "), line
    for word in words:
        assert word in line, (word, line)
    assert (out / "summary.json").is_file()
    return line


def write_csv(path: Path, rows: list[list[str]], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, delimiter=delimiter).writerows(rows)
    return path


def write_xlsx(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    from openpyxl import Workbook

    book = Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def qa_table(count: int = 24) -> list[list[str]]:
    return [["Question", "Answer"], *[[q, a] for q, a, _ in qa_rows(count)]]


def summary(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text(encoding="utf-8"))


# ---------------------------------------------------------------- class 3: CSV delimiters


@pytest.mark.parametrize(("delimiter", "name"), [(";", "semicolon.csv"), ("\t", "tabs.csv"), ("|", "pipes.csv")])
def test_csv_with_another_delimiter_is_read_correctly(tmp_path, tokenizer_dir, delimiter, name, sectune_cli):
    """Before: "column 'Question' not found (columns: ['Question;Answer'])" and a fix naming that merged column."""
    data = write_csv(tmp_path / name, qa_table(), delimiter)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert code == 0 and err == "", err
    assert summary(out)["input_delimiter"] == delimiter
    assert sum(summary(out)["counts"].values()) == 24
    first = json.loads((out / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert [m["role"] for m in first["messages"]] == ["user", "assistant"]
    assert delimiter not in first["messages"][0]["content"]


def test_csv_inconsistent_semicolons_says_looks_semicolon_delimited(tmp_path, tokenizer_dir, sectune_cli):
    """The header splits on ';' but the rows do not (an unquoted ';' in a cell): the sniff is ambiguous."""
    data = tmp_path / "ambiguous.csv"
    data.write_text(
        "Question;Answer\nWhat is a firewall; really?;It filters traffic.\nWhat is MFA?;A second factor\n"
        "Why?;Because;yes;no\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert_refused(code, err, out, "ambiguous.csv", "looks ;-delimited", "comma-separated")


def test_csv_semicolons_with_other_column_names_lists_the_real_columns(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "frage.csv", [["Frage", "Antwort"], *qa_table()[1:]], ";")
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir)]
    code, _, err = sectune_cli("prep", *args)
    line = assert_refused(code, err, out, "frage.csv", "prep.question_column", "read as ;-delimited", "'Frage'")
    assert "Frage;Antwort" not in line
    # the fix works: name the columns (as read with ';')
    sets = ["--set", "prep.question_column=Frage", "--set", "prep.answer_column=Antwort"]
    code, _, err = sectune_cli("prep", *args, *sets)
    assert code == 0 and err == "", err


# ---------------------------------------------------------------- class 3: xlsx sheets and header rows


def test_columns_on_another_sheet_name_that_sheet(tmp_path, tokenizer_dir, sectune_cli):
    """Before: "column 'Question' not found in sheet 'Notes'" with a did-you-mean on the notes' columns."""
    data = write_xlsx(
        tmp_path / "book.xlsx",
        {"Notes": [["Read me", "Owner"], ["Exported from the wiki", "IT"]], "Q&A data": qa_table()},
    )
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir)]
    code, _, err = sectune_cli("prep", *args)
    line = assert_refused(code, err, out, "book.xlsx", "prep.sheet", "sheet 'Notes'", "sheet 'Q&A data'")
    assert "--set 'prep.sheet=Q&A data'" in line  # quoted for the shell
    code, _, err = sectune_cli("prep", *args, "--set", "prep.sheet=Q&A data")  # the fix, followed
    assert code == 0 and err == "", err
    assert summary(out)["input_sheet"] == "Q&A data"


def test_other_sheet_with_a_number_for_a_name_is_named_by_index(tmp_path, tokenizer_dir, sectune_cli):
    data = write_xlsx(tmp_path / "years.xlsx", {"Summary": [["Total", "24"]], "2024": qa_table()})
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir)]
    code, _, err = sectune_cli("prep", *args)
    assert_refused(code, err, out, "years.xlsx", "prep.sheet", "sheet '2024'", "--set prep.sheet=1")
    code, _, err = sectune_cli("prep", *args, "--set", "prep.sheet=1")  # --set would read 2024 as an index
    assert code == 0 and err == "", err


@pytest.mark.parametrize("suffix", [".xlsx", ".csv"])
def test_title_rows_above_the_header_are_skipped(tmp_path, tokenizer_dir, suffix, sectune_cli):
    """Before: "column 'Question' not found (columns: ['Security FAQ'])" — the title taken for the header."""
    rows = [["Security FAQ"], ["exported 2024-05-01"], [], *qa_table()]
    data = tmp_path / f"titled{suffix}"
    write_xlsx(data, {"Sheet1": rows}) if suffix == ".xlsx" else write_csv(data, rows)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert code == 0 and err == "", err
    assert summary(out)["input_header_row"] == 4
    assert sum(summary(out)["counts"].values()) == 24


def test_title_row_with_other_column_names_names_the_header_row(tmp_path, tokenizer_dir, sectune_cli):
    rows = [["Security FAQ"], [], ["Frage", "Antwort"], *qa_table()[1:]]
    data = write_xlsx(tmp_path / "titled.xlsx", {"Sheet1": rows})
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir)]
    code, _, err = sectune_cli("prep", *args)
    assert_refused(code, err, out, "titled.xlsx", "prep.header_row", "row 1", "'Security FAQ'", "prep.header_row=3")
    # following the fix: the header is read from row 3, and the next error names its real columns
    code, _, err = sectune_cli("prep", *args, "--set", "prep.header_row=3")
    assert_refused(code, err, out, "titled.xlsx", "prep.question_column", "(header row 3)", "'Frage'")
    sets = ["--set", "prep.header_row=3", "--set", "prep.question_column=Frage", "--set", "prep.answer_column=Antwort"]
    code, _, err = sectune_cli("prep", *args, *sets)
    assert code == 0 and err == "", err
    assert summary(out)["input_header_row"] == 3


def test_header_row_setting_on_a_blank_row(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "data.csv", [["Title"], [], *qa_table()])
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir), "--set", "prep.header_row=2"]
    code, _, err = sectune_cli("prep", *args)
    assert_refused(code, err, out, "data.csv", "prep.header_row", "header row 2 is blank")


# ---------------------------------------------------------------- class 3: a huge CSV cell


def test_huge_csv_cell_reaches_max_chars_and_names_the_row(tmp_path, tokenizer_dir, sectune_cli):
    """Before: "not valid CSV: field larger than field limit (131072) (fix: check the quoting)"."""
    rows = qa_table(6)
    rows[3][1] = "A firewall filters traffic. " * 8000  # 224,000 characters: past csv's default field limit
    data = write_csv(tmp_path / "huge.csv", rows)
    out = tmp_path / "out"
    args = [str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir)]
    code, _, err = sectune_cli("prep", *args)
    assert_refused(code, err, out, "huge.csv", "assistant", "row 4", "exceeds prep.max_chars=20000")
    sets = ["--set", "prep.truncate_long_messages=true", "--set", "prep.length_policy=drop"]
    code, _, err = sectune_cli("prep", *args, *sets)
    assert code == 0, err
    assert summary(out)["validation"]["truncated_messages"] == 1
    assert csv.field_size_limit() == 131072  # the module's limit is put back


# ---------------------------------------------------------------- class 3: a row without its answer field


@pytest.mark.parametrize(
    ("rows", "words"),
    [
        (
            [{"question": "What is a VPN?", "answer": "It encrypts."}, {"question": "What is MFA?"}],
            ["line 2", "no 'answer' field", "row format qa", "detected from the first row"],
        ),
        (
            [{"instruction": "Explain a VPN.", "output": "It encrypts."}, {"instruction": "Explain MFA."}],
            ["line 2", "no 'output' field", "row format alpaca"],
        ),
        (
            [{"prompt": "VPN?", "completion": "It encrypts."}, {"prompt": "MFA?", "complete": "A second factor."}],
            ["line 2", "no 'completion' field", "row format prompt_completion", "rename 'complete' to 'completion'"],
        ),
        (
            [{"question": "What is MFA?"}],
            ["line 1", "no 'answer' field", "row format qa"],
        ),
    ],
    ids=["qa", "alpaca", "prompt_completion-misspelt", "first-row"],
)
def test_row_missing_its_answer_field(tmp_path, tokenizer_dir, rows, words, sectune_cli):
    """Before: "line 2: row format differs from the first row's (qa) (fix: use one row format per file)"."""
    data = write_jsonl(tmp_path / "rows.jsonl", rows)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert_refused(code, err, out, "rows.jsonl", *words)


def test_row_missing_its_answer_field_with_a_forced_format(tmp_path, cfg, family_tokenizer):
    from sectune.data.api import prepare
    from sectune.errors import UserError

    data = write_jsonl(tmp_path / "rows.jsonl", [{"Question": "What is a VPN?", "Answer": "It encrypts."}, {"q": 1}])
    with pytest.raises(UserError) as caught:
        prepare(cfg("prep.input_format=qa"), data, tmp_path / "out", tokenizer=family_tokenizer("smollm2"))
    assert "line 2: no 'question' field (row format qa" in str(caught.value)
    assert "set by prep.input_format" in str(caught.value)


# ---------------------------------------------------------------- class 3: mistyped model / run paths


def test_mistyped_run_path_suggests_the_sibling_folder(tmp_path, monkeypatch, sectune_cli):
    """Before: "unknown model 'runs/lroa' (fix: valid: gemma-2b, …)" — the whole registry."""
    (tmp_path / "runs" / "lora").mkdir(parents=True)
    (tmp_path / "runs" / "qlora-8bit").mkdir()
    data = write_csv(tmp_path / "data.csv", qa_table())
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--set", "model=runs/lroa")
    line = assert_refused(code, err, out, "model", "'runs/lroa' not found", "did you mean 'runs/lora'?")
    assert "gemma" not in line  # not the whole registry


def test_mistyped_run_path_whose_parent_is_missing(tmp_path, monkeypatch):
    from sectune.errors import UserError
    from sectune.models.load import resolve_model

    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError) as caught:
        resolve_model("runz/lora")
    message = str(caught.value)
    assert "runz/lora: model: no such folder (nor does runz/)" in message
    assert "registry key" in message and "gemma" not in message


def test_mistyped_names_suggest_a_folder_or_a_registry_key(tmp_path, monkeypatch):
    from sectune.errors import UserError
    from sectune.models.load import resolve_model

    (tmp_path / "my-finetune").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    for ref, words in [
        ("my-finetnue", ["no such folder", "did you mean 'my-finetune'?"]),  # a folder here is closest
        ("qwen2.5-0.5b-instrct", ["unknown model", "did you mean 'qwen2.5-0.5b-instruct'?"]),  # a registry key
        ("notes.txt", ["is a file, not a model folder"]),
        ("Qwen/Qwen2.5-0.5B-Instruct", ["a hub id", "registry key 'qwen2.5-0.5b-instruct'"]),
    ]:
        with pytest.raises(UserError) as caught:
            resolve_model(ref)
        for word in words:
            assert word in str(caught.value), (ref, str(caught.value))


def test_eval_of_a_mistyped_run_path(tmp_path, monkeypatch, sectune_cli):
    (tmp_path / "runs" / "lora").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    code, _, err = sectune_cli("eval", "runs/lroa", "--out", "report")
    assert_refused(code, err, tmp_path / "report", "did you mean 'runs/lora'?")


# ---------------------------------------------------------------- class 3: a missing tokenizer folder


def test_missing_tokenizer_folder(tmp_path, sectune_cli):
    """Before: "cannot load tokenizer (… is not a local folder and is not a valid model identifier …)"."""
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", "/nope/tok")
    line = assert_refused(code, err, out, "/nope/tok", "--tokenizer", "tokenizer folder does not exist")
    assert "huggingface" not in line.lower() and "repo" not in line.lower()


def test_mistyped_tokenizer_folder_suggests_the_sibling(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    typo = str(tmp_path / "tokk")
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", typo)
    assert_refused(code, err, out, "tokk", "--tokenizer", f"did you mean --tokenizer {tokenizer_dir.as_posix()}?")
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert code == 0 and err == "", err


def test_tokenizer_file_instead_of_folder(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    file = tokenizer_dir / "tokenizer.json"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(file))
    assert_refused(code, err, out, "tokenizer.json", "is a file", f"--tokenizer {tokenizer_dir.as_posix()}")


# ---------------------------------------------------------------- class 7: small datasets


def test_no_validation_rows_warns_once(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "five.csv", qa_table(5))  # 5 × 0.05 rounds to 0 validation rows; 5 × 0.3 to 2 test
    out = tmp_path / "out"
    sets = ["--set", "prep.validation_size=0.05", "--set", "prep.test_size=0.3"]
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir), *sets)
    line = assert_one_warning(code, err, out, "five.csv", "0 validation rows", "prep.validation_size=0.05 of 5 rows")
    assert "test rows" not in line and "duplicates" not in line
    assert "train 3, validation 0, test 2" in line
    assert summary(out)["counts"] == {"train": 3, "validation": 0, "test": 2}


def test_no_test_rows_warns_once(tmp_path, tokenizer_dir, sectune_cli):
    data = write_jsonl(
        tmp_path / "five.jsonl", [{"question": q, "answer": a} for q, a, _ in qa_rows(5)]
    )  # 5 × 0.3 → 2 validation, 5 × 0.05 → 0 test
    out = tmp_path / "out"
    sets = ["--set", "prep.validation_size=0.3", "--set", "prep.test_size=0.05"]
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir), *sets)
    line = assert_one_warning(
        code, err, out, "five.jsonl", "0 test rows", "prep.test_size=0.05", "raise prep.test_size"
    )
    assert "validation rows" not in line


def test_no_warning_when_the_empty_split_was_asked_for(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    sets = ["--set", "prep.validation_size=0", "--set", "prep.test_size=0.2"]
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir), *sets)
    assert code == 0 and err == "", err


def test_mostly_duplicates_warns_once(tmp_path, tokenizer_dir, sectune_cli):
    distinct = qa_table(8)
    rows = [distinct[0], *distinct[1:], *[distinct[1]] * 10, *[distinct[2]] * 4]  # 22 rows, 14 exact copies
    data = write_csv(tmp_path / "copies.csv", rows)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    line = assert_one_warning(
        code, err, out, "copies.csv", "14 of 22 rows (64%) removed as duplicates", "14 exact", "repeated rows"
    )
    assert "0 validation rows" not in line  # 8 rows × 0.1 → 1 validation, 1 test
    assert summary(out)["counts"] == {"train": 6, "validation": 1, "test": 1}


def test_small_and_mostly_duplicates_is_still_one_line(tmp_path, tokenizer_dir, sectune_cli):
    rows = [["Question", "Answer"], *[["What is a VPN?", "It encrypts traffic."]] * 6, ["What is MFA?", "A code."]]
    data = write_csv(tmp_path / "tiny.csv", rows)
    out = tmp_path / "out"
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert_one_warning(code, err, out, "0 validation rows", "0 test rows", "5 of 7 rows (71%) removed as duplicates")


def test_a_good_dataset_gives_no_warning(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    code, stdout, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir))
    assert code == 0 and err == "" and "train 20, validation 2, test 2" in stdout


def test_the_warning_reaches_python_logging(tmp_path, cfg, family_tokenizer, caplog):
    from sectune.data.api import prepare

    data = write_csv(tmp_path / "five.csv", qa_table(5))
    with caplog.at_level("WARNING", logger="sectune.data"):
        prepare(cfg(), data, tmp_path / "out", tokenizer=family_tokenizer("smollm2"))
    assert [r.getMessage().split(": small dataset: ")[1][:30] for r in caplog.records] == [
        "0 validation rows (prep.valida"
    ]


@pytest.mark.parametrize(("validation", "test"), [("0.5", "0.5"), ("0.7", "0.4"), ("0.9", "0.1")])
def test_split_sizes_summing_to_1_are_refused_at_config_load(tmp_path, validation, test, sectune_cli):
    data = write_csv(tmp_path / "data.csv", qa_table())
    out = tmp_path / "out"
    sets = ["--set", f"prep.validation_size={validation}", "--set", f"prep.test_size={test}"]
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), *sets)
    # the config loader's message carries its fix in the text ("keep the sum below 1")
    assert_refused(code, err, out, "prep", "validation_size + test_size", "below 1", fix=False)


def test_split_sizes_leaving_no_train_row_are_refused_at_split(tmp_path, tokenizer_dir, sectune_cli):
    data = write_csv(tmp_path / "two.csv", qa_table(2))  # 2 × 0.3 rounds to 1 validation and 1 test row
    out = tmp_path / "out"
    sets = ["--set", "prep.validation_size=0.3", "--set", "prep.test_size=0.3"]
    code, _, err = sectune_cli("prep", str(data), "--out", str(out), "--tokenizer", str(tokenizer_dir), *sets)
    assert_refused(
        code,
        err,
        out,
        "two.csv",
        "prep.validation_size",
        "2 rows with prep.validation_size=0.3 (1 rows) and prep.test_size=0.3 (1 rows) leave 0 rows to train",
    )
