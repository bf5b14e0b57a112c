"""Generation prompts and answer parsing: a pydantic sample schema for JSON answers, labelled text otherwise.

Remote providers are asked for JSON matching :class:`SampleSchema` (an OpenAI-compatible server gets the schema
itself as a strict ``json_schema`` response_format, see :func:`response_format`); a malformed answer is repaired
when the JSON object can be recovered (code fences, prose around it, trailing commas) and rejected as
``malformed`` when not. Prompts name the fields in an example, never the pydantic schema: a small model copied
the schema's own keys, and the class docstrings (its "description" keys) leaked into the prompt (issue 24).
The local 135M model cannot write JSON (ENVIRONMENT.md): it is asked for "Question: … Answer: …" text.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, field_validator

from sectune.generate.topics import Topic

# Different angles per variation number: the same topic asked the same way gives the same question.
ANGLES = (
    "a practical how-to question",
    "a troubleshooting scenario a user runs into",
    "a question asking to explain a concept simply",
    "a question comparing two related options",
    "a best-practice or recommendation question",
    "a question about a common mistake and how to avoid it",
    "an incident or emergency scenario question",
    "a question from a beginner",
    "a question from an experienced administrator",
    "a question about tools, commands or settings",
)


class SampleSchema(BaseModel):
    """The structured answer a remote provider returns for one sample."""

    question: str
    answer: str

    @field_validator("question", "answer")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()


class ConversationSchema(BaseModel):
    """The structured answer for a multi-turn sample: the first question, then follow-ups, each answered."""

    turns: list[SampleSchema]


def response_format(kind: str = "json_object", turns: int = 1) -> dict[str, Any]:
    """The response_format of a JSON sample request: ``json_schema`` sends the sample schema (strict; llama.cpp,
    vLLM, Ollama and OpenAI constrain the answer to it), ``json_object`` is OpenAI JSON mode (any JSON object;
    the provider falls back to it when a server refuses json_schema with a 400)."""
    if kind != "json_schema":
        return {"type": "json_object"}
    return json.loads(_json_schema_format(turns > 1))  # a fresh copy: callers may change theirs


@functools.cache
def _json_schema_format(conversation: bool) -> str:
    """Built once per process: pydantic's schema generation costs ~1 ms CPU, and every request sends it."""
    name, model = ("conversation", ConversationSchema) if conversation else ("sample", SampleSchema)
    return json.dumps(
        {"type": "json_schema", "json_schema": {"name": name, "schema": strict_schema(model), "strict": True}}
    )


