"""The contamination check (issue 23): training rows against benchmark questions and the test split, by 13-gram
overlap and MinHash near duplicates; ``prep.decontaminate`` reports or drops the contaminating rows."""

from __future__ import annotations

import json
import random
import sys

import pytest

from sectune.data.contamination import HELD_OUT, Item, benchmark_item, check, read_benchmark
from sectune.data.rows import SourcedRow

SYLLABLES = ["ka", "to", "mi", "ru", "se", "lo", "ne", "vi", "da", "po", "fe", "gu", "zan", "bex"]
# how the planted copies are written: only whitespace and case differ from the benchmark's question
PARAPHRASES = [
    str.upper,
    lambda q: "  ".join(q.split()),
    lambda q: "\n".join(q.lower().split()),
    lambda q: "\t" + q.swapcase() + "   ",
    str.title,
]


def _babble(rng: random.Random, count: int) -> str:
    """``count`` made-up words: text that shares no word with any benchmark."""
    return " ".join("".join(rng.choices(SYLLABLES, k=rng.randint(2, 3))) for _ in range(count))


def _flat(text: str) -> str:
    return " ".join(text.lower().split())


def _messages(user: str, assistant: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]


def _planted_questions():
    """Five cyber-mini questions: three of 13 words or more, two shorter (matched on all their words)."""
    _, _, items = read_benchmark("cyber-mini")
    lengths = {item.index: len(item.whole[0].split()) for item in items}
    long = [i for i, n in lengths.items() if n >= 13][:3]
    short = sorted((i for i in lengths if lengths[i] < 13), key=lengths.get)[:2]  # the shortest: 5 and 7 words
    return [items[i] for i in sorted(long + short)]


def _training_rows(planted):
    """200 rows: 195 made-up ones and, at fixed places, the planted questions (paraphrased) with an answer."""
    rng = random.Random(7)
    rows = [_messages(_babble(rng, 12) + "?", _babble(rng, 25) + ".") for _ in range(195)]
    at = [3, 50, 99, 150, 198]
    for place, item, paraphrase in zip(at, planted, PARAPHRASES, strict=True):
        rows.insert(place, _messages(paraphrase(item.whole[0]), _babble(rng, 20) + "."))
    assert len(rows) == 200
    return rows, at


def _cyber_mini():
    name, file, items = read_benchmark("cyber-mini")
    return {name: {"kind": "benchmark", "file": str(file), "items": len(items)}}, items


def _check(sets, items, rows, n=13):
    return check(sets, items, [(f"row {i}", m) for i, m in enumerate(rows)], threshold=0.85, num_perm=128, n=n)


def test_the_check_finds_exactly_the_planted_questions():
    planted = _planted_questions()
    rows, at = _training_rows(planted)
    sets, items = _cyber_mini()
    found = _check(sets, items, rows)
    assert found.contaminating_rows() == at
    assert found.contaminated("cyber-mini") == [item.index for item in planted]
    assert all("ngram" in hit.how for hit in found.hits)  # case and whitespace do not hide a copy
    summary = found.summary()["sets"]["cyber-mini"]
    assert (summary["contaminated"], summary["items"]) == (5, 24) and summary["fraction"] == 5 / 24


def test_a_near_copy_that_breaks_every_13_gram_is_a_minhash_near_duplicate():
    sets, items = _cyber_mini()
    question = next(item for item in items if len(item.whole[0].split()) == 17).whole[0]
    words = question.split()
    words[8] += "s"  # word 9 of 17: every 13-word window holds it
    found = _check(sets, items, [_messages(" ".join(words), "Yes.")])
    assert [hit.how for hit in found.hits] == [("near_duplicate",)]


def _opening(question: str) -> str:
    """The first six words, or all but the last two of a shorter question: a phrase, never the question."""
    words = question.split()
    return " ".join(words[: min(6, len(words) - 2)])


def test_unrelated_rows_sharing_common_short_phrases_are_not_flagged():
    """Rows that share the opening words of every question, and everyday phrases, are not copies."""
    rng = random.Random(3)
    sets, items = _cyber_mini()
    phrases = ["what is the main purpose of", "multi-factor authentication", "in order to", "which attack"]
    rows = [
        _messages(
            _opening(item.whole[0]) + " " + _babble(rng, 10) + "?",
            f"{rng.choice(phrases)} {_babble(rng, 8)}, {rng.choice(phrases)} {_babble(rng, 8)}.",
        )
        for item in items
    ]
    assert _check(sets, items, rows).hits == []
    assert _check(sets, items, rows, n=6).hits  # the rows do share 6-word runs with the questions


