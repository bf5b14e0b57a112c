"""Contamination: does the training data already contain the test?

Every training row is checked against every benchmark question and every held-out (test split) row, two ways:

* **13-gram overlap**, the GPT-3 / lm-eval decontamination method: texts are normalised as everywhere in
  sectune (:func:`sectune.data.dedup.normalise`: lower case, runs of punctuation and whitespace one space) and
  split into words; a training row (its user and assistant text) contaminates an item when both hold the same
  run of 13 words. An item shorter than 13 words, and a benchmark question shorter than 13 words, is matched
  on all its words as one n-gram (otherwise it could never match).
* **MinHash near duplicates**, :mod:`sectune.data.dedup`'s definition at ``prep.near_dup_threshold``: a
  training row's prompt (its user turns) against a benchmark question, the question with its options, and a
  test row's prompt. The prompt, not the whole row: an answer appended to a copied question pulls the whole
  row's Jaccard far below any threshold, and a whole-row near duplicate of a test row is already refused by
  prep's leakage check. Near copies with a word changed every few words escape both checks (by design: they
  are no longer copies).

The n-grams of all items go into one dict once and the training rows stream past it (one lookup per window
whose first word starts some n-gram); one LSH index answers the near-duplicate queries. The cost grows with
the training rows, not with rows × items.

Benchmarks are read here as text only (question and options, in file order: the positions of eval's
per-question ``correct``): data sits below evaluate, so it cannot use ``sectune.evaluate.mcq``'s loaders;
tests check that both read the same questions from every packaged benchmark.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.data.dedup import NearDuplicateIndex, normalise, signature
from sectune.errors import UserError

NGRAM = 13
EXCERPT_CHARS = 80
HELD_OUT = "test"  # the name of the held-out set in every report
CONTAMINATION_FILE = "contamination.json"
# the same names and files as sectune.evaluate.mcq.PACKAGED (a test keeps them equal)
# The packaged benchmarks (src/sectune/resources/benchmarks), by the name eval.benchmarks uses: eval's loaders
# (evaluate.mcq, a floor up) read the same list.
PACKAGED = {
    "cyber-mini": "cyber-mini.json",
    "seceval-sample": "seceval-sample.json",
    "ctibench-sample": "ctibench-mcq-sample.tsv",
}
BENCHMARK_DIR = Path(__file__).resolve().parents[1] / "resources" / "benchmarks"
_CHOICE = re.compile(r"^\s*\(?([A-Za-z])\s*[:.)]\s*(.+)$", re.S)  # SecEval "A: text", as mcq reads it

Key = tuple[str, int]  # (set name, item index)


@dataclass(frozen=True)
class Item:
    """One thing the training data must not contain: a benchmark question or a held-out row."""

    source: str  # the benchmark's name, or HELD_OUT
    index: int  # position in the benchmark (as in eval's ``correct``) or in the test split
    id: str
    text: str  # all the item shows: question and options, or a test row's user and assistant text
    whole: tuple[str, ...] = ()  # also matched on all their words when under NGRAM words (the bare question)
    near: tuple[str, ...] = ()  # texts a training prompt must not nearly copy

    @property
    def key(self) -> Key:
        return (self.source, self.index)


@dataclass(frozen=True)
class Hit:
    """A training row that contaminates an item, and how."""

    row: int  # index of the training row among those checked
    where: str  # where the row came from (the input file's line or row)
    source: str
    item: int
    how: tuple[str, ...]  # "ngram", "near_duplicate"
    overlap: str | None  # the first shared n-gram (normalised words), for "ngram"
    excerpt: str  # the row's prompt, shortened


def words(text: str) -> list[str]:
    return normalise(text).split()


def ngrams(tokens: Sequence[str], n: int = NGRAM) -> set[str]:
    """The word n-grams of ``tokens`` as text; a text shorter than ``n`` words is one n-gram of all its words."""
    if len(tokens) < n:
        return {" ".join(tokens)} if tokens else set()
    return {" ".join(tokens[i : i + n]) for i in range(len(tokens) - n + 1)}


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def row_texts(messages: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """(prompt, text): the user turns, and the user and assistant turns (the system prompt is shared by most
    rows, so it is left out, as in dedup)."""
    prompt = "\n".join(str(m["content"]) for m in messages if m["role"] == "user")
    text = "\n".join(str(m["content"]) for m in messages if m["role"] in ("user", "assistant"))
    return prompt, text


def benchmark_item(source: str, index: int, id: str, question: str, options: Sequence[str]) -> Item:
    text = "\n".join([question, *options])
    return Item(source, index, id, text, whole=(question,), near=(question, text))


def held_out_item(index: int, where: str, messages: Sequence[dict[str, Any]]) -> Item:
    prompt, text = row_texts(messages)
    return Item(HELD_OUT, index, where, text, near=(prompt,))


# ---------------------------------------------------------------- the check


class ItemIndex:
    """Every item's n-grams (by length) and near-duplicate signatures, built once; :meth:`hits` per row."""

    def __init__(self, items: Iterable[Item], *, threshold: float, num_perm: int, n: int = NGRAM) -> None:
        self.n = n
        self.num_perm = num_perm
        self._grams: dict[int, dict[str, list[Key]]] = {}  # n-gram length → n-gram → items
        self._firsts: dict[int, set[str]] = {}  # n-gram length → first words (skips most windows unjoined)
        self._near = NearDuplicateIndex(threshold, num_perm)
        for item in items:
            self._add(item)

    def _add(self, item: Item) -> None:
        grams = ngrams(words(item.text), self.n)
        for text in item.whole:
            tokens = words(text)
            if 0 < len(tokens) < self.n:
                grams.add(" ".join(tokens))
        for gram in grams:
            tokens = gram.split(" ")
            self._grams.setdefault(len(tokens), {}).setdefault(gram, []).append(item.key)
            self._firsts.setdefault(len(tokens), set()).add(tokens[0])
        for which, text in enumerate(item.near):
            if words(text):
                self._near.add((item.key, which), signature(text, self.num_perm))

    def _ngram_hits(self, tokens: list[str]) -> dict[Key, str]:
        found: dict[Key, str] = {}
        for length, grams in self._grams.items():
            firsts = self._firsts[length]
            for start in range(len(tokens) - length + 1):
                if tokens[start] in firsts:
                    gram = " ".join(tokens[start : start + length])
                    for key in grams.get(gram, ()):
                        found.setdefault(key, gram)
        return found

    def _near_hits(self, prompt: str) -> set[Key]:
        if not len(self._near) or not words(prompt):
            return set()
        return {key for key, _ in self._near.query(signature(prompt, self.num_perm))}

    def hits(self, row: int, where: str, messages: Sequence[dict[str, Any]]) -> list[Hit]:
        prompt, text = row_texts(messages)
        by_ngram = self._ngram_hits(words(text))
        near = self._near_hits(prompt)
        found = []
        for key in sorted(set(by_ngram) | near):
            how = tuple(name for name, yes in (("ngram", key in by_ngram), ("near_duplicate", key in near)) if yes)
            found.append(Hit(row, where, key[0], key[1], how, by_ngram.get(key), excerpt(prompt)))
        return found


