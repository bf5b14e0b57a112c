"""The study report's contamination line and clean-subset accuracies (issue 23): a difference that exists only on
questions the training data contains is not called real."""

from __future__ import annotations

import json
from pathlib import Path

from sectune.config import load_config
from sectune.evaluate.mcq import baselines, load_benchmark
from sectune.evaluate.stats import mean_with_interval, paired_difference
from sectune.study.cells import StudyCell
from sectune.study.report import ONLY_CONTAMINATED, build_report, fmt_interval, write_report

PLANTED = [0, 5, 9, 14, 21]  # cyber-mini questions copied into the training data
CLEAN_WINS = [1, 2, 3, 4, 6, 7, 8, 10, 11, 12]  # clean questions only the full variant gets right
SAMPLES = ["eval.bootstrap_samples=200"]
SEED = load_config().seed  # eval's intervals use the experiment's seed, as the report's clean ones do


def _row(user: str, assistant: str) -> str:
    return json.dumps({"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]})


def _dataset(folder: Path, *, planted: bool) -> Path:
    """train.jsonl with 15 unrelated rows (and, when ``planted``, 5 benchmark questions in other case and spacing);
    test.jsonl with 2 unrelated rows."""
    folder.mkdir()
    questions = load_benchmark("cyber-mini").questions
    rows = [
        _row(f"How do I rotate log file number {i} on host {i}?", f"Use logrotate with rule {i}.") for i in range(15)
    ]
    if planted:
        rows += [_row("  ".join(questions[i].question.upper().split()), "The answer is B.") for i in PLANTED]
    (folder / "train.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "test.jsonl").write_text(
        _row("Which port does SSH use?", "22.") + "\n" + _row("What is DNS?", "Names.") + "\n"
    )
    return folder


def _cell(variant: str, right: list[int]) -> StudyCell:
    bench = load_benchmark("cyber-mini")
    correct = [int(i in right) for i in range(len(bench.questions))]
    method = {
        "accuracy": mean_with_interval(correct, samples=200, seed=SEED),
        "pick_rate": {"A": 1.0},
        "correct": correct,
    }
    result = {
        "file": str(bench.path),
        "questions": len(correct),
        "methods": {"option": method},
        "baselines": {"uniform_random": {"value": 0.25, "n": len(correct)}},
    }
    return StudyCell(
        "tiny", variant, f"tiny/{variant}", train=None, eval={"mcq": {"cyber-mini": result}}, eval_dir=Path("e")
    )


def _cells() -> list[StudyCell]:
    return [_cell("base", []), _cell("lora", PLANTED), _cell("full", PLANTED + CLEAN_WINS)]


def _table(markdown: str, title: str) -> dict[str, list[str]]:
    section = markdown.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")][2:]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


def test_report_shows_both_accuracies_and_refuses_a_difference_only_on_contaminated_questions(tmp_path):
    report = build_report(load_config(None, SAMPLES), _cells(), dataset=_dataset(tmp_path / "ds", planted=True))

    contamination = report["contamination"]
    assert contamination["sets"]["cyber-mini"]["contaminated_items"] == PLANTED
    assert contamination["sets"]["test"]["contaminated"] == 0 and contamination["contaminating_train_rows"] == 5
    lora, full = report["variants"][1], report["variants"][2]
    assert lora["mcq"]["cyber-mini"]["option"]["value"] == round(5 / 24, 6)
    assert lora["mcq_clean"]["cyber-mini"]["option"] == {"value": 0.0, "ci_low": 0.0, "ci_high": 0.0, "n": 19}
    assert full["mcq_clean"]["cyber-mini"]["option"]["value"] == round(10 / 19, 6)

    # on all questions lora's 5 wins look real; they are exactly the contaminated questions
    assert paired_difference(lora_correct := _cells()[1].eval["mcq"]["cyber-mini"]["methods"]["option"]["correct"],
                             [0] * 24, samples=200)["verdict"] == "better"  # fmt: skip
    assert sum(lora_correct) == 5
    verdicts = {c["variant"]: (c["verdict"], c["significant"]) for c in report["comparisons"]}
    assert verdicts == {"lora": (ONLY_CONTAMINATED, False), "full": ("better", True)}
    assert next(c for c in report["comparisons"] if c["variant"] == "lora")["clean"]["difference"] == 0.0

    out = write_report(report, tmp_path / "report")
    stored = json.loads((out / "report.json").read_text())
    markdown, html = (out / "report.md").read_text(), (out / "report.html").read_text()
    assert "cyber-mini 5 of 24 questions (20.8%)" in markdown and "5 of 20 training rows contaminate" in markdown
    assert "cyber-mini 5 of 24 questions (20.8%)" in html
    variants = {v["label"]: v for v in stored["variants"]}
    on_all, on_clean = (
        _table(markdown, "MCQ accuracy: cyber-mini"),
        _table(markdown, "MCQ accuracy on clean questions: cyber-mini"),
    )
    for label, variant in variants.items():
        assert on_all[label] == [fmt_interval(variant["mcq"]["cyber-mini"]["option"])]
        assert on_clean[label] == [fmt_interval(variant["mcq_clean"]["cyber-mini"]["option"])]
    assert on_all["tiny/lora"] != on_clean["tiny/lora"]
    section = markdown.split("## Paired differences on the same questions\n", 1)[1]
    paired = [line.split(" | ") for line in section.splitlines() if line.startswith("| cyber-mini")]
    assert [(row[2], row[6]) for row in paired] == [("tiny/lora", ONLY_CONTAMINATED), ("tiny/full", "better")]


def test_without_contamination_clean_equals_all_and_verdicts_stand(tmp_path):
    report = build_report(load_config(None, SAMPLES), _cells(), dataset=_dataset(tmp_path / "ds", planted=False))
    assert report["contamination"]["contaminating_train_rows"] == 0
    for variant in report["variants"]:
        assert variant["mcq_clean"] == variant["mcq"]
    everything = baselines(load_benchmark("cyber-mini").questions, samples=200, seed=SEED)["longest_option"]
    assert report["baselines_clean"]["cyber-mini"]["longest_option"]["value"] == round(everything["value"], 6)
    assert [(c["verdict"], c["significant"]) for c in report["comparisons"]] == [("better", True), ("better", True)]


def test_a_dataset_without_a_train_split_is_reported_as_not_checked(tmp_path):
    folder = _dataset(tmp_path / "ds", planted=True)
    (folder / "train.jsonl").unlink()
    report = build_report(load_config(None, SAMPLES), _cells(), dataset=folder)
    assert report["contamination"]["checked"] is False and "no train.jsonl" in report["contamination"]["line"]
    assert all(v["mcq_clean"] == {} for v in report["variants"])
    assert [c["verdict"] for c in report["comparisons"]] == ["better", "better"]  # nothing to check against
