"""Guards against the silent failures of assistant-only fine-tuning, as plain functions with typed results.

``run_checks`` runs them all on a dataset for one tokenizer; ``sectune inspect`` prints the result and
the train stage runs it before training (its figures go into the run summary). Each check returns a
dataclass with the figures, ``ok`` and, when not ok, a ``problem`` naming the fix.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from sectune.data.render import (
    GENERATION_MARKER,
    TokenizedRow,
    length_stats,
    prompt_completion,
    tokenize_for_training,
    tokenize_many,
)
from sectune.errors import UserError

PROBE = [
    {"role": "user", "content": "What is a firewall?"},
    {"role": "assistant", "content": "It filters traffic."},
    {"role": "user", "content": "And a VPN?"},
    {"role": "assistant", "content": "It encrypts traffic."},
]


@dataclass
class CheckResult:
    ok: bool
    problem: str | None = None  # one line naming the fix, when not ok


@dataclass
class TemplateCheck(CheckResult):
    has_generation_markers: bool = False
    end_of_turn_token: str = ""
    end_of_turn_trained: bool = False  # in a two-answer probe conversation
    prompt_is_prefix: bool = False  # add_generation_prompt renders exactly the start of the full conversation


@dataclass
class MaskCheck(CheckResult):
    rows: int = 0
    trained_fraction_min: float = 0.0
    trained_fraction_median: float = 0.0
    trained_fraction_max: float = 0.0
    rows_zero_trained: list[int] = field(default_factory=list)  # row indices
    rows_all_trained: list[int] = field(default_factory=list)


@dataclass
class EndOfTurnCheck(CheckResult):
    end_of_turn_token: str = ""
    assistant_turns: int = 0
    turns_ending_trained: int = 0
    rows_with_untrained_end: list[int] = field(default_factory=list)


@dataclass
class BosCheck(CheckResult):
    template_adds_bos: bool = False
    bos_token: str | None = None
    rows_with_wrong_bos: list[int] = field(default_factory=list)  # BOS count != 1 (or != 0 when not used)
    text_encoding_adds_bos: bool = False  # tokenising the rendered *text* with special tokens would double BOS


@dataclass
class LengthCheck(CheckResult):
    max_length: int = 0
    policy: str = "drop"
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class CollatorCheck(CheckResult):
    end_of_turn_positions: int = 0
    end_of_turn_trained_after_collation: int = 0
    padding_positions_trained: int = 0
    prompt_positions_trained: int = 0  # masked (non-assistant) tokens the collator put back into the loss


@dataclass
class DatasetChecks:
    template: TemplateCheck
    masks: MaskCheck
    end_of_turn: EndOfTurnCheck
    bos: BosCheck
    lengths: LengthCheck

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self._checks())

    @property
    def problems(self) -> list[str]:
        return [check.problem for check in self._checks() if not check.ok and check.problem]

    def _checks(self) -> list[CheckResult]:
        return [self.template, self.masks, self.end_of_turn, self.bos, self.lengths]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly figures (for summary.json)."""
        return {"ok": self.ok, "problems": self.problems, **{k: asdict(v) for k, v in vars(self).items()}}

    def raise_if_failed(self, *, file: str | None = None) -> None:
        """A UserError with the first problem (train calls this before spending time)."""
        if self.problems:
            raise UserError(self.problems[0], file=file, field="dataset")


def end_of_turn_token(tokenizer: Any, family: str | None = None) -> str:
    """The token that must close every trained assistant turn."""
    if family:
        from sectune.data.families import FAMILIES

        if family in FAMILIES:
            return FAMILIES[family].end_of_turn
    return tokenizer.eos_token


def check_template(tokenizer: Any, family: str | None = None) -> TemplateCheck:
    """Generation markers present, each answer's end-of-turn token trained, prompt renders as a prefix."""
    template = tokenizer.chat_template or ""
    eot = end_of_turn_token(tokenizer, family)
    if not GENERATION_MARKER.search(template):
        return TemplateCheck(
            ok=False,
            problem="chat template has no {% generation %} markers: assistant-only loss would train on nothing "
            "(fix: wrap each answer and its end-of-turn token in {% generation %}...{% endgeneration %})",
            end_of_turn_token=eot,
        )
    row = tokenize_for_training(tokenizer, PROBE)
    eot_trained = _spans_ending_on(row, tokenizer.convert_tokens_to_ids(eot))
    spans = len(_trained_spans(row.assistant_mask))
    try:
        prompt_completion(tokenizer, PROBE)
        prefix = True
    except UserError:
        prefix = False
    ok = eot_trained == 2 and spans == 2 and prefix
    problem = None
    if eot_trained != 2 or spans != 2:
        problem = (
            f"the template does not train the end-of-turn token {eot} of each answer: the model never learns to stop "
            f"(fix: put {eot} inside {{% generation %}}...{{% endgeneration %}})"
        )
    elif not prefix:
        problem = (
            "the prompt alone renders differently than inside the conversation "
            "(fix: the template's add_generation_prompt branch)"
        )
    return TemplateCheck(
        ok=ok,
        problem=problem,
        has_generation_markers=True,
        end_of_turn_token=eot,
        end_of_turn_trained=eot_trained == 2,
        prompt_is_prefix=prefix,
    )