@dataclass
class Contamination:
    """What the check found: the sets checked (name → kind, file, size), the items, and every hit."""

    sets: dict[str, dict[str, Any]]
    items: dict[Key, Item]
    train_rows: int
    threshold: float
    n: int = NGRAM
    hits: list[Hit] = field(default_factory=list)

    def contaminated(self, source: str) -> list[int]:
        """Indices of the set's items that some training row contaminates."""
        return sorted({hit.item for hit in self.hits if hit.source == source})

    def contaminating_rows(self) -> list[int]:
        return sorted({hit.row for hit in self.hits})

    def summary(self, *, indices: bool = False) -> dict[str, Any]:
        """Counts per set (and, with ``indices``, the contaminated items' indices): for summary.json."""
        sets = {}
        for name, info in self.sets.items():
            found = self.contaminated(name)
            fraction = len(found) / info["items"] if info["items"] else 0.0
            entry = {**info, "contaminated": len(found), "fraction": fraction}
            if indices:
                entry["contaminated_items"] = found
            sets[name] = entry
        return {
            "ngram": self.n,
            "near_dup_threshold": self.threshold,
            "train_rows_checked": self.train_rows,
            "contaminating_train_rows": len(self.contaminating_rows()),
            "sets": sets,
        }

    def details(self) -> dict[str, Any]:
        """The summary plus, per contaminated item, the training rows that contain it: contamination.json."""
        rows: dict[Key, list[dict[str, Any]]] = {}
        for h in self.hits:
            rows.setdefault((h.source, h.item), []).append(
                {"row": h.row, "where": h.where, "how": list(h.how), "overlap": h.overlap, "excerpt": h.excerpt}
            )
        report = self.summary()
        for name, entry in report["sets"].items():
            entry["contaminated_items"] = [
                {**self._describe((name, index)), "train_rows": rows[(name, index)]}
                for index in self.contaminated(name)
            ]
        return report

    def _describe(self, key: Key) -> dict[str, Any]:
        item = self.items[key]
        return {"index": item.index, "id": item.id, "excerpt": excerpt(item.text)}

    def line(self) -> str:
        """One line: each set's contaminated share and how many training rows did it."""
        parts = []
        for name, entry in self.summary()["sets"].items():
            unit = "rows" if entry["kind"] == "held_out" else "questions"
            parts.append(f"{name} {entry['contaminated']} of {entry['items']} {unit} ({entry['fraction']:.1%})")
        rows = len(self.contaminating_rows())
        return f"{', '.join(parts) or 'nothing to check'}; {rows} of {self.train_rows} training rows contaminate"


