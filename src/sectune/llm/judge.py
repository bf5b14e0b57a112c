"""LLM-as-judge, written once for every stage: the prompts, the score parsing and the pairwise flow.

generate's quality filter scores a sample 1–5 as training data (:func:`sample_messages`); eval and the study
score answers 1–5 against a reference answer (:func:`judge_absolute`) and compare two models' answers
(:func:`judge_pairwise`). Every request goes through :class:`~sectune.llm.requests.Caller` (limits, retries,
the response cache of :mod:`sectune.llm.cache`).

A verdict that does not parse, was cut off at ``max_tokens`` or whose request failed after the retries is
excluded and counted, each kind apart (``parse_failures``, ``truncated``, ``transport_failures``), never turned
into a score (openai/evals #1712). An answer whose own generation request failed (``None``; a prediction row
with ``finish_reason: "error:<kind>"``) is not judged at all: counted in ``skipped_failed``.

Pairwise judging asks both orders (A/B and B/A) so that position bias cancels, and reports agreement between the
orders and how often the first position wins.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from sectune.llm.base import Messages, Provider
from sectune.llm.requests import Caller

if TYPE_CHECKING:
    from sectune.config.evaluate import JudgeConfig

T = TypeVar("T")
V = TypeVar("V")
JUDGE_CACHE_FOLDER = "judge"  # the eval judge's response cache: <sectune cache dir>/judge/cache.sqlite

RUBRIC = """Score the ANSWER to the QUESTION from 1 to 5 against the REFERENCE answer:
5 = correct, complete and clear; 4 = correct with minor gaps; 3 = partly correct or vague;
2 = mostly wrong or off-topic but related; 1 = wrong, harmful or empty.
Reply with JSON only: {"score": <1-5>, "reason": "<one sentence>"}"""

PAIRWISE = """Two assistants answered the same QUESTION. Using the REFERENCE answer as a guide, decide which
answer is better (more correct, complete and clear). Reply with JSON only:
{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}"""

# The 1–5 score as a JSON field (also inside JSON that does not parse as a whole) or a lone digit.
_SCORE_FIELD = re.compile(r'"score"\s*:\s*"?([1-5])\b')
_LONE_SCORE = re.compile(r"\s*([1-5])\s*\.?\s*")


# Why a verdict is missing, counted apart in every summary: the request failed after the retries (a server
# or network problem: fix the judge's server), the answer was cut at max_tokens (raise judge.max_tokens), or
# it finished but holds no valid verdict (a prompt or model problem).
TRANSPORT, TRUNCATED, UNPARSEABLE = "transport_failures", "truncated", "parse_failures"
FAILURES = (TRANSPORT, TRUNCATED, UNPARSEABLE)  # also the order a failed pairwise question is counted under


@dataclass(frozen=True)
class Outcome(Generic[V]):
    """One judged prompt: its value, or why there is none (one of FAILURES) and the request's error kind."""

    value: V | None
    failure: str | None = None
    error: str | None = None  # timeout, server_error, auth…: for a transport failure


class AbsoluteVerdict(BaseModel):
    score: int = Field(ge=1, le=5)
    reason: str = ""


class PairwiseVerdict(BaseModel):
    winner: Literal["A", "B", "tie"]
    reason: str = ""


# --- prompts -------------------------------------------------------------------------------------------------
def sample_messages(turns: Sequence[tuple[str, str]]) -> Messages:
    """generate's quality judge: rate a generated sample (its question/answer turns) as training data."""
    text = "".join(f"Question: {q}\nAnswer: {a}\n" for q, a in turns)
    what = "question and answer" if len(turns) == 1 else "conversation"
    user = (
        f"Rate this {what} as training data for a helpful domain assistant, from 1 (useless or wrong) "
        "to 5 (accurate, complete, clear).\n"
        f"{text}"
        'Reply with only JSON: {"score": <1-5>}'
    )
    return [{"role": "user", "content": user}]


