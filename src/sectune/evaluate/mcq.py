"""Multiple-choice benchmarks: loaders for published formats, log-likelihood and generation scoring.

Formats (local files, read as published):
- CyberMetric JSON: ``{"questions": [{"question", "answers": {"A": ..}, "solution": "B"}]}``
- SecEval JSON (multi-answer): ``[{"id", "question", "choices": ["A: ..", ..], "answer": "AC"}]``
- CTIBench-MCQ TSV: columns ``Question``, ``Option A``..``Option D``, ``GT`` (others ignored)

Scoring (see ENVIRONMENT.md): *letter* reads the log-probability of each option letter right after the
chat template's assistant tag ("A", no space; " A" after a plain "Answer:"); *option* scores each option's
text as the answer, length-normalised (mean log-prob per token); *generate* lets the model answer and parses
the letter, counting invalid answers. The 135M model picks "A" for nearly everything under letter scoring,
so every result carries per-letter pick rates and, optionally, scores averaged over cyclic rotations of the
options, plus trivial baselines on the same questions.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from sectune.data.contamination import BENCHMARK_DIR, PACKAGED, benchmark_name  # one list of packaged sets
from sectune.errors import UserError
from sectune.evaluate.metrics import shared_prompt_logprobs
from sectune.evaluate.stats import mean_with_interval

INSTRUCTION_SINGLE = "Answer with the letter of the correct option."
INSTRUCTION_MULTI = "Answer with the letters of all correct options."


@dataclass(frozen=True)
class Question:
    id: str
    question: str
    options: dict[str, str]  # letter → text, in letter order
    answers: frozenset[str]  # one letter, or several for multi-answer benchmarks
    category: str | None = None  # the file's own category (CyberMetric "category", SecEval's first topic)


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: Path
    format: str
    questions: list[Question]

    @property
    def multi_answer(self) -> bool:
        return any(len(q.answers) > 1 for q in self.questions)


# ---------------------------------------------------------------- loaders


def load_benchmark(ref: str | Path, *, limit: int | None = None) -> Benchmark:
    """Load a packaged benchmark by name (``cyber-mini``…) or a local file; the format is detected."""
    path = _benchmark_path(ref)
    fmt = detect_format(path)
    loader = {"cybermetric": load_cybermetric, "seceval": load_seceval, "ctibench": load_ctibench}[fmt]
    questions = loader(path)
    if limit is not None:
        questions = questions[:limit]
    return Benchmark(name=benchmark_name(ref), path=path, format=fmt, questions=questions)


def _benchmark_path(ref: str | Path) -> Path:
    if str(ref) in PACKAGED:
        return BENCHMARK_DIR / PACKAGED[str(ref)]
    path = Path(ref).expanduser()
    if not path.is_file():
        raise UserError(
            f"benchmark '{ref}' not found",
            file=path,
            field="eval.benchmarks",
            fix=f"pass a CyberMetric/SecEval JSON or CTIBench TSV file, or one of: {', '.join(PACKAGED)}",
        )
    return path


def detect_format(path: Path) -> str:
    """'ctibench' for .tsv, 'cybermetric' for a JSON object with "questions", 'seceval' for a JSON list."""
    if path.suffix.lower() == ".tsv":
        return "ctibench"
    data = _read_json(path)
    if isinstance(data, dict) and "questions" in data:
        return "cybermetric"
    if isinstance(data, list):
        return "seceval"
    raise UserError(
        "unknown benchmark format",
        file=path,
        fix='use CyberMetric JSON {"questions": [...]}, a SecEval JSON list, or a CTIBench .tsv',
    )


def load_cybermetric(path: str | Path) -> list[Question]:
    """CyberMetric JSON: ``{"questions": [{question, answers{A..D}, solution}]}``."""
    path = Path(path)
    data = _read_json(path)
    items = data.get("questions") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise UserError("no question list", file=path, field="questions", fix='write {"questions": [ ... ]}')
    questions = []
    for index, item in enumerate(items):
        where = f"questions[{index}]"
        _require_mapping(item, path, where)
        text = _require_text(item, "question", path, where)
        answers = item.get("answers")
        if not isinstance(answers, dict) or len(answers) < 2:
            raise UserError(
                "needs at least two options",
                file=path,
                field=f"{where}.answers",
                fix='write "answers": {"A": "...", "B": "...", ...}',
            )
        options = _options_from_mapping(answers, path, f"{where}.answers")
        solution = str(item.get("solution", "")).strip().upper()
        if solution not in options:
            raise UserError(
                f"solution {item.get('solution')!r} is not one of the options",
                file=path,
                field=f"{where}.solution",
                fix=f"use one of {', '.join(options)}",
            )
        questions.append(Question(str(index), text, options, frozenset({solution}), _category(item.get("category"))))
    return questions


def _category(value: Any) -> str | None:
    """A question's category from a string or a list of them (SecEval's ``topics``: the first one)."""
    if isinstance(value, list):
        value = value[0] if value else None
    text = str(value).strip() if value is not None else ""
    return text or None


def load_seceval(path: str | Path) -> list[Question]:
    """SecEval JSON: a list of ``{id, question, choices: ["A: ..", ..], answer: "AC"}`` (multi-answer)."""
    path = Path(path)
    data = _read_json(path)
    if isinstance(data, dict) and isinstance(data.get("questions"), list):
        data = data["questions"]
    if not isinstance(data, list) or not data:
        raise UserError("no question list", file=path, fix="write a JSON list of SecEval questions")
    questions = []
    for index, item in enumerate(data):
        where = f"[{index}]"
        _require_mapping(item, path, where)
        text = _require_text(item, "question", path, where)
        choices = item.get("choices")
        if not isinstance(choices, list) or len(choices) < 2:
            raise UserError(
                "needs at least two choices",
                file=path,
                field=f"{where}.choices",
                fix='write "choices": ["A: ...", "B: ..."]',
            )
        options = _options_from_choices(choices, path, f"{where}.choices")
        answer = str(item.get("answer", "")).strip().upper().replace(",", "").replace(" ", "")
        letters = frozenset(answer)
        if not letters or not letters <= set(options):
            raise UserError(
                f"answer {item.get('answer')!r} names no valid option",
                file=path,
                field=f"{where}.answer",
                fix=f"use letters among {''.join(options)}, e.g. 'AC'",
            )
        category = _category(item.get("topics") or item.get("category"))
        questions.append(Question(str(item.get("id", index)), text, options, letters, category))
    return questions


def load_ctibench(path: str | Path) -> list[Question]:
    """CTIBench-MCQ TSV: ``Question``, ``Option A``..``Option D``, ``GT`` columns (tab-separated)."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
            header = rows[0].keys() if rows else []
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"cannot read TSV: {exc}", file=path, fix="save it as UTF-8 tab-separated text") from None
    needed = ["Question", "Option A", "Option B", "Option C", "Option D", "GT"]
    missing = [name for name in needed if name not in header]
    if not rows or missing:
        raise UserError(
            f"missing columns {missing or needed}",
            file=path,
            field="header",
            fix="use CTIBench's columns: Question, Option A..D, GT (tab-separated)",
        )
    questions = []
    for index, row in enumerate(rows):
        where = f"row {index + 2}"  # the header is line 1
        text = (row.get("Question") or "").strip()
        if not text:
            raise UserError("empty question", file=path, field=f"{where}.Question", fix="fill in the question")
        options = {}
        for letter in "ABCD":
            value = (row.get(f"Option {letter}") or "").strip()
            if not value:
                raise UserError("empty option", file=path, field=f"{where}.Option {letter}", fix="fill in the option")
            options[letter] = value
        gold = (row.get("GT") or "").strip().upper()
        if gold not in options:
            raise UserError(
                f"GT {row.get('GT')!r} is not A-D", file=path, field=f"{where}.GT", fix="write the correct letter"
            )
        questions.append(Question(str(index), text, options, frozenset({gold})))
    return questions


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"not valid JSON: {exc}", file=path, fix="fix the JSON syntax") from None


