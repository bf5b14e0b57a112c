"""The generation engine: request slots scheduled over topics, answers parsed, filtered, deduplicated, saved.

A *slot* is one request for one sample: topic ``t``, variation ``k`` (id ``"t:k"``); its prompt depends only on
the topic, ``k`` and the config, so a resumed run asks exactly the same questions and finds its answers in the
cache. Each slot ends in exactly one outcome, counted in summary.json:

    slots = accepted + sum(rejected by reason) + sum(failed by error kind)

``rejected``: an answer came but is not a sample (cut off by length or a content filter, malformed, too short,
refusal, duplicate, judged low). ``failed``: no answer after all retries. A rejected or failed slot is replaced
by a new slot of the same topic until the topic has its samples or ``max_requests_factor`` × its samples slots
have been used.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sectune.config.generate import GenerateConfig
from sectune.generate.quality import Deduplicator, filter_reason
from sectune.generate.samples import (
    Parsed,
    extract_question,
    parse_sample,
    prefilled_question_prompt,
    question_prompt,
    response_format,
    sample_prompt,
    to_row,
)
from sectune.generate.store import AppendLog, SlotOutcome
from sectune.generate.topics import Topic
from sectune.llm.factory import provider_key
from sectune.llm.judge import Judge, parse_score, sample_messages
from sectune.llm.keys import redact
from sectune.llm.prices import cost_usd
from sectune.llm.requests import Caller

# Errors no retry fixes: a run made only of them stops instead of burning through every request slot.
STOPPING_ERRORS = ("auth", "bad_request")
REFUSALS_BEFORE_STOP = 10
QUESTION_MAX_TOKENS = 64  # two-step mode: a question is one sentence
# Two-step mode: the answer request asks for brevity so small models end within max_tokens (the saved sample
# keeps the configured system prompt alone).
ANSWER_HINT = "Answer in at most 150 words."

# Finish reasons that mean "cut off or blocked": never a sample (issue 11).
BAD_FINISH = {"length": "finish_length", "content_filter": "content_filter"}
EXAMPLE_CHARS = 200  # the excerpt kept of a failure's message or a rejected answer


@dataclass
class Progress:
    """What a progress bar or a UI needs after each finished slot."""

    requested: int
    accepted: int
    rejected: int
    failed: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: the model's price is unknown
    elapsed_s: float
    rate_per_s: float  # accepted samples per second in this session
    eta_s: float | None


ProgressCallback = Callable[[Progress], None]


@dataclass
class RunState:
    """Outcomes so far (loaded from the run folder on resume)."""

    outcomes: dict[str, SlotOutcome] = field(default_factory=dict)  # slot id → latest outcome
    samples: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    cost_unknown: bool = False
    errors: Counter[str] = field(default_factory=Counter)  # errors met by every session, retried ones included
    _tally: Counter[tuple[str, str | None]] = field(default_factory=Counter)  # (status, reason) → slots

    def add_usage(self, outcome: SlotOutcome) -> None:
        """Add what a line spent and met (every line counts, also one a later line of its slot replaces)."""
        self.errors.update(outcome.errors)
        self.prompt_tokens += outcome.prompt_tokens
        self.completion_tokens += outcome.completion_tokens
        if outcome.cost_usd is None and not outcome.cached and outcome.completion_tokens:
            self.cost_unknown = True
        self.cost_usd += outcome.cost_usd or 0.0

    def set_outcome(self, outcome: SlotOutcome) -> None:
        """Make ``outcome`` the slot's final outcome, keeping the tallies current (O(1) per outcome)."""
        previous = self.outcomes.get(outcome.slot)
        if previous is not None:
            self._tally[(previous.status, previous.reason)] -= 1
        self.outcomes[outcome.slot] = outcome
        self._tally[(outcome.status, outcome.reason)] += 1

    def counts(self) -> tuple[int, Counter[str], Counter[str]]:
        """(accepted, rejected by reason, failed by error kind) over the final outcome of every slot."""
        accepted = self._tally[("accepted", None)]
        rejected: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for (status, reason), count in self._tally.items():
            if count and status in ("rejected", "failed"):
                (rejected if status == "rejected" else failed)[str(reason)] += count
        return accepted, rejected, failed