def absolute_messages(question: str, reference: str, answer: str) -> Messages:
    content = f"{RUBRIC}\n\nQUESTION:\n{question}\n\nREFERENCE:\n{reference}\n\nANSWER:\n{answer}"
    return [{"role": "user", "content": content}]


def pairwise_messages(question: str, reference: str, first: str, second: str) -> Messages:
    content = (
        f"{PAIRWISE}\n\nQUESTION:\n{question}\n\nREFERENCE:\n{reference}\n\nANSWER A:\n{first}\n\nANSWER B:\n{second}"
    )
    return [{"role": "user", "content": content}]


# --- parsing -------------------------------------------------------------------------------------------------
def parse_verdict(text: str, schema: type[BaseModel]) -> BaseModel | None:
    """The first JSON object in ``text`` validated against ``schema``, or None when there is none."""
    for match in re.finditer(r"\{[^{}]*\}", text, re.S):
        try:
            return schema.model_validate(json.loads(match.group(0)))
        except (json.JSONDecodeError, ValidationError):
            continue
    return None


def parse_score(text: str) -> int | None:
    """The 1–5 score in a judge's answer; None when unparseable (never a guess).

    A JSON verdict ``{"score": n, ...}``, else a ``"score": n`` field in JSON that does not parse, else a lone
    digit. Out of range (0, 9, 45) or free text ("4/5, quite good") is None.
    """
    verdict = parse_verdict(text, AbsoluteVerdict)
    if isinstance(verdict, AbsoluteVerdict):
        return verdict.score
    match = _SCORE_FIELD.search(text) or _LONE_SCORE.fullmatch(text)
    return int(match.group(1)) if match else None


def parse_pairwise(text: str) -> PairwiseVerdict | None:
    verdict = parse_verdict(text, PairwiseVerdict)
    return verdict if isinstance(verdict, PairwiseVerdict) else None


def request_failed(row: dict[str, Any]) -> bool:
    """A prediction row whose generation request failed (``finish_reason: "error:<kind>"``): nothing to judge."""
    return str(row.get("finish_reason") or "").startswith("error")


# --- the judge -----------------------------------------------------------------------------------------------
class Judge:
    """Verdicts from a provider through a :class:`Caller` (its limits, retries and cache)."""

    def __init__(self, caller: Caller, *, temperature: float = 0.0) -> None:
        self.caller = caller
        self.params: dict[str, Any] = {"temperature": temperature}  # content-shaping: part of the cache key

    @property
    def provider(self) -> Provider:
        return self.caller.provider

    async def reply(self, messages: Messages) -> Outcome[str]:
        """The text of a normally finished answer, else why there is none.

        Transient errors (429, 5xx, timeouts, connection) were already retried by the :class:`Caller`.
        """
        result = await self.caller.call(messages, self.params)
        completion = result.completion
        if completion is None:
            return Outcome(None, TRANSPORT, result.error.kind if result.error else None)
        if completion.finish_reason == "length":
            return Outcome(None, TRUNCATED)
        if completion.finish_reason != "stop":  # a content filter's refusal: an answer, but no verdict in it
            return Outcome(None, UNPARSEABLE)
        return Outcome(completion.text)

    async def judged(self, messages: Messages, parse: Callable[[str], V | None]) -> Outcome[V]:
        """The parsed verdict of ``messages``, else why there is none (never a guess)."""
        reply = await self.reply(messages)
        if reply.value is None:
            return Outcome(None, reply.failure, reply.error)
        value = parse(reply.value)
        return Outcome(value) if value is not None else Outcome(None, UNPARSEABLE)

    async def answer(self, messages: Messages) -> str | None:
        """The text of a normally finished answer; None when the request failed or the answer was cut off."""
        return (await self.reply(messages)).value

    async def score(self, messages: Messages) -> int | None:
        """A 1–5 score, or None (failed, cut off or unparseable: excluded, never scored)."""
        return (await self.judged(messages, parse_score)).value

    async def verdict(self, messages: Messages, schema: type[BaseModel]) -> BaseModel | None:
        """A parsed verdict, or None (failed, cut off or unparseable: excluded, never scored)."""
        return (await self.judged(messages, lambda text: parse_verdict(text, schema))).value

    async def aclose(self) -> None:
        """Close the provider and the cache: for a judge that owns both, as :func:`build_judge`'s does."""
        await self.provider.aclose()
        if self.caller.cache is not None:
            self.caller.cache.close()


