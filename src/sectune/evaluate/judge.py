"""LLM-as-judge through sectune's providers: absolute 1–5 scores and pairwise preference.

Every verdict is parsed against a pydantic schema; an answer that does not parse (or was cut off) is
excluded and counted, never turned into a score (openai/evals #1712). Pairwise judging asks both orders
(A/B and B/A) so that position bias cancels, and reports agreement between the orders and how often
the first position wins. Judge answers are cached on disk under a hash of prompt + model + params.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from sectune.paths import cache_dir

RUBRIC = """Score the ANSWER to the QUESTION from 1 to 5 against the REFERENCE answer:
5 = correct, complete and clear; 4 = correct with minor gaps; 3 = partly correct or vague;
2 = mostly wrong or off-topic but related; 1 = wrong, harmful or empty.
Reply with JSON only: {"score": <1-5>, "reason": "<one sentence>"}"""

PAIRWISE = """Two assistants answered the same QUESTION. Using the REFERENCE answer as a guide, decide which
answer is better (more correct, complete and clear). Reply with JSON only:
{"winner": "A" | "B" | "tie", "reason": "<one sentence>"}"""


class AbsoluteVerdict(BaseModel):
    score: int = Field(ge=1, le=5)
    reason: str = ""


class PairwiseVerdict(BaseModel):
    winner: Literal["A", "B", "tie"]
    reason: str = ""


class JudgeCache:
    """One JSON file per request hash (prompt + model + params) holding the judge's raw answer."""

    def __init__(self, folder: str | Path | None = None, *, enabled: bool = True) -> None:
        self.folder = Path(folder) if folder else cache_dir() / "judge"
        self.enabled = enabled

    @staticmethod
    def key(messages: list[dict[str, str]], model: str, params: dict[str, Any]) -> str:
        blob = json.dumps({"messages": messages, "model": model, "params": params}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.folder / f"{key}.json"
        if not self.enabled or not path.is_file():
            return None
        return json.loads(path.read_text(encoding="utf-8"))

    def put(self, key: str, answer: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.tmp"
        tmp.write_text(json.dumps(answer), encoding="utf-8")
        tmp.replace(self.folder / f"{key}.json")


def parse_verdict(text: str, schema: type[BaseModel]) -> BaseModel | None:
    """The first JSON object in ``text`` validated against ``schema``, or None when there is none."""
    for match in re.finditer(r"\{[^{}]*\}", text, re.S):
        try:
            return schema.model_validate(json.loads(match.group(0)))
        except (json.JSONDecodeError, ValidationError):
            continue
    return None


class Judge:
    """Ask a provider for verdicts, with caching and bounded concurrency."""

    def __init__(
        self,
        provider: Any,
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        max_concurrency: int = 8,
        cache: JudgeCache | None = None,
    ) -> None:
        self.provider = provider
        self.params = {"temperature": temperature, "max_tokens": max_tokens}
        self.semaphore = asyncio.Semaphore(max_concurrency)
        self.cache = cache or JudgeCache(enabled=False)

    async def ask(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        """The judge's raw answer {"text", "finish_reason"} (cached when it finished normally)."""
        key = JudgeCache.key(messages, str(getattr(self.provider, "model", "?")), self.params)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        async with self.semaphore:
            completion = await self.provider.complete(messages, **self.params)
        answer = {"text": completion.text, "finish_reason": completion.finish_reason}
        if completion.finish_reason == "stop":
            self.cache.put(key, answer)
        return answer

    async def verdict(self, messages: list[dict[str, str]], schema: type[BaseModel]) -> BaseModel | None:
        """A parsed verdict, or None (cut off or unparseable: excluded, never scored)."""
        try:
            answer = await self.ask(messages)
        except Exception as exc:  # a provider failure is one excluded verdict, not a crashed evaluation
            if type(exc).__name__ != "ProviderError":
                raise
            return None
        if answer["finish_reason"] != "stop":
            return None
        return parse_verdict(answer["text"], schema)


def absolute_messages(question: str, reference: str, answer: str) -> list[dict[str, str]]:
    content = f"{RUBRIC}\n\nQUESTION:\n{question}\n\nREFERENCE:\n{reference}\n\nANSWER:\n{answer}"
    return [{"role": "user", "content": content}]


def pairwise_messages(question: str, reference: str, first: str, second: str) -> list[dict[str, str]]:
    content = (
        f"{PAIRWISE}\n\nQUESTION:\n{question}\n\nREFERENCE:\n{reference}\n\nANSWER A:\n{first}\n\nANSWER B:\n{second}"
    )
    return [{"role": "user", "content": content}]


async def judge_absolute(
    judge: Judge, questions: Sequence[str], references: Sequence[str], answers: Sequence[str]
) -> dict[str, Any]:
    """Mean 1–5 score over the verdicts that parsed; failures are counted and excluded."""
    tasks = [
        judge.verdict(absolute_messages(q, r, a), AbsoluteVerdict)
        for q, r, a in zip(questions, references, answers, strict=True)
    ]
    verdicts = await asyncio.gather(*tasks)
    scores = [v.score for v in verdicts if isinstance(v, AbsoluteVerdict)]
    return {
        "mean_score": sum(scores) / len(scores) if scores else None,
        "scores": [v.score if isinstance(v, AbsoluteVerdict) else None for v in verdicts],
        "parsed": len(scores),
        "parse_failures": len(verdicts) - len(scores),
        "total": len(verdicts),
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


def build_judge(judge_cfg: Any) -> Judge:
    """A Judge from an EvalConfig.judge section (provider via ``sectune.llm.get_provider``)."""
    from sectune.llm import get_provider

    provider = get_provider(
        judge_cfg.provider, model=judge_cfg.model, base_url=judge_cfg.base_url, api_key_env=judge_cfg.api_key_env
    )
    return Judge(
        provider,
        temperature=judge_cfg.temperature,
        max_tokens=judge_cfg.max_tokens,
        max_concurrency=judge_cfg.max_concurrency,
        cache=JudgeCache(enabled=judge_cfg.cache),
    )