def slot_id(topic_index: int, k: int) -> str:
    return f"{topic_index}:{k}"


class Engine:
    """Runs the slots of one generate run (a fresh run, a resume, or a retry of failed slots)."""

    def __init__(
        self,
        cfg: GenerateConfig,
        *,
        seed: int,
        topics: list[Topic],
        targets: list[int],
        caller: Caller,
        judge: Judge | None,
        state: RunState,
        dedup: Deduplicator | None,
        samples_log: AppendLog,
        requests_log: AppendLog,
        price: tuple[float, float] | None,
        retry_slots: list[str] | None = None,
        on_progress: ProgressCallback | None = None,
    ):
        self.cfg = cfg
        self.seed = seed
        self.topics = topics
        self.targets = targets
        self.caller = caller
        self.judge = judge
        self.state = state
        self.dedup = dedup
        self.samples_log = samples_log
        self.requests_log = requests_log
        self.price = price
        self.on_progress = on_progress
        self.mode = output_mode(cfg.output, caller.provider.supports_json)
        self.stop_reason: str | None = None
        self.rejection_examples: dict[str, str] = {}  # reason → an excerpt of the first answer rejected for it
        self._key = provider_key(cfg.provider, cfg.api_key_env)  # scrubbed from everything stored
        self._refused = 0  # slots failed with an error that no retry can fix
        self._accepted = [0] * len(topics)
        self._finished = [0] * len(topics)  # slots with an outcome (the per-topic request cap counts these)
        self._in_flight = [0] * len(topics)
        self._next_k = [0] * len(topics)
        self._caps = [math.ceil(n * cfg.max_requests_factor) for n in targets]
        self._retry = self._retry_queues(retry_slots) if retry_slots is not None else None
        self._cursor = 0
        self._started = time.monotonic()
        self._accepted_at_start = 0
        self._errors_logged: Counter[str] = Counter(caller.errors)  # the caller's errors already on a line
        self._load_state()

    # --- scheduling ---------------------------------------------------------------------------------------
    def _load_state(self) -> None:
        for sid, outcome in self.state.outcomes.items():
            t = int(sid.split(":")[0])
            if t < len(self.topics):
                self._finished[t] += 1
                self._accepted[t] += outcome.status == "accepted"
        self._accepted_at_start = sum(self._accepted)

    def _retry_queues(self, slots: list[str]) -> list[list[int]]:
        queues: list[list[int]] = [[] for _ in self.topics]
        for sid in sorted(slots, key=lambda s: tuple(map(int, s.split(":")))):
            t, k = map(int, sid.split(":"))
            if t < len(queues):
                queues[t].append(k)
        return queues

    def _next_slot(self) -> tuple[int, int] | None:
        """The next slot to run, round-robin over topics that still need samples."""
        if self.stop_reason:
            return None
        for offset in range(len(self.topics)):
            t = (self._cursor + offset) % len(self.topics)
            if self._accepted[t] + self._in_flight[t] >= self.targets[t]:
                continue
            k = self._take_k(t)
            if k is not None:
                self._cursor = t + 1
                return t, k
        return None

    def _take_k(self, t: int) -> int | None:
        if self._retry is not None:  # --retry-failed: only earlier failed/rejected slots, never new ones
            return self._retry[t].pop(0) if self._retry[t] else None
        if self._finished[t] + self._in_flight[t] >= self._caps[t]:
            return None
        while slot_id(t, self._next_k[t]) in self.state.outcomes:
            self._next_k[t] += 1
        k = self._next_k[t]
        self._next_k[t] += 1
        return k

    async def run(self) -> None:
        """Run slots with ``max_in_flight`` workers until every topic is served, capped or the run stops."""
        condition = asyncio.Condition()
        delays = start_delays(self.cfg.max_in_flight, self._ramp_up_s())
        await asyncio.gather(*(self._worker(condition, delay) for delay in delays))

    def _ramp_up_s(self) -> float:
        """A batching provider wants its requests together; a server wants them spread (see start_delays)."""
        return 0.0 if getattr(self.caller.provider, "batches_requests", False) else self.cfg.ramp_up_s

    async def _worker(self, condition: asyncio.Condition, start_delay: float = 0.0) -> None:
        if start_delay:
            await asyncio.sleep(start_delay)
        while True:
            async with condition:
                slot = self._next_slot()
                while slot is None and sum(self._in_flight) > 0:
                    await condition.wait()
                    slot = self._next_slot()
                if slot is None:
                    condition.notify_all()
                    return
                self._in_flight[slot[0]] += 1
            outcome: SlotOutcome | None = None
            try:
                outcome = await self._run_slot(*slot)
            finally:
                async with condition:  # record and release together: the scheduler never sees a gap
                    if outcome is not None:
                        self._record(slot[0], outcome)
                    self._in_flight[slot[0]] -= 1
                    condition.notify_all()

    # --- one slot ------------------------------------------------------------------------------------------
    def _params(self, k: int) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.cfg.temperature}
        if self.caller.provider.name != "local":
            params["seed"] = self.seed + k
        else:  # no seed per request in a batch: the variation keeps cache keys of equal prompts apart
            params["variation"] = k
        if self.mode == "json" and self.caller.provider.name == "openai":
            params["response_format"] = response_format(self.cfg.response_format, self.cfg.turns)
        return params

    async def _run_slot(self, t: int, k: int) -> SlotOutcome:
        topic = self.topics[t]
        outcome = SlotOutcome(slot_id(t, k), t, k)
        if self.mode == "two_step":
            parsed, reason = await self._two_step(topic, k, outcome)
        else:
            json_output, turns = self.mode == "json", self.cfg.turns
            messages = sample_prompt(topic, k, json_output=json_output, instructions=self.cfg.instructions, turns=turns)
            text, reason = await self._ask(messages, k, outcome)
            parsed = parse_sample(text, json_output=json_output, turns=turns) if reason is None else None
            if reason is None and parsed is None:
                reason, outcome.example = "malformed", text
        outcome.cost_usd = cost_usd(self.price, outcome.prompt_tokens, outcome.completion_tokens)
        if outcome.status == "failed":
            return outcome
        if reason is None:
            assert parsed is not None
            reason = await self._check(parsed)
        if reason is not None:
            outcome.status, outcome.reason = "rejected", reason
            if outcome.example is None and parsed is not None:
                outcome.example = " / ".join(part for pair in parsed.turns for part in pair)
            return outcome
        assert parsed is not None
        self.samples_log.append(to_row(parsed, self.cfg.system_prompt, self._meta(topic, t, k, parsed)))
        outcome.status, outcome.reason = "accepted", None
        return outcome

    async def _two_step(self, topic: Topic, k: int, outcome: SlotOutcome) -> tuple[Parsed | None, str | None]:
        """Small local models: ask for a question, then let the model answer it as the assistant."""
        prefill = getattr(self.caller.provider, "supports_prefill", False)
        prompt = (prefilled_question_prompt if prefill else question_prompt)(topic, k, self.cfg.instructions)
        limit = min(QUESTION_MAX_TOKENS, self.cfg.max_tokens)
        # The question is only a first sentence ending in "?": a draft cut off after it still holds it whole.
        text, reason = await self._ask(prompt, k, outcome, max_tokens=limit, allow_length=True)
        if reason is not None:
            return None, reason
        if prefill:
            text = f"{prompt[-1]['content']} {text}"
        question = extract_question(text)
        if question is None:
            outcome.example = text
            return None, "malformed"
        system = f"{self.cfg.system_prompt} {ANSWER_HINT}".strip()
        answer, reason = await self._ask(
            [{"role": "system", "content": system}, {"role": "user", "content": question}], k, outcome
        )
        return (Parsed(question, answer.strip()), None) if reason is None else (None, reason)

    async def _ask(
        self,
        messages: list[dict[str, str]],
        k: int,
        outcome: SlotOutcome,
        max_tokens: int | None = None,
        allow_length: bool = False,
    ) -> tuple[str, str | None]:
        """(answer text, None) or ("", rejection reason); a failure marks ``outcome`` failed."""
        bypass = self._retry is not None
        result = await self.caller.call(messages, self._params(k), bypass_cache=bypass, max_tokens=max_tokens)
        outcome.cached = outcome.cached and result.cached  # a failure never came from the cache
        if result.error is not None:
            error = redact(str(result.error), self._key)[:EXAMPLE_CHARS]
            outcome.status, outcome.reason, outcome.error = "failed", result.error.kind, error
            return "", result.error.kind
        completion = result.completion
        assert completion is not None
        if not result.cached:
            outcome.prompt_tokens += completion.prompt_tokens
            outcome.completion_tokens += completion.completion_tokens
        if allow_length and completion.finish_reason == "length":
            return completion.text, None
        if completion.finish_reason != "stop":  # cut off or blocked: never a sample (issue 11)
            outcome.example = completion.text
            return "", BAD_FINISH.get(completion.finish_reason, f"finish_{completion.finish_reason}")
        return completion.text, None

    async def _check(self, parsed: Parsed) -> str | None:
        """The rejection reason of a parsed sample, or None (and the sample is reserved in the deduplicator)."""
        reason = next((r for q, a in parsed.turns if (r := filter_reason(q, a, self.cfg.quality))), None)
        if reason is not None or self.dedup is None:
            return reason or (await self._llm_judge(parsed) if self.judge is not None else None)
        # Exact duplicates by the first question; near duplicates over the whole conversation.
        rest = " ".join(f"{q} {a}" for q, a in parsed.follow_ups)
        fingerprint = self.dedup.fingerprint(parsed.question, f"{parsed.answer} {rest}".strip())
        if self.judge is not None:  # a duplicate is not worth a judge call
            reason = self.dedup.check(fingerprint) or await self._llm_judge(parsed)
            if reason is not None:
                return reason
        return self.dedup.check_and_add(fingerprint)  # (again after the judge: others finished while it ran)

    async def _llm_judge(self, parsed: Parsed) -> str | None:
        assert self.judge is not None
        text = await self.judge.answer(sample_messages(parsed.turns))
        if text is None:  # failed after the retries, or cut off
            return "judge_failed"
        score = parse_score(text)
        if score is None:
            return "judge_unparseable"  # never scored as a low (or high) score
        return "judge_low" if score < self.cfg.quality.judge.threshold else None

    def _meta(self, topic: Topic, t: int, k: int, parsed: Parsed) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "slot": slot_id(t, k),
            "topic": " > ".join(topic.path),
            "topic_path": topic.path,
            "source": "sectune-generate",
            "provider": self.caller.provider.name,
            "model": self.caller.provider.model,
        }
        if topic.domain_type:
            meta["domain_type"] = topic.domain_type
        if topic.id is not None:
            meta["topic_id"] = topic.id
        if parsed.repaired:
            meta["repaired_json"] = True
        return meta

    # --- bookkeeping -------------------------------------------------------------------------------------
    def _record(self, t: int, outcome: SlotOutcome) -> None:
        outcome.errors = self._new_errors()  # on the line: a killed session's errors outlive it
        self.requests_log.append(outcome.to_dict())
        if outcome.status == "rejected" and str(outcome.reason) not in self.rejection_examples:
            text = " ".join((outcome.example or "").split())
            self.rejection_examples[str(outcome.reason)] = redact(text, self._key)[:EXAMPLE_CHARS]
        previous = self.state.outcomes.get(outcome.slot)
        if previous is None:
            self._finished[t] += 1
        self.state.set_outcome(outcome)
        self._accepted[t] += outcome.status == "accepted"
        self.state.add_usage(outcome)
        if outcome.status == "failed" and outcome.reason in STOPPING_ERRORS:
            self._refused += 1
            # A refused key stops at once; refused requests stop once it is clearly not a one-off.
            if outcome.reason == "auth" or (self._refused >= REFUSALS_BEFORE_STOP and not any(self._accepted)):
                self.stop_reason = outcome.reason
        budget = self.cfg.budget_usd
        if budget is not None and self.state.cost_usd >= budget:
            self.stop_reason = self.stop_reason or "budget"
        if self.on_progress is not None:
            self.on_progress(self.progress())

    def _new_errors(self) -> dict[str, int]:
        """The caller's errors since the previous line, so that each error is written on one line only."""
        new = self.caller.errors - self._errors_logged
        self._errors_logged = Counter(self.caller.errors)
        return dict(sorted(new.items()))

    def progress(self) -> Progress:
        accepted, rejected, failed = self.state.counts()
        elapsed = time.monotonic() - self._started
        rate = (accepted - self._accepted_at_start) / elapsed if elapsed > 0 else 0.0
        remaining = sum(self.targets) - accepted
        return Progress(
            requested=sum(self.targets),
            accepted=accepted,
            rejected=sum(rejected.values()),
            failed=sum(failed.values()),
            prompt_tokens=self.state.prompt_tokens,
            completion_tokens=self.state.completion_tokens,
            cost_usd=None if self.state.cost_unknown else self.state.cost_usd,
            elapsed_s=elapsed,
            rate_per_s=rate,
            eta_s=remaining / rate if rate > 0 else None,
        )