def strict_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema as strict structured outputs want it: references inlined, every object closed
    (``additionalProperties: false``), and no "title" or "description" (the class docstrings stay out)."""
    schema = model.model_json_schema()
    return _strict(schema, schema.get("$defs", {}))


def _strict(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_strict(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        return _strict(defs[node["$ref"].rsplit("/", 1)[-1]], defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "description", "$defs"):
            continue
        # "properties" maps field names (which may be "title") to schemas: keep the names, clean the schemas
        out[key] = {f: _strict(v, defs) for f, v in value.items()} if key == "properties" else _strict(value, defs)
    if out.get("type") == "object":
        out["additionalProperties"] = False
    return out


def sample_prompt(
    topic: Topic, variation: int, *, json_output: bool, instructions: str = "", turns: int = 1
) -> list[dict[str, str]]:
    """The conversation asking for sample number ``variation`` about ``topic`` (``turns`` > 1: JSON only)."""
    angle = ANGLES[variation % len(ANGLES)]
    lines = [
        f"Topic: {' > '.join(topic.path)}",
        *([f"Domain type: {topic.domain_type}"] if topic.domain_type else []),  # no line, no change: same cache key
        f"Variation: {variation + 1}",
        f"Write {angle} that a real user could ask about this topic, and a complete, accurate, helpful answer.",
        "Make the question specific and different from the usual first questions on this topic.",
    ]
    if turns > 1:
        lines.append(
            f"Then continue the conversation for {turns} turns in all: each further question is a follow-up the "
            "same user asks about the previous answer, and each gets its own complete answer."
        )
    if instructions:
        lines.append(instructions)
    if turns > 1:
        lines.append(
            f"Reply with only a JSON object with exactly {turns} turns: "
            '{"turns": [{"question": "...", "answer": "..."}, ...]}'
        )
        system = (
            'You write training data for an assistant. Your reply is one JSON object: "turns" is a list of '
            'turns, each an object with two strings, "question" and "answer".'
        )
    elif json_output:
        lines.append('Reply with only a JSON object: {"question": "...", "answer": "..."}')
        system = (
            "You write training data for an assistant. Your reply is one JSON object with two strings, "
            '"question" and "answer".'
        )
    else:
        lines.append("Reply in exactly this format:\nQuestion: <the question>\nAnswer: <the answer>")
        system = "You write questions and answers for training an assistant."
    return [{"role": "system", "content": system}, {"role": "user", "content": "\n".join(lines)}]


def question_prompt(topic: Topic, variation: int, instructions: str = "") -> list[dict[str, str]]:
    """Two-step mode, step 1: ask only for a question (step 2 asks the model to answer it).

    Short and plain on purpose: SmolLM2-135M answers this form with a bare question far more often than a
    longer prompt with labels (measured). The variation number goes into the request parameters instead.
    """
    angle = ANGLES[variation % len(ANGLES)]
    where = f" (within {' > '.join(topic.path[:-1])})" if len(topic.path) > 1 else ""
    where += f" in {topic.domain_type}" if topic.domain_type else ""
    user = f"Write {angle} about {topic.name}{where}. {instructions}".strip() + " Reply with the question only."
    return [{"role": "user", "content": user}]


# How a prefilled question starts, one per variation: the model only completes the sentence.
QUESTION_STARTS = (
    "How do I",
    "What is",
    "How can I",
    "Why does",
    "What should I do if",
    "Is it safe to",
    "What are the best ways to",
    "Can you explain",
)


def prefilled_question_prompt(topic: Topic, variation: int, instructions: str = "") -> list[dict[str, str]]:
    """Two-step mode for providers that continue a prefilled answer (local models).

    The assistant turn is started with a question opener and the model completes it. On SmolLM2-135M this
    turned 12 of 12 requests into on-topic questions, where an instruction alone gave mostly meta-replies
    ("What options would you ask?") and 52 of 81 requests without any question (measured on the demo topics).
    """
    where = f" ({topic.path[-2]})" if len(topic.path) > 1 else ""
    where += f" in {topic.domain_type}" if topic.domain_type else ""
    user = f"Write a question that a user might ask about {topic.name}{where}. {instructions}".strip()
    start = QUESTION_STARTS[variation % len(QUESTION_STARTS)]
    return [{"role": "user", "content": user}, {"role": "assistant", "content": start}]


_QUESTION = re.compile(r"([A-Z][^?\n\"*“”]*\?)")


def extract_question(text: str) -> str | None:
    """The first sentence that asks something (labels, quotes and bold stripped); None when there is none."""
    for line in text.splitlines():
        line = re.sub(r"^\W*(?:question|q|user)\s*\W*:\W*", "", line.strip(), flags=re.IGNORECASE)
        for match in _QUESTION.finditer(line):
            question = match.group(1).strip()
            if len(question.split()) >= 4:
                return question
    return None


@dataclass(frozen=True)
class Parsed:
    """A parsed sample: the first question and answer, then any follow-up (question, answer) turns."""

    question: str
    answer: str
    repaired: bool = False
    follow_ups: tuple[tuple[str, str], ...] = ()

    @property
    def turns(self) -> list[tuple[str, str]]:
        return [(self.question, self.answer), *self.follow_ups]


def parse_json_sample(text: str, turns: int = 1) -> Parsed | None:
    """The sample in a JSON answer (exactly ``turns`` turns), repaired when possible; None when not recoverable."""
    try:
        return _validated(json.loads(text), turns, repaired=False)
    except (json.JSONDecodeError, ValueError):
        pass
    candidate = _extract_object(text)
    if candidate is None:
        return None
    for attempt in (candidate, re.sub(r",\s*([}\]])", r"\1", candidate)):
        try:
            return _validated(json.loads(attempt), turns, repaired=True)
        except (json.JSONDecodeError, ValueError):
            continue
    return None


def _validated(data: object, turns: int, *, repaired: bool) -> Parsed | None:
    if not isinstance(data, dict):
        raise ValueError("not an object")
    try:
        if turns == 1:
            sample = SampleSchema.model_validate(data)
            return Parsed(sample.question, sample.answer, repaired)
        conversation = ConversationSchema.model_validate(data)
    except ValidationError as exc:
        raise ValueError(str(exc)) from None
    if len(conversation.turns) != turns:  # fewer turns is not the sample asked for; more is not either
        raise ValueError(f"{len(conversation.turns)} turns, not {turns}")
    first, *rest = conversation.turns
    return Parsed(first.question, first.answer, repaired, tuple((t.question, t.answer) for t in rest))


def _extract_object(text: str) -> str | None:
    fenced = re.search(r"```(?:json)?\s*(\{.*?\})\s*```", text, re.DOTALL)
    if fenced:
        return fenced.group(1)
    start, end = text.find("{"), text.rfind("}")
    return text[start : end + 1] if 0 <= start < end else None


_LABELLED = re.compile(
    r"^\W*(?:question|q)\s*\W*:\W*(?P<q>.+?)\s*^\W*(?:answer|a)\s*\W*:\W*(?P<a>.+)\Z",
    re.IGNORECASE | re.DOTALL | re.MULTILINE,
)


def parse_labelled_sample(text: str) -> Parsed | None:
    """The sample in "Question: … Answer: …" text (markdown bold and Q:/A: tolerated); None when absent."""
    match = _LABELLED.search(text.strip())
    if not match:
        return None
    question, answer = match.group("q").strip(), match.group("a").strip()
    return Parsed(question, answer) if question and answer else None


def parse_sample(text: str, *, json_output: bool, turns: int = 1) -> Parsed | None:
    """Parse an answer in the format that was asked for (JSON answers may also come back labelled)."""
    if json_output or turns > 1:
        return parse_json_sample(text, turns)
    return parse_labelled_sample(text) or parse_json_sample(text)


def to_row(parsed: Parsed, system_prompt: str, meta: dict) -> dict:
    """The canonical row of an accepted sample (every turn, in order)."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    for question, answer in parsed.turns:
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return {"messages": messages, "meta": meta}
