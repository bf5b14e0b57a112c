"""Issue 23: the study report's "where it is weak" tables (per topic, domain type, benchmark category) and plot."""

from __future__ import annotations

import json
from pathlib import Path

from sectune.config import load_config
from sectune.study.cells import StudyCell
from sectune.study.report import fmt_interval, render_markdown
from sectune.study.weak import weak_spot_tables, weak_spots


def _groups(*pairs):
    return [{"group": g, "n": n, "value": v, "ci_low": v - 0.1, "ci_high": v + 0.1} for g, v, n in pairs]


def _cell(variant, topic_groups):
    generation = {"breakdown": {"topic": {"rouge_l": topic_groups}}}
    return StudyCell("m", variant, f"m/{variant}", train=None, eval={"generation": generation}, eval_dir=Path("."))


def test_rows_follow_the_trained_variant_worst_first_and_every_variant_has_a_column():
    base = _cell("base", _groups(("A", 0.1, 2), ("B", 0.5, 3)))
    lora = _cell("lora", _groups(("B", 0.2, 3), ("A", 0.6, 2)))
    found = weak_spots([base, lora])
    section = found["held_out"]["topic"]
    assert section["reference"] == "m/lora" and section["metric"] == "rouge_l"
    stored = json.loads(json.dumps({"weak_spots": found}, sort_keys=True))  # as report.json keeps it
    [(title, header, rows)] = weak_spot_tables(stored, fmt_interval)
    assert title == "Where it is weak: held-out rouge_l by topic (worst first for m/lora)"
    assert header == ["group", "m/lora [95 % CI] (n)", "m/base [95 % CI] (n)"]
    assert rows == [["B", "0.2 [0.1, 0.3] (3)", "0.5 [0.4, 0.6] (3)"], ["A", "0.6 [0.5, 0.7] (2)", "0.1 [0, 0.2] (2)"]]


def test_base_only_study_report_has_the_topic_and_category_tables(tiny_model_dir, tmp_path):
    from sectune.study.api import study

    dataset = tmp_path / "dataset"
    dataset.mkdir()
    rows = []
    for topic, question, answer in [
        ("Security > Phishing", "What is phishing?", "Phishing emails trick users."),
        ("Security > Phishing", "How to spot phishing?", "Check the sender and the links."),
        ("Support > Passwords", "How do I reset my password?", "Open settings and choose reset."),
    ]:
        messages = [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        rows.append(json.dumps({"messages": messages, "meta": {"topic": topic, "domain_type": topic.split(" >")[0]}}))
    (dataset / "test.jsonl").write_text("\n".join(rows) + "\n")
    cfg = load_config(
        None,
        [f"model={tiny_model_dir}", "study.variants=[base]", "eval.max_new_tokens=4", "eval.bootstrap_samples=50",
         "eval.metrics=[rouge_l]", "eval.benchmarks=[cyber-mini]", "eval.mcq_scoring=[option]"],
    )  # fmt: skip
    report_dir = study(cfg, dataset, tmp_path / "study") / "report"
    report = json.loads((report_dir / "report.json").read_text())
    label = report["variants"][0]["label"]
    topics = report["weak_spots"]["held_out"]["topic"]["variants"][label]
    assert sorted(g["group"] for g in topics) == ["Security > Phishing", "Support > Passwords"]
    assert [g["value"] for g in topics] == sorted(g["value"] for g in topics)
    categories = report["weak_spots"]["mcq"]["cyber-mini"]["variants"][label]
    assert sum(g["n"] for g in categories) == 24
    markdown = (report_dir / "report.md").read_text()
    assert markdown == render_markdown(report)
    assert f"## Where it is weak: held-out rouge_l by topic (worst first for {label})" in markdown
    assert f"## Where it is weak: cyber-mini option accuracy by category (worst first for {label})" in markdown
    assert "## Where it is weak: held-out rouge_l by domain_type" in markdown.replace(" (worst", "\n")
    assert (report_dir / "weak_spots.png").stat().st_size > 5000
