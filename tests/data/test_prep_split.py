"""Clean and split: whitespace, exact and near duplicates, determinism, stratification, no leakage."""

from __future__ import annotations

from pathlib import Path

from prep_samples import qa_rows

from sectune.config.prep import PrepConfig
from sectune.data.rows import SourcedRow
from sectune.data.split import leakage_pairs, normalise_text, split_rows

PATH = Path("in.jsonl")


def make_rows(pairs: list[tuple[str, str]], domains: list[str] | None = None) -> list[SourcedRow]:
    return [
        SourcedRow(
            [{"role": "user", "content": q}, {"role": "assistant", "content": a}],
            {"domain_type": domains[i]} if domains else {},
            f"line {i + 1}",
        )
        for i, (q, a) in enumerate(pairs)
    ]


def base_pairs(count: int = 24) -> list[tuple[str, str]]:
    return [(q, a) for q, a, _ in qa_rows(count)]


def test_normalise_text():
    assert normalise_text("  Hello \t  world \r\nnext\u00a0 line\n\n\n\nend  ") == "Hello world\nnext line\n\nend"
    assert normalise_text("cafe\u0301") == "café"


def test_exact_and_near_duplicates_are_removed_and_counted():
    pairs = base_pairs()
    question, answer = pairs[0]
    near = (question, answer.replace("rules", "rule sets"))  # one word changed in a long answer
    long_answer = " ".join(f"word{i}" for i in range(60))
    pairs += [
        pairs[1],
        pairs[2],
        ("Describe the long answer.", long_answer),
        ("Describe the long answer.", long_answer + " extra"),
    ]
    pairs.append(near)
    splits, report = split_rows(make_rows(pairs), PrepConfig(), seed=1, path=PATH)
    assert report["exact_duplicates_removed"] == 2
    # the long answer's near copy; the short near copy stays: its MinHash estimate of byte 5-gram Jaccard is 0.84
    assert report["near_duplicates_removed"] == 1
    assert sum(len(rows) for rows in splits.values()) == len(pairs) - 3
    assert report["leakage_pairs"] == 0


def test_split_is_deterministic_by_seed_and_sized():
    rows = make_rows(base_pairs(40))
    first, _ = split_rows(make_rows(base_pairs(40)), PrepConfig(), seed=7, path=PATH)
    again, _ = split_rows(make_rows(base_pairs(40)), PrepConfig(), seed=7, path=PATH)
    other, _ = split_rows(rows, PrepConfig(), seed=8, path=PATH)
    where = {name: [row.where for row in part] for name, part in first.items()}
    assert where == {name: [row.where for row in part] for name, part in again.items()}
    assert where != {name: [row.where for row in part] for name, part in other.items()}
    assert (len(first["train"]), len(first["validation"]), len(first["test"])) == (32, 4, 4)


def test_stratified_split_keeps_domain_proportions():
    triples = qa_rows(36)
    rows = make_rows([(q, a) for q, a, _ in triples], [d for _, _, d in triples])
    splits, report = split_rows(
        rows, PrepConfig(stratify_by="domain_type", test_size=1 / 6, validation_size=1 / 6), 3, PATH
    )
    assert report["strata"] == {"Cloud Computing": 12, "Cybersecurity": 12, "IT Support": 12}
    for name in ("validation", "test"):
        domains = sorted(row.meta["domain_type"] for row in splits[name])
        assert domains == [
            "Cloud Computing",
            "Cloud Computing",
            "Cybersecurity",
            "Cybersecurity",
            "IT Support",
            "IT Support",
        ]


def test_without_dedup_near_duplicates_stay_in_one_split():
    pairs = base_pairs(20)
    long_answer = " ".join(f"token{i}" for i in range(80))
    copies = [("Explain the item.", long_answer + f" tail{i}") for i in range(6)]  # one cluster of near copies
    splits, report = split_rows(make_rows(pairs + copies), PrepConfig(dedup=False), seed=0, path=PATH)
    holders = {name for name, part in splits.items() for row in part if "token0" in row.messages[1]["content"]}
    assert len(holders) == 1
    assert report["duplicate_clusters_kept_together"] >= 1
    assert leakage_pairs(splits, PrepConfig()) == []


def test_leakage_check_detects_a_crossing_pair():
    """The leakage check itself can fire."""
    long_answer = " ".join(f"token{i}" for i in range(80))
    rows = make_rows([("Q one?", long_answer), ("Q one?", long_answer + " end")])
    assert len(leakage_pairs({"train": rows[:1], "validation": rows[1:], "test": []}, PrepConfig())) == 1
