"""MCQ loaders (published formats, malformed files rejected) and the scorer against models with known answers."""

from __future__ import annotations

import json

import pytest

from sectune.errors import UserError
from sectune.evaluate import mcq
from sectune.evaluate.mcq import Benchmark, Question


def _cybermetric(tmp_path, questions):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"questions": questions}), encoding="utf-8")
    return path


GOOD = {"question": "Q?", "answers": {"A": "one", "B": "two", "C": "three", "D": "four"}, "solution": "B"}


def test_packaged_benchmarks_load_in_their_formats():
    cyber = mcq.load_benchmark("cyber-mini")
    assert cyber.format == "cybermetric" and len(cyber.questions) == 24 and not cyber.multi_answer
    seceval = mcq.load_benchmark("seceval-sample")
    assert seceval.format == "seceval" and seceval.multi_answer
    assert seceval.questions[0].answers == frozenset("AC") and seceval.questions[0].options["A"] == "AES"
    cti = mcq.load_benchmark("ctibench-sample")
    assert cti.format == "ctibench" and [q.answers for q in cti.questions][-1] == frozenset("D")


def test_cybermetric_seed_file_loads(shared_dir):
    bench = mcq.load_benchmark(shared_dir / "data" / "benchmarks" / "CyberMetric-80-v1.json")
    assert len(bench.questions) == 80 and all(len(q.options) == 4 for q in bench.questions)


@pytest.mark.parametrize(
    ("questions", "field"),
    [
        ([GOOD, {**GOOD, "solution": "E"}], "questions[1].solution"),
        ([GOOD, {**GOOD, "question": ""}], "questions[1].question"),
        ([{**GOOD, "answers": {"A": "only one"}}], "questions[0].answers"),
        ([{**GOOD, "answers": {"A": "x", "B": ""}}], "questions[0].answers.B"),
        ([], "questions"),
    ],
)
def test_cybermetric_loader_names_file_question_and_field(tmp_path, questions, field):
    path = _cybermetric(tmp_path, questions)
    with pytest.raises(UserError) as err:
        mcq.load_benchmark(path)
    assert err.value.field == field and err.value.file == str(path) and err.value.fix
    assert "\n" not in str(err.value)


def test_seceval_loader_rejects_bad_choices_and_answers(tmp_path):
    path = tmp_path / "sec.json"
    path.write_text(json.dumps([{"question": "Q?", "choices": ["A: x", "B y"], "answer": "A"}]))
    with pytest.raises(UserError, match=r"\[0\]\.choices\[1\]"):
        mcq.load_benchmark(path)
    path.write_text(json.dumps([{"question": "Q?", "choices": ["A: x", "B: y"], "answer": "AZ"}]))
    with pytest.raises(UserError, match=r"\[0\]\.answer"):
        mcq.load_benchmark(path)


def test_ctibench_loader_rejects_missing_columns_and_bad_gt(tmp_path):
    path = tmp_path / "cti.tsv"
    path.write_text("Question\tOption A\tOption B\tGT\nQ?\ta\tb\tA\n")
    with pytest.raises(UserError, match="missing columns"):
        mcq.load_benchmark(path)
    header = "URL\tQuestion\tOption A\tOption B\tOption C\tOption D\tPrompt\tGT\n"
    path.write_text(header + "u\tQ?\ta\tb\tc\td\tp\tA\nu\tQ2?\ta\tb\tc\td\tp\tX\n")
    with pytest.raises(UserError) as err:
        mcq.load_benchmark(path)
    assert err.value.field == "row 3.GT"