def check(
    sets: dict[str, dict[str, Any]],
    items: Sequence[Item],
    train: Iterable[tuple[str, Sequence[dict[str, Any]]]],
    *,
    threshold: float,
    num_perm: int,
    n: int = NGRAM,
) -> Contamination:
    """Check every training row ``(where, messages)`` against every item; ``sets`` describes the items' sets."""
    index = ItemIndex(items, threshold=threshold, num_perm=num_perm, n=n)
    result = Contamination(sets, {item.key: item for item in items}, 0, threshold, n)
    for row, (where, messages) in enumerate(train):
        result.hits += index.hits(row, where, messages)
        result.train_rows += 1
    return result


# ---------------------------------------------------------------- benchmarks as text


def benchmark_path(ref: str | Path) -> Path:
    if str(ref) in PACKAGED:
        return BENCHMARK_DIR / PACKAGED[str(ref)]
    path = Path(ref).expanduser()
    if not path.is_file():
        raise UserError(
            f"benchmark '{ref}' not found (the contamination check reads eval.benchmarks)",
            file=path,
            field="eval.benchmarks",
            fix=f"pass a benchmark file or one of: {', '.join(PACKAGED)}; or set prep.decontaminate=off",
        )
    return path


def benchmark_name(ref: str | Path) -> str:
    """The name eval gives the benchmark (its key in eval results)."""
    return str(ref) if str(ref) in PACKAGED else Path(str(ref)).stem


def read_benchmark(ref: str | Path, *, limit: int | None = None) -> tuple[str, Path, list[Item]]:
    """(name, file, items) of a packaged benchmark or a CyberMetric/SecEval JSON or CTIBench TSV file."""
    path = benchmark_path(ref)
    name = benchmark_name(ref)
    texts = _tsv_texts(path) if path.suffix.lower() == ".tsv" else _json_texts(path)
    items = [benchmark_item(name, i, id, question, options) for i, (id, question, options) in enumerate(texts)]
    return name, path, items[:limit] if limit is not None else items


def _unreadable(path: Path, why: str) -> UserError:
    return UserError(
        f"cannot read the benchmark for the contamination check: {why}",
        file=path,
        field="eval.benchmarks",
        fix="check the file with sectune eval, or set prep.decontaminate=off",
    )


def _json_texts(path: Path) -> list[tuple[str, str, list[str]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _unreadable(path, f"not valid JSON ({exc})") from None
    if isinstance(data, dict) and isinstance(data.get("questions"), list):  # CyberMetric
        return [_cybermetric(item, i, path) for i, item in enumerate(data["questions"])]
    if isinstance(data, list):  # SecEval
        return [_seceval(item, i, path) for i, item in enumerate(data)]
    raise _unreadable(path, 'neither {"questions": [...]} nor a list of questions')


def _question(item: Any, index: int, path: Path) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("question"), str):
        raise _unreadable(path, f"question {index} has no 'question' text")
    return item["question"].strip()


def _cybermetric(item: Any, index: int, path: Path) -> tuple[str, str, list[str]]:
    question = _question(item, index, path)
    answers = item.get("answers")
    options = [str(answers[key]).strip() for key in sorted(answers)] if isinstance(answers, dict) else []
    return str(index), question, options


def _seceval(item: Any, index: int, path: Path) -> tuple[str, str, list[str]]:
    question = _question(item, index, path)
    choices = item.get("choices") if isinstance(item.get("choices"), list) else []
    options = []
    for choice in choices:
        match = _CHOICE.match(choice) if isinstance(choice, str) else None
        options.append(match.group(2).strip() if match else str(choice).strip())
    return str(item.get("id", index)), question, options


def _tsv_texts(path: Path) -> list[tuple[str, str, list[str]]]:
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise _unreadable(path, f"not a UTF-8 TSV ({exc})") from None
    if rows and "Question" not in rows[0]:
        raise _unreadable(path, "no Question column")
    return [
        (str(i), (row.get("Question") or "").strip(), [(row.get(f"Option {c}") or "").strip() for c in "ABCD"])
        for i, row in enumerate(rows)
    ]