def test_a_train_row_holding_test_text_is_held_out_leakage_and_drop_removes_it(cfg):
    from sectune.data.api import _decontaminate

    rng = random.Random(5)
    sentence = _babble(rng, 20)
    test_row = SourcedRow(_messages("What does " + _babble(rng, 6) + " mean?", sentence + "."), {}, "line 1")
    copies_answer = SourcedRow(_messages(_babble(rng, 9) + "?", _babble(rng, 5) + " " + sentence), {}, "line 2")
    copies_prompt = SourcedRow(_messages(test_row.messages[0]["content"], _babble(rng, 15)), {}, "line 3")
    unrelated = SourcedRow(_messages(_babble(rng, 9) + "?", _babble(rng, 20)), {}, "line 4")
    splits = {"train": [copies_answer, copies_prompt, unrelated], "validation": [], "test": [test_row]}

    result = _decontaminate(cfg("eval.benchmarks=[]", "prep.decontaminate=drop"), splits, "in.jsonl")
    assert splits["train"] == [unrelated]
    summary = result["summary"]
    assert summary["dropped_train_rows"] == 2 and summary["sets"][HELD_OUT]["contaminated"] == 1
    rows = result["details"]["sets"][HELD_OUT]["contaminated_items"][0]["train_rows"]
    assert [(r["where"], r["how"]) for r in rows] == [("line 2", ["ngram"]), ("line 3", ["near_duplicate"])]

    off = {"train": [copies_answer], "validation": [], "test": [test_row]}
    assert _decontaminate(cfg("prep.decontaminate=off"), off, "in.jsonl") is None and off["train"] == [copies_answer]


@pytest.mark.parametrize("mode", ["report", "drop", "off"])
def test_prep_reports_or_drops_exactly_the_planted_rows(mode, tmp_path, cfg, family_tokenizer, caplog):
    from sectune.data.api import prepare

    planted = _planted_questions()
    rows, at = _training_rows(planted)
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps({"messages": m}) + "\n" for m in rows), encoding="utf-8")
    settings = cfg("prep.validation_size=0", "prep.test_size=0", f"prep.decontaminate={mode}")
    out = prepare(settings, source, tmp_path / "ds", tokenizer=family_tokenizer("smollm2"))

    train = [json.loads(line)["messages"] for line in (out / "train.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    kept = [m for i, m in enumerate(rows) if i not in at] if mode == "drop" else rows
    assert [_flat(m[0]["content"]) for m in train] == [_flat(m[0]["content"]) for m in kept]  # exactly those 5 gone
    assert summary["counts"]["train"] == len(kept) == (195 if mode == "drop" else 200)
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "contamination" in r.getMessage()]
    if mode == "off":
        assert summary["contamination"] is None and not (out / "contamination.json").exists() and not warned
        return
    assert len(warned) == 1 and "cyber-mini 5 of 24 questions" in warned[0]
    assert ("dropped the 5 rows" in warned[0]) == (mode == "drop")
    assert summary["contamination"]["dropped_train_rows"] == (5 if mode == "drop" else 0)
    assert summary["contamination"]["sets"]["cyber-mini"]["contaminated"] == 5
    details = json.loads((out / "contamination.json").read_text())
    flagged = details["sets"]["cyber-mini"]["contaminated_items"]
    assert [entry["index"] for entry in flagged] == [item.index for item in planted]
    assert [row["where"] for entry in flagged for row in entry["train_rows"]] == [f"line {i + 1}" for i in at]
    assert all(entry["excerpt"] and entry["train_rows"][0]["excerpt"] for entry in flagged)


def test_a_bad_decontaminate_value_is_a_one_line_config_error(tmp_path, monkeypatch, capsys):
    from sectune.cli.main import main

    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps({"messages": _messages("q?", "a.")}) + "\n")
    argv = ["sectune", "prep", str(source), "--out", str(tmp_path / "ds"), "--set", "prep.decontaminate=remove"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "prep.decontaminate" in err and "'off', 'report', 'drop'" in err and "remove" in err
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("name", ["cyber-mini", "seceval-sample", "ctibench-sample"])
def test_prep_reads_the_same_questions_as_eval(name):
    """data cannot import evaluate's loaders (layering): its text reader must agree with them, in order."""
    from sectune.data import contamination
    from sectune.evaluate.mcq import PACKAGED, load_benchmark

    assert contamination.PACKAGED == PACKAGED
    benchmark = load_benchmark(name)
    read_name, path, items = read_benchmark(name)
    expected = [
        benchmark_item(name, i, q.id, q.question, list(q.options.values())) for i, q in enumerate(benchmark.questions)
    ]
    assert (read_name, path) == (benchmark.name, benchmark.path) and items == expected
    assert all(isinstance(item, Item) and item.text for item in items)


def test_a_bare_yaml_off_turns_the_check_off(tmp_path):
    from sectune.config import load_config

    config = tmp_path / "prep.yaml"
    config.write_text("prep:\n  decontaminate: off\n")  # YAML 1.1 reads a bare off as false
    assert load_config(config).prep.decontaminate == "off"
    assert load_config().prep.decontaminate == "report"