def test_invalid_json_and_missing_file_are_user_errors(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        mcq.load_benchmark(path)
    with pytest.raises(UserError, match="cyber-mini"):
        mcq.load_benchmark(tmp_path / "absent.json")


def _single_token(tokenizer, text):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == 1, f"{text!r} is not one token in the tiny tokenizer"
    return ids[0]


def test_letter_scoring_follows_the_model(tiny_tokenizer, forced_lm):
    bench = mcq.load_benchmark("cyber-mini")
    model = forced_lm(len(tiny_tokenizer), {_single_token(tiny_tokenizer, "C"): 6.0})
    result = mcq.score_benchmark(model, tiny_tokenizer, bench, methods=["letter"], samples=200)
    letter = result["methods"]["letter"]
    gold_c = sum(q.answers == {"C"} for q in bench.questions) / len(bench.questions)
    assert letter["pick_rate"]["C"] == 1.0 and letter["pick_rate"]["A"] == 0.0
    assert letter["accuracy"]["value"] == pytest.approx(gold_c)
    assert letter["correct"] == [int(q.answers == {"C"}) for q in bench.questions]


def test_option_scoring_finds_the_answer_the_model_knows(tiny_tokenizer, forced_lm):
    options = {"A": "phishing", "B": "firewall", "C": "ransomware", "D": "backups"}
    known = set(tiny_tokenizer("firewall", add_special_tokens=False)["input_ids"])
    others = {
        i for k, t in options.items() if k != "B" for i in tiny_tokenizer(t, add_special_tokens=False)["input_ids"]
    }
    assert not known & others  # precondition: the right option's tokens are its own
    questions = [Question(str(i), "Which device filters traffic?", options, frozenset({"B"})) for i in range(3)]
    bench = Benchmark("known", mcq.BENCHMARK_DIR, "cybermetric", questions)
    model = forced_lm(len(tiny_tokenizer), {i: 5.0 for i in known})
    result = mcq.score_benchmark(model, tiny_tokenizer, bench, methods=["option", "letter"], samples=100)
    assert result["methods"]["option"]["accuracy"]["value"] == 1.0
    assert result["methods"]["letter"]["accuracy"]["value"] == 0.0  # the letter B is not favoured: ties → A


def test_rotation_averaging_cancels_a_pure_letter_bias(tiny_tokenizer, forced_lm):
    bench = mcq.load_benchmark("cyber-mini", limit=4)
    biased = forced_lm(len(tiny_tokenizer), {_single_token(tiny_tokenizer, "A"): 6.0})
    plain = mcq.option_scores(biased, tiny_tokenizer, bench.questions, "letter", multi=False)
    assert len(plain) == len(bench.questions) == 4 and all(max(s, key=s.get) == "A" for s in plain)
    averaged = mcq.rotated_option_scores(biased, tiny_tokenizer, bench.questions, "letter")
    assert [len(scores) for scores in averaged] == [len(q.options) for q in bench.questions]
    for scores in averaged:
        assert max(scores) - min(scores) < 1e-5


def test_rotate_moves_texts_and_gold():
    question = Question("q", "Q?", {"A": "a", "B": "b", "C": "c"}, frozenset({"B"}))
    rotated, origin = mcq.rotate(question, 1)
    assert rotated.options == {"A": "b", "B": "c", "C": "a"} and rotated.answers == {"A"} and origin == [1, 2, 0]


@pytest.mark.parametrize(
    ("text", "multi", "expected"),
    [
        ("B", False, "B"),
        ("(C) because it filters", False, "C"),
        ("The answer is D.", False, "D"),
        ("Answer: A", False, "A"),
        ("I am not sure.", False, None),
        ("A and C", False, None),
        ("A, C", True, "AC"),
        ("", False, None),
    ],
)
def test_parse_answer(text, multi, expected):
    parsed = mcq.parse_answer(text, ["A", "B", "C", "D"], multi=multi)
    assert (None if parsed is None else "".join(sorted(parsed))) == expected


def test_summary_counts_invalid_answers_as_wrong():
    questions = [Question(str(i), "Q", {"A": "x", "B": "y"}, frozenset({"A"})) for i in range(4)]
    preds = [frozenset({"A"}), None, frozenset({"B"}), None]
    result = mcq.summarise(questions, preds, samples=100, seed=0)
    assert result["invalid_rate"] == 0.5 and result["accuracy"]["value"] == 0.25
    assert result["pick_rate"] == {"A": 0.25, "B": 0.25}


def test_trivial_baselines_by_hand():
    questions = [
        Question("1", "Q", {"A": "short", "B": "the longest option"}, frozenset({"A"})),
        Question("2", "Q", {"A": "x", "B": "longer", "C": "y"}, frozenset({"B"})),
        Question("3", "Q", {"A": "aa", "B": "b"}, frozenset({"A"})),
    ]
    base = mcq.baselines(questions, samples=100, seed=0)
    assert base["uniform_random"]["value"] == pytest.approx((1 / 2 + 1 / 3 + 1 / 2) / 3)
    assert base["most_frequent_gold_letter"]["letter"] == "A"
    assert base["most_frequent_gold_letter"]["value"] == pytest.approx(2 / 3)
    assert base["longest_option"]["value"] == pytest.approx(2 / 3)  # questions 2 and 3


def test_packaged_cyber_mini_cannot_be_passed_by_picking_the_longest_or_a_constant_letter():
    """The packaged set must measure knowledge: its trivial baselines stay at chance level (1 in 4)."""
    bench = mcq.load_benchmark("cyber-mini")
    base = mcq.baselines(bench.questions, samples=100, seed=0)
    assert base["longest_option"]["value"] <= 0.3
    assert base["most_frequent_gold_letter"]["value"] <= 0.3


def test_scoring_a_real_tiny_model_is_deterministic_and_batch_invariant(tiny_model_dir, tiny_tokenizer):
    from sectune.models.load import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    bench = mcq.load_benchmark("cyber-mini", limit=6)
    one = mcq.option_scores(model, tokenizer, bench.questions, "option", multi=False, batch_size=1)
    many = mcq.option_scores(model, tokenizer, bench.questions, "option", multi=False, batch_size=8)
    for a, b in zip(one, many, strict=True):
        assert max(abs(a[k] - b[k]) for k in a) < 1e-4
    first = mcq.score_benchmark(model, tokenizer, bench, methods=["letter", "option"], samples=100, seed=1)
    second = mcq.score_benchmark(model, tokenizer, bench, methods=["letter", "option"], samples=100, seed=1)
    assert first == second


def test_multi_answer_letter_scoring_scores_letter_sets(tiny_tokenizer, forced_lm):
    bench = mcq.load_benchmark("seceval-sample")
    model = forced_lm(len(tiny_tokenizer), {_single_token(tiny_tokenizer, "B"): 6.0})
    result = mcq.score_benchmark(model, tiny_tokenizer, bench, methods=["letter"], samples=100)
    letter = result["methods"]["letter"]
    assert letter["predictions"] == ["B"] * 4  # the single favoured letter beats every set containing others
    assert letter["accuracy"]["value"] == pytest.approx(0.25)  # only question s3's answer is exactly {B}


def test_one_pass_letter_scores_equal_the_continuation_scores(tiny_model_dir):
    from sectune.evaluate.metrics import continuation_logprobs
    from sectune.models.load import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    questions = mcq.load_benchmark("cyber-mini", limit=5).questions
    fast = mcq.option_scores(model, tokenizer, questions, "letter", multi=False, batch_size=2)
    for question, scores in zip(questions, fast, strict=True):
        prompt, prefix = mcq.prompt_and_prefix(tokenizer, question)
        ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        for letter in question.options:
            cont = tokenizer(prefix + letter, add_special_tokens=False)["input_ids"]
            (slow,) = continuation_logprobs(model, [(ids + cont, len(ids))], tokenizer.pad_token_id)
            assert scores[letter] == pytest.approx(sum(slow), abs=1e-4)


class RecordingScorer:
    """A Scorer that records the sequences it is asked to score (and scores them all 0)."""

    def __init__(self) -> None:
        self.sequences: list[tuple[list[int], int]] = []

    def continuations(self, sequences):
        self.sequences.extend(sequences)
        return [[0.0] * (len(ids) - n) for ids, n in sequences]


@pytest.mark.parametrize("method", ["option", "letter"])
def test_without_a_chat_template_candidates_follow_answer_colon_as_new_words(tiny_model_dir, method):
    """Issue 24 point 7: after "Answer:" an option is " Permanent", not "Permanent" glued on in odd tokens."""
    from sectune.models.load import load_tokenizer

    tokenizer = load_tokenizer(tiny_model_dir)
    tokenizer.chat_template = None  # a base model's tokenizer
    question = Question("q1", "What restores data?", {"A": "Backups", "B": "Ransomware"}, frozenset("A"))
    scorer = RecordingScorer()
    mcq.option_scores(scorer, tokenizer, [question], method, multi=False)
    continuations = [tokenizer.decode(ids[n:]) for ids, n in scorer.sequences]
    expected = [" Backups", " Ransomware"] if method == "option" else [" A", " B"]
    assert continuations == expected
    assert all(tokenizer.decode(ids[:n]).endswith("Answer:") for ids, n in scorer.sequences)