def _require_mapping(item: Any, path: Path, where: str) -> None:
    if not isinstance(item, dict):
        raise UserError("a question must be an object", file=path, field=where, fix="write {...} for each question")


def _require_text(item: dict[str, Any], key: str, path: Path, where: str) -> str:
    value = item.get(key)
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"missing or empty '{key}'", file=path, field=f"{where}.{key}", fix=f"write the {key} text")
    return value.strip()


def _options_from_mapping(answers: dict[str, Any], path: Path, where: str) -> dict[str, str]:
    options = {}
    for key in sorted(answers):
        letter, value = str(key).strip().upper(), answers[key]
        if not re.fullmatch(r"[A-Z]", letter) or not isinstance(value, str) or not value.strip():
            raise UserError(
                f"bad option {key!r}",
                file=path,
                field=f"{where}.{key}",
                fix="use single letters as keys and non-empty text as values",
            )
        options[letter] = value.strip()
    return options


def _options_from_choices(choices: list[Any], path: Path, where: str) -> dict[str, str]:
    options = {}
    for index, choice in enumerate(choices):
        match = re.match(r"^\s*\(?([A-Za-z])\s*[:.)]\s*(.+)$", choice, re.S) if isinstance(choice, str) else None
        if not match:
            raise UserError(
                f"bad choice {choice!r}", file=path, field=f"{where}[{index}]", fix="write each choice as 'A: text'"
            )
        options[match.group(1).upper()] = match.group(2).strip()
    return options