def check_masks(tokenized: list[TokenizedRow], *, allow_untrained: bool = False) -> MaskCheck:
    """Trainable-token fraction per row; rows training nothing or everything are problems."""
    fractions = [row.trained_tokens / max(1, len(row.input_ids)) for row in tokenized]
    zero = [i for i, row in enumerate(tokenized) if row.trained_tokens == 0]
    full = [i for i, row in enumerate(tokenized) if row.input_ids and row.trained_tokens == len(row.input_ids)]
    problem = None
    if (zero or full) and not allow_untrained:
        problem = (
            f"{len(zero)} rows train no token and {len(full)} rows train every token (first: row "
            f"{(zero or full)[0]}) (fix: every row needs a prompt and an answer; "
            "check the template's generation markers)"
        )
    return MaskCheck(
        ok=problem is None,
        problem=problem,
        rows=len(tokenized),
        trained_fraction_min=round(min(fractions), 4) if fractions else 0.0,
        trained_fraction_median=round(statistics.median(fractions), 4) if fractions else 0.0,
        trained_fraction_max=round(max(fractions), 4) if fractions else 0.0,
        rows_zero_trained=zero,
        rows_all_trained=full,
    )


def check_end_of_turn(
    tokenizer: Any, rows: list[dict[str, Any]], tokenized: list[TokenizedRow], family: str | None = None
) -> EndOfTurnCheck:
    """Every assistant turn's trained span must end on the end-of-turn token."""
    eot = end_of_turn_token(tokenizer, family)
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    turns = trained = 0
    bad = []
    for index, (row, tokens) in enumerate(zip(rows, tokenized, strict=True)):
        answers = sum(m["role"] == "assistant" for m in row["messages"])
        ending = _spans_ending_on(tokens, eot_id)
        turns += answers
        trained += min(ending, answers)
        if ending < answers:
            bad.append(index)
    problem = None
    if bad:
        problem = (
            f"{len(bad)} rows have an answer whose end-of-turn token {eot} is not trained (first: row {bad[0]}): "
            f"the model would never learn to stop (fix: put {eot} inside the template's generation markers)"
        )
    return EndOfTurnCheck(
        ok=not bad,
        problem=problem,
        end_of_turn_token=eot,
        assistant_turns=turns,
        turns_ending_trained=trained,
        rows_with_untrained_end=bad,
    )


def check_bos(tokenizer: Any, tokenized: list[TokenizedRow]) -> BosCheck:
    """Exactly one BOS at the start where the template writes one; none doubled by text encoding."""
    template = tokenizer.chat_template or ""
    bos = tokenizer.bos_token
    adds_bos = bos is not None and "bos_token" in template
    bos_id: int | None = tokenizer.convert_tokens_to_ids(bos) if bos else None
    wrong: list[int] = []
    for index, row in enumerate(tokenized):
        if adds_bos and bos_id is not None and (row.input_ids[:1] != [bos_id] or row.input_ids.count(bos_id) != 1):
            wrong.append(index)
    doubled = False
    if tokenized and bos_id is not None:
        with_special = tokenizer(tokenized[0].text, add_special_tokens=True)["input_ids"]
        doubled = with_special[:2] == [bos_id, bos_id]
    problem = None
    if wrong:
        problem = f"{len(wrong)} rows do not start with exactly one {bos} (first: row {wrong[0]}) (fix: the template)"
    return BosCheck(
        ok=not wrong,
        problem=problem,
        template_adds_bos=adds_bos,
        bos_token=bos,
        rows_with_wrong_bos=wrong,
        text_encoding_adds_bos=doubled,
    )


def check_lengths(lengths: list[int], max_length: int, policy: str) -> LengthCheck:
    """Length statistics against max_length; rows over it are a problem under the 'error' policy."""
    stats = length_stats(lengths, max_length)
    over = stats.get("over_max_length", 0)
    problem = None
    if over and policy == "error":
        problem = (
            f"{over} rows exceed max_length={max_length} tokens (fix: raise max_length, or length_policy "
            "drop / truncate-prompt; answers are never cut)"
        )
    return LengthCheck(ok=problem is None, problem=problem, max_length=max_length, policy=policy, stats=stats)


