"""The study report: Markdown/HTML rendered from report.json carry exactly its numbers; plots are real PNGs."""

from __future__ import annotations

import json
import re
from pathlib import Path

from sectune.config import load_config
from sectune.study.cells import StudyCell
from sectune.study.report import PAIRWISE_FIELDS, build_report, fmt, fmt_interval, write_report


def _cell(variant, correct, *, rouge, memory=None, steps=()):
    train = None
    if variant != "base":
        train = {
            "train_runtime_s": 36.0,
            "tokens_per_s": 151.25,
            "peak_memory_mb": memory,
            "trainable_params": 4096,
            "total_params": 135_000_000,
            "final_train_loss": 1.2345,
            "eval_loss": 1.5,
            "log_history": [{"step": s, "loss": 2.0 / s} for s in steps],
        }
    methods = {
        "option": {
            "accuracy": {"value": sum(correct) / len(correct), "ci_low": 0.1, "ci_high": 0.9, "n": len(correct)},
            "pick_rate": {"A": 0.5, "B": 0.5},
            "correct": correct,
        }
    }
    baselines = {
        "uniform_random": {"value": 0.25, "n": len(correct)},
        "longest_option": {"value": 0.4, "ci_low": 0.2, "ci_high": 0.6, "n": len(correct)},
    }
    pairwise = None
    if variant != "base":
        pairwise = {
            "candidate_wins": 3,
            "baseline_wins": 1,
            "ties": 0,
            "inconsistent": 1,
            "agreement": 0.8,
            "first_position_rate": 0.625,
            "parse_failures": 2,
            "outcomes": ["candidate"] * 5,
        }
    return StudyCell(
        model="tiny",
        variant=variant,
        label=f"tiny/{variant}",
        train=train,
        judge_pairwise=pairwise,
        eval={
            "generation": {"rouge_l": {"value": rouge, "ci_low": rouge / 2, "ci_high": rouge * 1.5}},
            "judge_absolute": {"mean_score": 3.25, "parse_failures": 1},
            "mcq": {"bench": {"methods": methods, "baselines": baselines}},
        },
        eval_dir=Path("evals") / f"tiny-{variant}",  # not read by the report
    )


def _cells():
    return [
        _cell("base", [0] * 40, rouge=0.123456),
        _cell("lora", [1] * 40, rouge=0.3456789, memory=2450.5, steps=(1, 2, 3)),
        _cell("full", [1, 0] * 20, rouge=0.2, memory=3150.0, steps=(1, 2)),
    ]


def _md_rows(markdown, title):
    """The body rows of the Markdown table under ``## title`` as lists of cells."""
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines]


def test_markdown_and_html_numbers_equal_report_json(tmp_path):
    cfg = load_config(None, ["study.price_per_hour=2.0", "eval.bootstrap_samples=200"])
    out = write_report(build_report(cfg, _cells(), dataset=tmp_path), tmp_path / "report")
    report = json.loads((out / "report.json").read_text())
    markdown = (out / "report.md").read_text()
    html = (out / "report.html").read_text()

    training = {row[0]: row for row in _md_rows(markdown, "Training")}
    for variant in report["variants"]:
        row = training[variant["label"]]
        t = variant["training"] or {}
        expected = [
            fmt(t.get(k))
            for k in (
                "train_runtime_s",
                "tokens_per_s",
                "peak_memory_mb",
                "trainable_params",
                "total_params",
                "final_train_loss",
                "eval_loss",
                "estimated_cost_usd",
            )
        ]
        assert row[1:] == expected
        for cell in row[1:]:
            assert cell in html
    lora = next(v for v in report["variants"] if v["variant"] == "lora")
    assert lora["training"]["estimated_cost_usd"] == 0.02  # 36 s at 2 USD/h
    # every printed number parses back to exactly the JSON value
    assert float(training["tiny/lora"][2]) == lora["training"]["tokens_per_s"] == 151.25
    assert float(training["tiny/lora"][6]) == lora["training"]["final_train_loss"] == 1.2345

    quality = {row[0]: row for row in _md_rows(markdown, "Held-out generation quality (95 % bootstrap intervals)")}
    for variant in report["variants"]:
        assert quality[variant["label"]][1] == fmt_interval(variant["quality"]["rouge_l"])
        value, low, high = re.findall(r"^(\S+) \[(.*), (.*)\]$", quality[variant["label"]][1])[0]
        entry = variant["quality"]["rouge_l"]
        assert (float(value), float(low), float(high)) == (entry["value"], entry["ci_low"], entry["ci_high"])

    mcq = {row[0]: row for row in _md_rows(markdown, "MCQ accuracy: bench")}
    assert mcq["baseline: longest_option"][1] == fmt_interval(report["baselines"]["bench"]["longest_option"])
    assert mcq["tiny/full"][1] == fmt_interval(
        next(v for v in report["variants"] if v["variant"] == "full")["mcq"]["bench"]["option"]
    )

    picks = _md_rows(markdown, "Letter pick rates: bench")
    assert picks[0] == ["tiny/base", "option", "0.5", "0.5"] and len(picks) == 3

    judged = {row[0]: row for row in _md_rows(markdown, "LLM judge: each variant vs its base model (both orders)")}
    assert set(judged) == {"tiny/lora", "tiny/full"}
    lora_judge = next(v for v in report["variants"] if v["variant"] == "lora")["judge_pairwise"]
    assert judged["tiny/lora"][1:] == [fmt(lora_judge[k]) for k in PAIRWISE_FIELDS] and "outcomes" not in lora_judge
    assert quality["tiny/base"][-1] == "3.25"  # the judge's mean 1–5 score

    comparisons = _md_rows(markdown, "Paired differences on the same questions")
    by_variant = {row[2]: row for row in comparisons}
    for entry in report["comparisons"]:
        row = by_variant[entry["label"]]
        assert row[5] == fmt(entry["mcnemar_p"]) and row[6] == entry["verdict"]
    assert by_variant["tiny/lora"][6] == "better"  # 40/40 vs 0/40 on the same questions
    assert by_variant["tiny/full"][6] == "better"  # 20/40 vs 0/40: McNemar p = 2 * 0.5^20
    assert next(c for c in report["comparisons"] if c["variant"] == "full")["mcnemar_p"] < 1e-5


def test_noise_is_reported_as_noise(tmp_path):
    cells = [_cell("base", [1, 0, 1, 0, 1, 0], rouge=0.1), _cell("lora", [0, 1, 1, 0, 1, 0], rouge=0.1, memory=1.0)]
    report = build_report(load_config(None, ["eval.bootstrap_samples=200"]), cells, dataset=tmp_path)
    assert [c["verdict"] for c in report["comparisons"]] == ["within noise"]


def test_plots_are_non_empty_pngs(tmp_path):
    out = write_report(build_report(load_config(), _cells(), dataset=tmp_path), tmp_path / "report")
    for name in ("loss_curves.png", "quality_vs_memory.png"):
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000


def test_process_peak_memory_is_flagged(tmp_path):
    from sectune.study.report import PEAK_RSS_NOTE, render_markdown

    cells = _cells()
    assert PEAK_RSS_NOTE not in render_markdown(build_report(load_config(), cells, dataset=tmp_path))
    cells[1].train["peak_memory_kind"] = "peak_rss_sampled"
    report = build_report(load_config(), cells, dataset=tmp_path)
    assert report["variants"][1]["training"]["peak_memory_kind"] == "peak_rss_sampled"
    assert PEAK_RSS_NOTE in render_markdown(report)
