"""`sectune study` on the tiny model: all four variants trained, evaluated and reported; finished runs reused."""

from __future__ import annotations

import json
import shutil

import pytest

from sectune.config import load_config

TINY = [
    "train.max_steps=2",
    "train.batch_size=2",
    "train.grad_accum=1",
    "train.stop_check.enabled=false",
    "eval.max_new_tokens=4",
    "eval.bootstrap_samples=100",
    "eval.max_questions=6",
    "eval.metrics=[rouge_l,chrf,bleu,perplexity,length]",
    "study.price_per_hour=1.5",
]


@pytest.fixture
def study_dataset(tiny_dataset):
    """The tiny test split plus train (3 copies) and validation splits."""
    test = (tiny_dataset / "test.jsonl").read_text()
    (tiny_dataset / "train.jsonl").write_text(test * 3)
    (tiny_dataset / "validation.jsonl").write_text("".join(test.splitlines(keepends=True)[:2]))
    return tiny_dataset


def _without_timings(report):
    for variant in report["variants"]:
        variant.pop("training", None)
        variant.pop("log_history", None)
    return report


# The Training table's columns (report.md) and the report.json training field each one shows.
TRAINING_COLUMNS = {
    "train time (s)": "train_runtime_s",
    "tokens/s": "tokens_per_s",
    "peak memory (MB)": "peak_memory_mb",
    "trainable params": "trainable_params",
    "total params": "total_params",
    "final train loss": "final_train_loss",
    "eval loss": "eval_loss",
    "est. cost (USD)": "estimated_cost_usd",
}


def _shown(value):
    """A report.json number as report.md must print it: ints as is, floats to 6 significant digits."""
    if value is None:
        return "—"
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _interval(entry):
    return f"{_shown(entry['value'])} [{_shown(entry['ci_low'])}, {_shown(entry['ci_high'])}]"


def _markdown_table(markdown, title):
    """The rows of the table under ``## title``: first cell → {column header: cell}."""
    lines = markdown.splitlines()
    assert f"## {title}" in lines, f"no table {title!r} in the report"
    start = lines.index(f"## {title}") + 2  # the heading, then a blank line
    cells = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        cells.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    header, rows = cells[0], cells[2:]  # cells[1] is the |---| line
    return {row[0]: dict(zip(header[1:], row[1:], strict=True)) for row in rows}


def _assert_markdown_shows_the_report(report, markdown):
    """Every variant's training numbers and MCQ accuracies appear in report.md, in its own row and column."""
    labels = [v["label"] for v in report["variants"]]
    training = _markdown_table(markdown, "Training")
    assert list(training) == labels
    for variant in report["variants"]:
        numbers = variant["training"] or {}
        shown = {column: _shown(numbers.get(field)) for column, field in TRAINING_COLUMNS.items()}
        assert training[variant["label"]] == shown, variant["label"]
    mcq = _markdown_table(markdown, "MCQ accuracy: cyber-mini")
    assert list(mcq)[: len(labels)] == labels
    for variant in report["variants"]:
        methods = variant["mcq"]["cyber-mini"]
        assert methods, variant["label"]
        assert mcq[variant["label"]] == {method: _interval(entry) for method, entry in methods.items()}


def _judge(body):
    """The fake judge: a score of 3 for absolute prompts, a tie for pairwise ones."""
    return '{"winner": "tie"}' if "ANSWER A:" in body["messages"][-1]["content"] else '{"score": 3}'