def build_judge(judge_cfg: JudgeConfig) -> Judge:
    """The eval/study judge from an ``eval.judge`` section, caching under ``<cache dir>/judge`` when enabled."""
    from sectune.llm.cache import ResponseCache
    from sectune.llm.factory import get_provider
    from sectune.llm.requests import Limits
    from sectune.paths import cache_dir

    provider = get_provider(
        judge_cfg.provider, model=judge_cfg.model, base_url=judge_cfg.base_url, api_key_env=judge_cfg.api_key_env
    )
    limits = Limits(
        max_tokens=judge_cfg.max_tokens, max_retries=judge_cfg.max_retries, max_in_flight=judge_cfg.max_concurrency
    )
    cache = ResponseCache(cache_dir() / JUDGE_CACHE_FOLDER) if judge_cfg.cache else None
    return Judge(Caller(provider, limits, cache), temperature=judge_cfg.temperature)


def run_judge(judge_cfg: JudgeConfig, work: Callable[[Judge], Awaitable[T]]) -> T:
    """Build the judge of ``judge_cfg``, run ``work(judge)`` in a fresh event loop, close the judge."""

    async def run() -> T:
        judge = build_judge(judge_cfg)
        try:
            return await work(judge)
        finally:
            await judge.aclose()

    return asyncio.run(run())


# --- flows ---------------------------------------------------------------------------------------------------
def failure_counts(outcomes: Sequence[Outcome[Any]]) -> dict[str, Any]:
    """Each kind of failure apart, and the error kinds behind the transport failures (``{"timeout": 2}``)."""
    counts: dict[str, Any] = {kind: sum(o.failure == kind for o in outcomes) for kind in FAILURES}
    counts["transport_errors"] = dict(Counter(o.error for o in outcomes if o.failure == TRANSPORT and o.error))
    return counts


async def judge_absolute(
    judge: Judge, questions: Sequence[str], references: Sequence[str], answers: Sequence[str | None]
) -> dict[str, Any]:
    """Mean 1–5 score over the verdicts that parsed; failures are counted by kind and excluded.

    An answer of None (its generation request failed) is not judged: its score is None and it is counted in
    ``skipped_failed``, not in ``total`` (the answers judged: ``parsed`` plus the three failure counts).
    """

    async def one(question: str, reference: str, answer: str | None) -> Outcome[int] | None:
        if answer is None:
            return None
        return await judge.judged(absolute_messages(question, reference, answer), parse_score)

    found = await asyncio.gather(*(one(*row) for row in zip(questions, references, answers, strict=True)))
    outcomes = [o for o in found if o is not None]
    parsed = [o.value for o in outcomes if o.value is not None]
    return {
        "mean_score": sum(parsed) / len(parsed) if parsed else None,
        "scores": [o.value if o is not None else None for o in found],
        "parsed": len(parsed),
        **failure_counts(outcomes),
        "skipped_failed": len(found) - len(outcomes),
        "total": len(outcomes),
    }


def _worst(one: Outcome[Any], two: Outcome[Any]) -> Outcome[Any]:
    """What a question with a failed order counts as: a transport failure before a cut-off before a parse one."""
    return min((o for o in (one, two) if o.failure), key=lambda o: FAILURES.index(o.failure or ""))