# ---------------------------------------------------------------- prompts


def question_messages(question: Question, *, multi: bool = False) -> list[dict[str, str]]:
    """The user turn that shows a question and its lettered options."""
    lines = [question.question, ""]
    lines += [f"{letter}. {text}" for letter, text in question.options.items()]
    lines += ["", INSTRUCTION_MULTI if multi else INSTRUCTION_SINGLE]
    return [{"role": "user", "content": "\n".join(lines)}]


def prompt_and_prefix(tokenizer: Any, question: Question, *, multi: bool = False) -> tuple[str, str]:
    """The scoring prompt and what precedes an answer letter: "" after a chat tag, " " after "Answer:"."""
    messages = question_messages(question, multi=multi)
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True), ""
    return messages[0]["content"] + "\nAnswer:", " "


def rotate(question: Question, shift: int) -> tuple[Question, list[int]]:
    """The question with option texts moved ``shift`` letters; and, per letter, the original option index."""
    letters = list(question.options)
    texts = list(question.options.values())
    n = len(letters)
    origin = [(i + shift) % n for i in range(n)]
    options = {letters[i]: texts[origin[i]] for i in range(n)}
    answers = frozenset(letters[i] for i in range(n) if letters[origin[i]] in question.answers)
    return Question(question.id, question.question, options, answers), origin


# ---------------------------------------------------------------- log-likelihood scoring


def option_scores(
    model: Any, tokenizer: Any, questions: Sequence[Question], method: str, *, multi: bool, batch_size: int = 8
) -> list[dict[str, float]]:
    """Per question, a score for every candidate answer (letter or set of letters): higher is preferred.

    ``letter``: log-prob of the letter (or, for multi-answer questions, of the sorted letter string, per token).
    ``option``: mean log-prob per token of the option's text as the answer.
    Single-token letters take one forward pass per question (the next-token distribution after the prompt);
    options are scored on their question's prompt computed once, and a batch's shared prefix (system prompt,
    chat header) once for the batch (``metrics.shared_prompt_logprobs``); batches are sorted by length.
    ``model`` is a local model or a :class:`Scorer` (an endpoint's log-likelihoods: the same numbers).
    """
    if method == "letter" and not multi and not isinstance(model, Scorer):
        fast = _letter_scores_one_pass(model, tokenizer, questions, batch_size=batch_size)
        if fast is not None:
            return fast
    prompts: list[list[int]] = []
    candidates: list[list[tuple[str, list[int]]]] = []
    for question in questions:
        prompt, prefix = prompt_and_prefix(tokenizer, question, multi=multi)
        prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        candidates.append(
            [
                (key, tokenizer(text, add_special_tokens=False)["input_ids"])
                for key, text in _candidates(question, method, multi=multi, prefix=prefix)
            ]
        )
    if isinstance(model, Scorer):
        return _endpoint_scores(model, prompts, candidates)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[dict[str, float]] = [{} for _ in questions]
    for batch in _length_sorted_batches(prompts, batch_size):
        conts = [[ids for _, ids in candidates[qi]] for qi in batch]
        _, per_token = shared_prompt_logprobs(model, [prompts[qi] for qi in batch], conts, pad)
        for qi, values in zip(batch, per_token, strict=True):
            scores[qi] = {
                key: float(np.mean(v)) if v else float("-inf")
                for (key, _), v in zip(candidates[qi], values, strict=True)
            }
    return scores


