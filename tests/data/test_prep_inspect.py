"""`sectune inspect`: trained vs masked tokens shown, whole-dataset checks printed, exit 2 on a problem."""

from __future__ import annotations

import json

import pytest


@pytest.fixture
def run_inspect(sectune_cli):
    """``run_inspect(*args)``: (exit code, stdout and stderr together) of ``sectune inspect ARGS``."""

    def run(*args: str) -> tuple[int, str]:
        code, out, err = sectune_cli("inspect", *args)
        return code, out + err

    return run


@pytest.fixture
def tokenizer_dir(tmp_path, family_tokenizer):
    folder = tmp_path / "tok"
    family_tokenizer("smollm2").save_pretrained(str(folder))
    return folder


def test_inspect_a_dataset_folder_plain_markers(
    tmp_path, chat_jsonl, cfg, family_tokenizer, tokenizer_dir, run_inspect
):
    from sectune.data.api import prepare

    dataset = prepare(cfg(), chat_jsonl, tmp_path / "ds", tokenizer=family_tokenizer("smollm2"))
    code, out = run_inspect(
        str(dataset),
        "--model",
        "smollm2-135m",
        "--tokenizer",
        str(tokenizer_dir),
        "--no-color",
        "--rows",
        "2",
    )
    assert code == 0, out
    first = json.loads((dataset / "train.jsonl").read_text().splitlines()[0])
    assert f"[[{first['messages'][-1]['content']}<|im_end|>]]" in out  # the answer and its end-of-turn, trained
    assert "[[<|im_start|>" not in out  # prompt tokens are masked
    assert "── row 1" in out and "── row 2" not in out
    assert "end-of-turn <|im_end|> trained in 20/20 assistant turns" in out
    assert "rows with 0% trained: 0, with 100% trained: 0" in out
    assert "result: all checks passed" in out
    assert "\x1b[" not in out  # no colour codes


def test_inspect_single_jsonl_reports_rows_over_max_length(chat_jsonl, tokenizer_dir, run_inspect):
    code, out = run_inspect(
        str(chat_jsonl),
        "--tokenizer",
        str(tokenizer_dir),
        "--no-color",
        "--set",
        "prep.max_length=70",
        "--set",
        "prep.length_policy=error",
    )
    assert code == 2
    assert "over max_length 70:" in out and "(policy: error)" in out
    assert "problem:" in out and "exceed max_length=70" in out


def test_colour_falls_back_to_markers_when_not_a_terminal(chat_jsonl, tokenizer_dir, run_inspect):
    code, out = run_inspect(str(chat_jsonl), "--tokenizer", str(tokenizer_dir), "-n", "1")
    assert code == 0
    assert "[[" in out and "<|im_end|>]]" in out and "\x1b[" not in out


def test_inspect_python_api_returns_figures(chat_jsonl, cfg, family_tokenizer):
    from sectune.api import inspect_dataset

    report = inspect_dataset(cfg(), chat_jsonl, tokenizer=family_tokenizer("smollm2"), rows_shown=1)
    figures = report.to_dict()
    assert figures["rows"] == 24 and figures["checks"]["ok"] is True
    assert figures["checks"]["end_of_turn"]["assistant_turns"] == 24
    trained_text = "".join(text for text, trained in report.pieces[0] if trained)
    assert trained_text.endswith("<|im_end|>")


def test_inspect_missing_split(tmp_path, chat_jsonl, cfg, family_tokenizer, tokenizer_dir, run_inspect):
    from sectune.data.api import prepare

    dataset = prepare(cfg(), chat_jsonl, tmp_path / "ds", tokenizer=family_tokenizer("smollm2"))
    (dataset / "validation.jsonl").unlink()  # a dataset folder that lacks a split asked for
    code, out = run_inspect(str(dataset), "--split", "validation", "--tokenizer", str(tokenizer_dir))
    assert code == 2 and "validation" in out.splitlines()[-1] and "not found" in out.splitlines()[-1]
    code, out = run_inspect(str(dataset), "--split", "dev")
    assert code == 2 and "'dev' is not one of 'train', 'validation', 'test'" in out.splitlines()[-1]


@pytest.mark.slow
def test_inspect_seed_jsonl_with_the_embedded_model(shared_dir, run_inspect):
    code, out = run_inspect(
        str(shared_dir / "data" / "seed" / "output_01.jsonl"),
        "--model",
        "smollm2-135m",
        "--no-color",
        "--rows",
        "1",
    )
    assert code == 0, out
    assert "trained in 114/114 assistant turns" in out
    assert "result: all checks passed" in out


def test_colour_mode_on_a_terminal_uses_styles_not_markers(chat_jsonl, cfg, family_tokenizer):
    import io

    from rich.console import Console

    from sectune.api import inspect_dataset
    from sectune.data.inspect import print_report

    report = inspect_dataset(cfg(), chat_jsonl, tokenizer=family_tokenizer("smollm2"), rows_shown=1)
    buffer = io.StringIO()
    print_report(report, color=True, console=Console(file=buffer, force_terminal=True, width=200))
    out = buffer.getvalue()
    assert "\x1b[1;32m" in out  # bold green: trained
    assert "[[" not in out