def test_study_reports_all_four_variants_and_reuses_finished_runs(tiny_model_dir, study_dataset, tmp_path, monkeypatch):
    from sectune.study.api import study
    from sectune.testing.fake_openai import FakeOpenAI

    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "study"
    with FakeOpenAI(responder=_judge) as fake:
        judge = ["eval.judge.enabled=true", "eval.judge.pairwise=true", f"eval.judge.base_url={fake.base_url}"]
        cfg = load_config(None, [f"model={tiny_model_dir}", *TINY, *judge])
        report_dir = study(cfg, study_dataset, out) / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["base", "lora", "qlora", "full"]
    for variant in report["variants"][1:]:
        training = variant["training"]
        assert training["trainable_params"] > 0 and training["peak_memory_mb"] > 0 and training["tokens_per_s"] > 0
        assert variant["log_history"]
    full = report["variants"][3]["training"]
    assert full["trainable_params"] == full["total_params"] > report["variants"][1]["training"]["trainable_params"]
    assert {c["variant"] for c in report["comparisons"]} == {"lora", "qlora", "full"}
    assert all(v["quality"]["judge_score"]["value"] == 3.0 for v in report["variants"])
    assert [v["judge_pairwise"]["ties"] for v in report["variants"][1:]] == [4, 4, 4]
    assert all(sorted(v["mcq"]["cyber-mini"]) == ["letter", "option"] for v in report["variants"])
    _assert_markdown_shows_the_report(report, (report_dir / "report.md").read_text())
    for plot in ("loss_curves.png", "quality_vs_memory.png"):
        assert (report_dir / plot).stat().st_size > 5000

    # reuse: the finished runs are not trained again; re-evaluating them gives the same numbers
    stamps = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/summary.json")}
    assert len(stamps) == 3
    shutil.rmtree(out / "evals")
    with FakeOpenAI(responder=_judge) as fake:  # a new port; judge answers come from the cache anyway
        cfg = cfg.model_copy(
            update={
                "eval": cfg.eval.model_copy(
                    update={"judge": cfg.eval.judge.model_copy(update={"base_url": fake.base_url})}
                )
            }
        )
        again = json.loads((study(cfg, study_dataset, out) / "report" / "report.json").read_text())
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert _without_timings(again) == _without_timings(report)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_study_on_the_embedded_model_with_tiny_sizes(shared_dir, tmp_path):
    """The issue's acceptance run: SmolLM2-135M, all four variants, a few steps each (minutes on 2 cores)."""
    from sectune.study.api import study

    seed = [json.loads(line) for line in (shared_dir / "data" / "seed" / "output_01.jsonl").read_text().splitlines()]
    folder = tmp_path / "dataset"
    folder.mkdir()
    for name, rows in (("train", seed[:40]), ("validation", seed[40:44]), ("test", seed[44:52])):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps({**r, "meta": {}}) + "\n" for r in rows))
    cfg = load_config(
        None,
        [
            "train.max_steps=2",
            "train.batch_size=2",
            "train.stop_check.enabled=false",
            "eval.max_examples=4",
            "eval.max_new_tokens=16",
            "eval.max_questions=12",
            "eval.bootstrap_samples=200",
        ],
    )
    report_dir = study(cfg, folder, tmp_path / "study") / "report"
    report = json.loads((report_dir / "report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["base", "lora", "qlora", "full"]
    assert all((report_dir / p).stat().st_size > 5000 for p in ("loss_curves.png", "quality_vs_memory.png"))
    assert all(sorted(v["mcq"]["cyber-mini"]) == sorted(cfg.eval.mcq_scoring) for v in report["variants"])
    assert all(v["training"] for v in report["variants"][1:])
    _assert_markdown_shows_the_report(report, (report_dir / "report.md").read_text())


def test_cli_study_with_the_base_variant_only(tiny_model_dir, study_dataset, tmp_path):
    from typer.testing import CliRunner

    from sectune.cli.main import app

    out = tmp_path / "study-cli"
    sets = [arg for s in [f"model={tiny_model_dir}", *TINY, "study.variants=[base]"] for arg in ("--set", s)]
    result = CliRunner().invoke(app, ["study", str(study_dataset), "--out", str(out), *sets])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report" / "report.json").read_text())
    assert [v["variant"] for v in report["variants"]] == ["base"] and report["comparisons"] == []
    assert not (out / "runs").exists()  # nothing was trained
    assert (out / "report" / "loss_curves.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")  # "nothing to plot"


def test_study_refuses_a_folder_without_test_split(tmp_path):
    from sectune.errors import UserError
    from sectune.study.api import study

    with pytest.raises(UserError, match=r"test\.jsonl"):
        study(load_config(), tmp_path, tmp_path / "out")