def _endpoint_scores(
    scorer: Scorer, prompts: list[list[int]], candidates: list[list[tuple[str, list[int]]]]
) -> list[dict[str, float]]:
    """Scores from an endpoint: every prompt + candidate sent at once (a server batches what it gets)."""
    jobs = [
        (qi, key, (prompts[qi] + ids, len(prompts[qi]))) for qi, cands in enumerate(candidates) for key, ids in cands
    ]
    scores: list[dict[str, float]] = [{} for _ in prompts]
    per_token = scorer.continuations([seq for _, _, seq in jobs]) if jobs else []
    for (qi, key, _), values in zip(jobs, per_token, strict=True):
        scores[qi][key] = float(np.mean(values)) if values else float("-inf")
    return scores


def _length_sorted_batches(prompts: Sequence[list[int]], batch_size: int) -> list[list[int]]:
    """Question indices in batches of similar prompt length, longest first (lm-eval's order): little padding,
    and a batch that runs out of memory does so at once."""
    order = sorted(range(len(prompts)), key=lambda qi: -len(prompts[qi]))
    size = max(batch_size, 1)
    return [order[start : start + size] for start in range(0, len(order), size)]


@runtime_checkable
class Scorer(Protocol):
    """Log-likelihoods from elsewhere (an endpoint): per sequence, the log-probs of the ids after its prompt."""

    def continuations(self, sequences: Sequence[tuple[list[int], int]]) -> list[list[float]]: ...