async def judge_pairwise(
    judge: Judge,
    questions: Sequence[str],
    references: Sequence[str],
    baseline: Sequence[str | None],
    candidate: Sequence[str | None],
) -> dict[str, Any]:
    """Candidate vs baseline, each question judged in both orders.

    A question counts as a win/loss only when both orders parse and agree; disagreeing orders count as a
    tie (position bias, not preference). ``first_position_rate`` is the share of decisive verdicts that
    chose whichever answer was shown first (0.5 = no position bias). A question where either answer is None
    (its generation request failed) is not judged: outcome "skipped", counted in ``skipped_failed``.
    """
    rows = list(zip(questions, references, baseline, candidate, strict=True))
    asked = [(q, r, b, c) for q, r, b, c in rows if b is not None and c is not None]
    forward = [judge.judged(pairwise_messages(q, r, c, b), parse_pairwise) for q, r, b, c in asked]  # A=candidate
    backward = [judge.judged(pairwise_messages(q, r, b, c), parse_pairwise) for q, r, b, c in asked]  # A=baseline
    results = await asyncio.gather(*forward, *backward)
    pairs = list(zip(results[: len(asked)], results[len(asked) :], strict=True))
    judged = iter(pairs)
    outcomes = [_question_outcome(*next(judged)) if b is not None and c is not None else "skipped" for *_, b, c in rows]
    parsed = [o for o in outcomes if o not in (None, "skipped")]
    failed = [_worst(one, two) for one, two in pairs if one.value is None or two.value is None]
    both = [(one.value, two.value) for one, two in pairs if one.value is not None and two.value is not None]
    decisive = [verdict for pair in both for verdict in pair if verdict.winner != "tie"]  # both orders parsed
    return {
        "candidate_wins": parsed.count("candidate"),
        "baseline_wins": parsed.count("baseline"),
        "ties": parsed.count("tie"),
        "inconsistent": parsed.count("inconsistent"),
        "agreement": (sum(o != "inconsistent" for o in parsed) / len(parsed)) if parsed else None,
        "first_position_rate": sum(v.winner == "A" for v in decisive) / len(decisive) if decisive else None,
        "win_rate": parsed.count("candidate") / len(parsed) if parsed else None,
        "parsed": len(parsed),
        **failure_counts(failed),
        "skipped_failed": len(rows) - len(asked),
        "total": len(asked),
        "outcomes": outcomes,
    }


def _question_outcome(one: Outcome[PairwiseVerdict], two: Outcome[PairwiseVerdict]) -> str | None:
    """candidate / baseline / tie when both orders agree, inconsistent when they do not, None when one failed.

    ``one`` showed the candidate first, ``two`` the baseline.
    """
    if one.value is None or two.value is None:
        return None
    as_candidate = {"A": "candidate", "B": "baseline", "tie": "tie"}[one.value.winner]
    swapped = {"A": "baseline", "B": "candidate", "tie": "tie"}[two.value.winner]
    return as_candidate if as_candidate == swapped else "inconsistent"


def _prediction(row: dict[str, Any]) -> str | None:
    """A prediction row's answer, or None when its generation request failed (not judged)."""
    return None if request_failed(row) else row["prediction"]


async def judge_absolute_predictions(judge: Judge, rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`judge_absolute` over a prediction file's rows (``{"messages", "reference", "prediction"}``)."""
    questions = [row["messages"][-1]["content"] for row in rows]
    references = [row["reference"] for row in rows]
    return await judge_absolute(judge, questions, references, [_prediction(row) for row in rows])


async def judge_pairwise_predictions(
    judge: Judge, baseline: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """:func:`judge_pairwise` over two prediction files' rows (``{"messages", "reference", "prediction"}``).

    The rows answer the same questions in the same order; questions and references come from ``baseline``.
    eval (first target vs each other target) and the study (each variant vs its base) both judge this way.
    A row whose generation request failed, in either file, is skipped and counted.
    """
    questions = [row["messages"][-1]["content"] for row in baseline]
    references = [row["reference"] for row in baseline]
    return await judge_pairwise(
        judge, questions, references, [_prediction(row) for row in baseline], [_prediction(row) for row in candidate]
    )
