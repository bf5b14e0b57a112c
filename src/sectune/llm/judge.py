"""LLM-as-judge, written once for every stage: the prompts, the score parsing and the pairwise flow.

generate's quality filter scores a sample 1–5 as training data (:func:`sample_messages`); eval and the study
score answers 1–5 against a reference answer (:func:`judge_absolute`) and compare two models' answers
(:func:`judge_pairwise`). Every request goes through :class:`~sectune.llm.requests.Caller` (limits, retries,
the response cache of :mod:`sectune.llm.cache`).

A verdict that does not parse (or was cut off, or failed after the retries) is excluded and counted, never
turned into a score (openai/evals #1712). Pairwise judging asks both orders (A/B and B/A) so that position
bias cancels, and reports agreement between the orders and how often the first position wins.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import BaseModel, Field, ValidationError

from sectune.llm.base import Messages, Provider
from sectune.llm.requests import Caller

if TYPE_CHECKING:
    from sectune.config.evaluate import JudgeConfig

T = TypeVar("T")
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


# --- the judge -----------------------------------------------------------------------------------------------
class Judge:
    """Verdicts from a provider through a :class:`Caller` (its limits, retries and cache)."""

    def __init__(self, caller: Caller, *, temperature: float = 0.0) -> None:
        self.caller = caller
        self.params: dict[str, Any] = {"temperature": temperature}  # content-shaping: part of the cache key

    @property
    def provider(self) -> Provider:
        return self.caller.provider

    async def answer(self, messages: Messages) -> str | None:
        """The text of a normally finished answer; None when the request failed or the answer was cut off."""
        result = await self.caller.call(messages, self.params)
        completion = result.completion
        return completion.text if completion is not None and completion.finish_reason == "stop" else None

    async def score(self, messages: Messages) -> int | None:
        """A 1–5 score, or None (failed, cut off or unparseable: excluded, never scored)."""
        text = await self.answer(messages)
        return None if text is None else parse_score(text)

    async def verdict(self, messages: Messages, schema: type[BaseModel]) -> BaseModel | None:
        """A parsed verdict, or None (failed, cut off or unparseable: excluded, never scored)."""
        text = await self.answer(messages)
        return None if text is None else parse_verdict(text, schema)

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
async def judge_absolute(
    judge: Judge, questions: Sequence[str], references: Sequence[str], answers: Sequence[str]
) -> dict[str, Any]:
    """Mean 1–5 score over the verdicts that parsed; failures are counted and excluded."""
    tasks = [judge.score(absolute_messages(q, r, a)) for q, r, a in zip(questions, references, answers, strict=True)]
    scores: list[int | None] = list(await asyncio.gather(*tasks))
    parsed = [s for s in scores if s is not None]
    return {
        "mean_score": sum(parsed) / len(parsed) if parsed else None,
        "scores": scores,
        "parsed": len(parsed),
        "parse_failures": len(scores) - len(parsed),
        "total": len(scores),
    }


async def judge_pairwise(
    judge: Judge,
    questions: Sequence[str],
    references: Sequence[str],
    baseline: Sequence[str],
    candidate: Sequence[str],
) -> dict[str, Any]:
    """Candidate vs baseline, each question judged in both orders.

    A question counts as a win/loss only when both orders parse and agree; disagreeing orders count as a
    tie (position bias, not preference). ``first_position_rate`` is the share of decisive verdicts that
    chose whichever answer was shown first (0.5 = no position bias).
    """
    rows = list(zip(questions, references, baseline, candidate, strict=True))
    forward = [judge.verdict(pairwise_messages(q, r, c, b), PairwiseVerdict) for q, r, b, c in rows]  # A=candidate
    backward = [judge.verdict(pairwise_messages(q, r, b, c), PairwiseVerdict) for q, r, b, c in rows]  # A=baseline
    results = await asyncio.gather(*forward, *backward)
    first, second = results[: len(rows)], results[len(rows) :]
    outcomes: list[str | None] = []
    failures, decisive, first_wins = 0, 0, 0
    for one, two in zip(first, second, strict=True):
        if not isinstance(one, PairwiseVerdict) or not isinstance(two, PairwiseVerdict):
            failures += 1
            outcomes.append(None)
            continue
        for verdict in (one, two):
            if verdict.winner != "tie":
                decisive += 1
                first_wins += verdict.winner == "A"
        as_candidate = {"A": "candidate", "B": "baseline", "tie": "tie"}[one.winner]
        swapped = {"A": "baseline", "B": "candidate", "tie": "tie"}[two.winner]
        outcomes.append(as_candidate if as_candidate == swapped else "inconsistent")
    parsed = [o for o in outcomes if o is not None]
    return {
        "candidate_wins": parsed.count("candidate"),
        "baseline_wins": parsed.count("baseline"),
        "ties": parsed.count("tie"),
        "inconsistent": parsed.count("inconsistent"),
        "agreement": (sum(o != "inconsistent" for o in parsed) / len(parsed)) if parsed else None,
        "first_position_rate": first_wins / decisive if decisive else None,
        "win_rate": parsed.count("candidate") / len(parsed) if parsed else None,
        "parsed": len(parsed),
        "parse_failures": failures,
        "total": len(rows),
        "outcomes": outcomes,
    }


async def judge_pairwise_predictions(
    judge: Judge, baseline: Sequence[dict[str, Any]], candidate: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    """:func:`judge_pairwise` over two prediction files' rows (``{"messages", "reference", "prediction"}``).

    The rows answer the same questions in the same order; questions and references come from ``baseline``.
    eval (first target vs each other target) and the study (each variant vs its base) both judge this way.
    """
    questions = [row["messages"][-1]["content"] for row in baseline]
    references = [row["reference"] for row in baseline]
    return await judge_pairwise(
        judge, questions, references, [row["prediction"] for row in baseline], [row["prediction"] for row in candidate]
    )