def _letter_scores_one_pass(
    model: Any, tokenizer: Any, questions: Sequence[Question], *, batch_size: int
) -> list[dict[str, float]] | None:
    """Letter scores from one forward per question; None when a letter is not a single token."""
    prompts, letter_ids = [], []
    for question in questions:
        prompt, prefix = prompt_and_prefix(tokenizer, question)
        prompts.append(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = {letter: tokenizer(prefix + letter, add_special_tokens=False)["input_ids"] for letter in question.options}
        if any(len(tokens) != 1 for tokens in ids.values()):
            return None
        letter_ids.append({letter: tokens[0] for letter, tokens in ids.items()})
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    scores: list[dict[str, float]] = [{} for _ in questions]
    for batch in _length_sorted_batches(prompts, batch_size):
        logprobs, _ = shared_prompt_logprobs(model, [prompts[qi] for qi in batch], [[] for _ in batch], pad)
        for qi, row in zip(batch, logprobs, strict=True):
            scores[qi] = {letter: float(row[token]) for letter, token in letter_ids[qi].items()}
    return scores


def _candidates(question: Question, method: str, *, multi: bool, prefix: str) -> list[tuple[str, str]]:
    letters = list(question.options)
    if method == "option":  # after "Answer:" (no chat template) the option is a new word: " Permanent"
        return [(letter, prefix + text) for letter, text in question.options.items()]
    if not multi:
        return [(letter, prefix + letter) for letter in letters]
    subsets = ["".join(c) for size in range(1, len(letters) + 1) for c in combinations(letters, size)]
    return [(subset, prefix + subset) for subset in subsets]


def predict(scores: dict[str, float], method: str, *, multi: bool) -> frozenset[str]:
    """The best candidate (ties → the first in letter order) as a set of letters."""
    best = max(scores, key=lambda key: (scores[key], -list(scores).index(key)))
    return frozenset(best) if (multi and method == "letter") else frozenset({best})


def rotated_option_scores(
    model: Any, tokenizer: Any, questions: Sequence[Question], method: str, *, batch_size: int = 8
) -> list[list[float]]:
    """Per question, each original option's score averaged over all cyclic rotations of the options.

    Each option sits once at every letter, so a pure preference for a letter adds the same to every option.
    """
    n_max = max(len(q.options) for q in questions)
    totals = [np.zeros(len(q.options)) for q in questions]
    for shift in range(n_max):
        rotated, origins = [], []
        for question in questions:
            rq, origin = rotate(question, shift % len(question.options))
            rotated.append(rq)
            origins.append(origin)
        scores = option_scores(model, tokenizer, rotated, method, multi=False, batch_size=batch_size)
        for qi, (question, origin) in enumerate(zip(rotated, origins, strict=True)):
            for position, letter in enumerate(question.options):
                totals[qi][origin[position]] += scores[qi][letter]
    return [list(total / n_max) for total in totals]


# ---------------------------------------------------------------- generation scoring


def parse_answer(text: str, letters: Sequence[str], *, multi: bool = False) -> frozenset[str] | None:
    """The letter(s) a free-text answer names, or None when it names none clearly (an invalid answer)."""
    valid = "".join(letters)
    cleaned = text.strip()
    stated = re.search(rf"answer\s*(?:is|:)?\s*\(?([{valid}](?:\s*(?:,|and|&)?\s*[{valid}])*)\)?\b", cleaned, re.I)
    leading = re.match(rf"^\(?([{valid}](?:\s*(?:,|and|&)?\s*[{valid}])*)\)?(?=[\s.):,]|$)", cleaned)
    match = leading or stated
    if not match:
        return None
    found = frozenset(ch for ch in match.group(1).upper() if ch in valid)
    if not found or (not multi and len(found) > 1):
        return None
    return found


def generated_predictions(
    model: Any, tokenizer: Any, questions: Sequence[Question], *, multi: bool, batch_size: int, max_new_tokens: int = 12
) -> tuple[list[frozenset[str] | None], list[str]]:
    """Let the model answer each question and parse its letter(s); None marks an invalid answer."""
    from sectune.models.generation import generate_chat

    conversations = [question_messages(q, multi=multi) for q in questions]
    outputs = generate_chat(model, tokenizer, conversations, max_new_tokens=max_new_tokens, batch_size=batch_size)
    texts = [out.text for out in outputs]
    return [parse_answer(t, list(q.options), multi=multi) for t, q in zip(texts, questions, strict=True)], texts


# ---------------------------------------------------------------- results


def summarise(
    questions: Sequence[Question], predictions: Sequence[frozenset[str] | None], *, samples: int, seed: int
) -> dict[str, Any]:
    """Accuracy with its 95 % bootstrap interval, per-letter pick rates, invalid-answer rate, per-question 0/1,
    and the accuracy per category (worst first) when the benchmark has categories."""
    from sectune.evaluate.breakdown import category_breakdown

    correct = [int(p is not None and p == q.answers) for p, q in zip(predictions, questions, strict=True)]
    letters = sorted({letter for q in questions for letter in q.options})
    picks = Counter(letter for p in predictions if p for letter in p)
    n = max(len(questions), 1)
    by_category = category_breakdown([q.category for q in questions], correct, samples=samples, seed=seed)
    extra = {"by_category": by_category} if by_category is not None else {}
    return {
        **extra,
        "accuracy": mean_with_interval(correct, samples=samples, seed=seed),
        "pick_rate": {letter: picks[letter] / n for letter in letters},
        "invalid_rate": sum(p is None for p in predictions) / n,
        "correct": correct,
        "predictions": ["".join(sorted(p)) if p else None for p in predictions],
    }


def baselines(questions: Sequence[Question], *, samples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Trivial baselines on the same questions: uniform random, most frequent gold letter, longest option.

    "Most frequent gold letter" peeks at the answers: it is the best any always-the-same-letter model can do.
    """
    multi = any(len(q.answers) > 1 for q in questions)
    chance = [1 / (2 ** len(q.options) - 1) if multi else 1 / len(q.options) for q in questions]
    gold_counts = Counter(letter for q in questions if len(q.answers) == 1 for letter in q.answers)
    frequent = gold_counts.most_common(1)[0][0] if gold_counts else "A"
    always = [int(q.answers == {frequent}) for q in questions]
    longest = [int(q.answers == {_longest_option(q)}) for q in questions]
    return {
        "uniform_random": {"value": float(np.mean(chance)) if chance else 0.0, "n": len(questions)},
        "most_frequent_gold_letter": {**mean_with_interval(always, samples=samples, seed=seed), "letter": frequent},
        "longest_option": mean_with_interval(longest, samples=samples, seed=seed),
    }


def _longest_option(question: Question) -> str:
    """The letter of the longest option text (ties: the first)."""
    return max(question.options, key=lambda letter: len(question.options[letter]))


def score_benchmark(
    model: Any,
    tokenizer: Any,
    benchmark: Benchmark,
    *,
    methods: Sequence[str] = ("letter", "option"),
    rotations: bool = False,
    batch_size: int = 8,
    samples: int = 1000,
    seed: int = 0,
    progress: str | None = None,
) -> dict[str, Any]:
    """Score one benchmark with each method; add rotation-averaged results and trivial baselines.

    ``progress`` names a tracker that counts the scoring passes (one per method, one more per rotation set).
    """
    from sectune.progress import track

    with track(progress or "mcq", _passes(methods, rotations, benchmark.multi_answer), unit="passes", show_rate=False,
               mode=None if progress else "off") as tracker:  # fmt: skip
        return _score_benchmark(
            model, tokenizer, benchmark, methods=methods, rotations=rotations, batch_size=batch_size,
            samples=samples, seed=seed, tracker=tracker,
        )  # fmt: skip


def _passes(methods: Sequence[str], rotations: bool, multi: bool) -> int:
    with_rotations = [m for m in methods if m != "generate" and rotations and not multi]
    return len(methods) + len(with_rotations)


def _score_benchmark(
    model: Any,
    tokenizer: Any,
    benchmark: Benchmark,
    *,
    methods: Sequence[str],
    rotations: bool,
    batch_size: int,
    samples: int,
    seed: int,
    tracker: Any,
) -> dict[str, Any]:
    questions, multi = benchmark.questions, benchmark.multi_answer
    result: dict[str, Any] = {
        "format": benchmark.format,
        "file": str(benchmark.path),
        "questions": len(questions),
        "multi_answer": multi,
        "gold": ["".join(sorted(q.answers)) for q in questions],
        "methods": {},
        "baselines": baselines(questions, samples=samples, seed=seed),
    }
    for method in methods:
        tracker.update(note=f"{len(questions)} questions, {method} scoring")
        if method == "generate":
            preds, texts = generated_predictions(model, tokenizer, questions, multi=multi, batch_size=batch_size)
            result["methods"][method] = {**summarise(questions, preds, samples=samples, seed=seed), "answers": texts}
            tracker.advance()
            continue
        scores = option_scores(model, tokenizer, questions, method, multi=multi, batch_size=batch_size)
        preds = [predict(s, method, multi=multi) for s in scores]
        result["methods"][method] = summarise(questions, preds, samples=samples, seed=seed)
        tracker.advance(note=f"{len(questions)} questions, {method} scoring over rotations" if rotations else None)
        if rotations and not multi:
            averaged = rotated_option_scores(model, tokenizer, questions, method, batch_size=batch_size)
            rotated_preds = [
                frozenset({list(q.options)[int(np.argmax(s))]}) for q, s in zip(questions, averaged, strict=True)
            ]
            result["methods"][f"{method}_rotated"] = summarise(questions, rotated_preds, samples=samples, seed=seed)
            tracker.advance()
    return result