def start_delays(workers: int, ramp_up_s: float) -> list[float]:
    """When each worker sends its first request: spread evenly over ``ramp_up_s``.

    Requests sent together come back together when latencies are alike (one server, similar lengths), and a
    burst of answers is handled step by step, interleaved, in one event loop: every next request then leaves
    at the end of the burst, so the burst repeats every round and each round trip grows by the burst's CPU
    time. Spread once at the start, answers arrive one by one and stay spread (bench_generate: 0.90-0.93 ->
    0.94 of the ceiling at 64 in flight and 200 ms). It costs at most ``ramp_up_s`` once per run.
    """
    spacing = ramp_up_s / workers
    return [i * spacing for i in range(workers)]


@contextlib.contextmanager
def gc_frozen() -> Iterator[None]:
    """Leave the objects that exist before a run out of the garbage collector's passes during it.

    A full collection walks every tracked object (~120k after importing openai, numpy and datasketch: ~50-90 ms
    on a small CPU) and stalls the event loop, so every request in flight waits for it; frozen objects are
    skipped (the technique CPython documents for long-lived servers). Undone afterwards unless someone else
    had frozen objects first.
    """
    already_frozen = gc.get_freeze_count() > 0
    gc.freeze()
    try:
        yield
    finally:
        if not already_frozen:
            gc.unfreeze()


def output_mode(output: str, supports_json: bool) -> str:
    """ "json" for providers that can write it, "two_step" for small local models, or what the user chose."""
    if output != "auto":
        return output
    return "json" if supports_json else "two_step"


def progress_dict(progress: Progress) -> dict[str, Any]:
    return asdict(progress)


def outcome_paths(folder: Path) -> tuple[Path, Path]:
    from sectune.generate.store import REQUESTS_FILE, SAMPLES_FILE

    return folder / SAMPLES_FILE, folder / REQUESTS_FILE