def check_collator(
    collator: Any, tokenizer: Any, rows: list[dict[str, Any]], family: str | None = None
) -> CollatorCheck:
    """Collate ``rows`` and verify the end-of-turn tokens are still trained and padding is not.

    Catches a collator that masks every pad id while pad == eos (transformers'
    DataCollatorForLanguageModeling): padding must be masked by position, never by token id.
    """
    eot_id = tokenizer.convert_tokens_to_ids(end_of_turn_token(tokenizer, family))
    tokenized = [tokenize_for_training(tokenizer, row["messages"]) for row in rows]
    examples = [
        {
            "input_ids": t.input_ids,
            "labels": [i if m else -100 for i, m in zip(t.input_ids, t.assistant_mask, strict=True)],
        }
        for t in tokenized
    ]
    try:
        batch = collator([dict(e) for e in examples])
    except (ValueError, TypeError, KeyError):  # collators that take input_ids only
        batch = collator([{"input_ids": e["input_ids"]} for e in examples])
    input_ids, labels = batch["input_ids"].tolist(), batch["labels"].tolist()
    positions = trained = padding_trained = prompt_trained = 0
    for row, ids, labs in zip(tokenized, input_ids, labels, strict=True):
        start = _offset_of(row.input_ids, ids)
        for pos, (token, flag) in enumerate(zip(row.input_ids, row.assistant_mask, strict=True)):
            if flag and token == eot_id:
                positions += 1
                trained += labs[start + pos] == token
            elif not flag and pos > 0:  # position 0 is never a target once labels are shifted
                prompt_trained += labs[start + pos] != -100
        outside = [p for p in range(len(ids)) if not start <= p < start + len(row.input_ids)]
        padding_trained += sum(labs[p] != -100 for p in outside)
    problem = None
    if trained < positions:
        problem = (
            f"the collator masks {positions - trained} of {positions} end-of-turn tokens "
            f"({tokenizer.convert_ids_to_tokens(eot_id)}; pad == eos: {tokenizer.pad_token == tokenizer.eos_token}) "
            "(fix: mask padding by position, e.g. trl's DataCollatorForLanguageModeling, never by pad token id)"
        )
    elif padding_trained:
        problem = f"the collator trains {padding_trained} padding positions (fix: label padding -100)"
    elif prompt_trained:
        problem = (
            f"the collator trains {prompt_trained} prompt tokens: it ignores the assistant-only labels "
            "(fix: a collator that keeps the given labels, e.g. trl's DataCollatorForLanguageModeling)"
        )
    return CollatorCheck(
        ok=problem is None,
        problem=problem,
        end_of_turn_positions=positions,
        end_of_turn_trained_after_collation=trained,
        padding_positions_trained=padding_trained,
        prompt_positions_trained=prompt_trained,
    )


def run_checks(
    tokenizer: Any,
    rows: list[dict[str, Any]],
    *,
    max_length: int,
    length_policy: str = "drop",
    family: str | None = None,
    allow_untrained: bool = False,
) -> DatasetChecks:
    """All dataset checks for one tokenizer (with sectune's template set) on canonical rows."""
    template = check_template(tokenizer, family)
    if not template.has_generation_markers:
        empty = MaskCheck(ok=False, problem=template.problem, rows=len(rows))
        return DatasetChecks(
            template, empty, EndOfTurnCheck(ok=False, problem=template.problem), BosCheck(ok=True), LengthCheck(ok=True)
        )
    tokenized = tokenize_many(tokenizer, [row["messages"] for row in rows])
    return DatasetChecks(
        template=template,
        masks=check_masks(tokenized, allow_untrained=allow_untrained),
        end_of_turn=check_end_of_turn(tokenizer, rows, tokenized, family),
        bos=check_bos(tokenizer, tokenized),
        lengths=check_lengths([len(t.input_ids) for t in tokenized], max_length, length_policy),
    )


def _trained_spans(mask: list[int]) -> list[tuple[int, int]]:
    spans, start = [], None
    for index, flag in enumerate([*mask, 0]):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            spans.append((start, index))
            start = None
    return spans


def _spans_ending_on(row: TokenizedRow, token_id: int) -> int:
    return sum(row.input_ids[end - 1] == token_id for _, end in _trained_spans(row.assistant_mask))


def _offset_of(sequence: list[int], padded: list[int]) -> int:
    """Where ``sequence`` sits inside its padded copy (right or left padding)."""
    if padded[: len(sequence)] == sequence:
        return 0
    return len(padded) - len(sequence)
