"""Render canonical rows for one model: chat template text, token ids, the assistant mask, lengths.

The training rendering is: render the row with sectune's registry template (with ``{% generation %}``
markers), tokenise the whole text once without adding special tokens, and train the tokens that
overlap a generation span. tests/data/test_token_equality.py proves, for every registry family, that
this gives the same ids and mask as ``tokenizer.apply_chat_template`` (what trl calls).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.errors import UserError, closest_sibling

GENERATION_MARKER = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass
class TokenizedRow:
    input_ids: list[int]
    assistant_mask: list[int]  # 1 = trained (part of an assistant answer, incl. its end-of-turn token)
    text: str

    @property
    def trained_tokens(self) -> int:
        return sum(self.assistant_mask)


def training_template(model: str | Path, tokenizer: Any = None) -> str:
    """sectune's training template for ``model``: the registry family's, else the tokenizer's own.

    A template without ``{% generation %}`` markers is refused: assistant-only loss would train nothing.
    """
    from sectune.models.load import spec_for_folder
    from sectune.registry.models import REGISTRY

    spec = REGISTRY.get(str(model))
    if spec is None and Path(str(model)).is_dir():
        spec = spec_for_folder(Path(str(model)))
    if spec is not None:
        return spec.template_path.read_text(encoding="utf-8")
    template = getattr(tokenizer, "chat_template", None)
    if not template:
        raise UserError(
            "the model's tokenizer has no chat template", field="model", fix="use a registry model (sectune models)"
        )
    require_generation_markers(template, source=str(model))
    return template


def require_generation_markers(template: str, *, source: str = "chat template") -> None:
    """A UserError when a template cannot mark assistant tokens (assistant-only loss would train nothing)."""
    if not GENERATION_MARKER.search(template):
        raise UserError(
            "chat template has no {% generation %} markers: assistant-only loss would train on nothing",
            file=source,
            fix="wrap each assistant answer and its end-of-turn token in {% generation %}...{% endgeneration %} "
            "(see src/sectune/registry/templates/README.md)",
        )


def load_prep_tokenizer(model: str | Path, tokenizer: str | Path | Any = None):
    """The tokenizer to render with: ``tokenizer`` (a folder or object) or the model's, with sectune's template."""
    from sectune.models.load import load_tokenizer

    if tokenizer is None:
        try:
            loaded = load_tokenizer(model)
        except OSError as exc:
            raise UserError(
                f"cannot load the tokenizer of '{model}' ({type(exc).__name__})",
                field="model",
                fix="download the model first, or pass --tokenizer DIR (a local tokenizer of the same family)",
            ) from None
    elif isinstance(tokenizer, (str, Path)):
        from transformers import AutoTokenizer

        _require_tokenizer_folder(Path(tokenizer).expanduser(), str(tokenizer))
        try:
            loaded = AutoTokenizer.from_pretrained(str(tokenizer))
        except (OSError, ValueError) as exc:
            raise UserError(
                f"cannot load tokenizer ({exc})".splitlines()[0], file=tokenizer, fix="a tokenizer folder"
            ) from None
    else:
        import copy

        loaded = copy.deepcopy(tokenizer)  # the template is set below: never change the caller's object
    loaded.chat_template = training_template(model, loaded)
    if loaded.pad_token is None:
        loaded.pad_token = loaded.eos_token
    return loaded


def _require_tokenizer_folder(folder: Path, written: str) -> None:
    """A UserError when ``--tokenizer`` names no folder (instead of the hub's error for an unknown repo id)."""
    if folder.is_dir():
        return
    if folder.exists():
        raise UserError(
            "is a file, not a tokenizer folder",
            file=written,
            field="--tokenizer",
            fix=f"pass the folder that holds it: --tokenizer {folder.parent.as_posix()}",
        )
    sibling = closest_sibling(folder)
    parent = "" if folder.parent.is_dir() else f" (nor does {folder.parent.as_posix()}/)"
    raise UserError(
        f"tokenizer folder does not exist{parent}",
        file=written,
        field="--tokenizer",
        fix=f"did you mean --tokenizer {sibling}?"
        if sibling
        else "pass an existing folder with the tokenizer files (tokenizer.json, tokenizer_config.json), e.g. a "
        "model folder, or leave --tokenizer out to use the model's own",
    )


def render_text(tokenizer: Any, messages: list[dict[str, Any]], *, add_generation_prompt: bool = False) -> str:
    """The row as the model sees it (no tokenisation)."""
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def tokenize_for_training(tokenizer: Any, messages: list[dict[str, Any]]) -> TokenizedRow:
    """Token ids and assistant mask of one row, from the text and the template's generation spans."""
    return tokenize_many(tokenizer, [messages])[0]


def tokenize_many(tokenizer: Any, conversations: list[list[dict[str, Any]]], *, chunk: int = 256) -> list[TokenizedRow]:
    """``tokenize_for_training`` for many rows: batched tokenizer calls (the fast tokenizer's Rust loop)."""
    if len(conversations) > chunk:  # bounded memory: offsets of thousands of rows add up
        return [
            row
            for i in range(0, len(conversations), chunk)
            for row in tokenize_many(tokenizer, conversations[i : i + chunk])
        ]
    from transformers.utils.chat_template_utils import render_jinja_template

    if not conversations:
        return []
    template = tokenizer.chat_template
    require_generation_markers(template)
    rendered: Any = render_jinja_template(
        conversations=conversations,
        chat_template=template,
        return_assistant_tokens_mask=True,
        **tokenizer.special_tokens_map,
    )  # (texts, generation spans), one per conversation
    texts: list[str] = rendered[0]
    encodings = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True)
    return [
        TokenizedRow(list(ids), _mask(offsets, spans), text)
        for ids, offsets, spans, text in zip(
            encodings["input_ids"], encodings["offset_mapping"], rendered[1], texts, strict=True
        )
    ]


def _mask(offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """1 for every token overlapping a generation span; both lists are in text order, so one pass."""
    mask = [0] * len(offsets)
    span = 0
    for index, (start, end) in enumerate(offsets):
        while span < len(spans) and start >= spans[span][1]:
            span += 1
        if span == len(spans):
            break
        if end > spans[span][0]:
            mask[index] = 1
    return mask


def prompt_completion(tokenizer: Any, messages: list[dict[str, Any]]) -> dict[str, str]:
    """The seed notebooks' form: everything before the last answer, and the last answer (rendered text).

    Encoded as text the way trl encodes text rows (special tokens on), prompt + completion gives the same
    ids as the messages form: a BOS the tokenizer adds itself is left out of the prompt text.
    """
    full = render_text(tokenizer, messages)
    prompt = render_text(tokenizer, messages[:-1], add_generation_prompt=True)
    if not full.startswith(prompt):
        raise UserError(
            "the chat template renders the prompt differently alone than inside the full conversation",
            field="chat_template",
            fix="make add_generation_prompt render exactly the assistant header the full conversation has",
        )
    completion = full[len(prompt) :]
    if tokenizer.bos_token and prompt.startswith(tokenizer.bos_token) and encoding_adds_bos(tokenizer):
        prompt = prompt[len(tokenizer.bos_token) :]  # the tokenizer adds it when the text is encoded: never twice
    return {"prompt": prompt, "completion": completion}


def encoding_adds_bos(tokenizer: Any) -> bool:
    """Whether encoding plain text (with special tokens, as trl does for text rows) puts a BOS in front."""
    bos = tokenizer.bos_token
    if not bos:
        return False
    ids = tokenizer("x", add_special_tokens=True)["input_ids"]
    return bool(ids) and ids[0] == tokenizer.convert_tokens_to_ids(bos)


def length_histogram(lengths: list[int], max_length: int, bins: int = 8) -> dict[str, Any]:
    """Equal-width bins from 0 to max_length plus one bin for rows over it."""
    width = max(1, -(-max_length // bins))
    edges = [i * width for i in range(bins + 1)]
    counts = [0] * bins
    over = 0
    for length in lengths:
        if length > max_length:
            over += 1
        else:
            counts[min(bins - 1, length // width)] += 1
    labels = [f"{edges[i] + (1 if i else 0)}-{min(edges[i + 1], max_length)}" for i in range(bins)]
    return {"bins": dict(zip(labels, counts, strict=True)), f">{max_length}": over, "max_length": max_length}


def length_stats(lengths: list[int], max_length: int) -> dict[str, Any]:
    import statistics

    if not lengths:
        return {"rows": 0}
    ordered = sorted(lengths)
    return {
        "rows": len(lengths),
        "min": ordered[0],
        "median": statistics.median(ordered),
        "p95": ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))],
        "max": ordered[-1],
        "total_tokens": sum(ordered),
        "over_max_length": sum(length > max_length for length in lengths),
        "histogram": length_histogram(lengths, max_length),
    }


def fit_to_length(
    tokenizer: Any,
    messages: list[dict[str, Any]],
    max_length: int,
    policy: str,
    where: str,
    path: Path | str,
    length: int | None = None,
) -> tuple[list[dict[str, Any]] | None, int, str]:
    """Apply the length policy to one row: (messages or None when dropped, token length, action).

    ``length`` is the row's token length when already known (batched tokenisation).
    """
    if length is None:
        length = len(tokenize_for_training(tokenizer, messages).input_ids)
    if length <= max_length:
        return messages, length, "kept"
    if policy == "drop":
        return None, length, "dropped"
    if policy == "error":
        raise UserError(
            f"{where}: {length} tokens exceed prep.max_length={max_length}",
            file=path,
            field="prep.max_length",
            fix="raise prep.max_length, or set prep.length_policy to drop or truncate-prompt",
        )
    shortened = _truncate_prompt(tokenizer, messages, max_length)
    if shortened is None:  # the answer alone does not fit: never cut it
        return None, length, "dropped_answer_too_long"
    return shortened, len(tokenize_for_training(tokenizer, shortened).input_ids), "prompt_truncated"


def _truncate_prompt(tokenizer: Any, messages: list[dict[str, Any]], max_length: int) -> list[dict[str, Any]] | None:
    """Drop earlier turns, then cut the last question from the left; answers are never touched."""
    system = [m for m in messages[:1] if m["role"] == "system"]
    last = [dict(m) for m in messages[-2:]]  # the last question and its answer
    candidate = [*system, *last]

    def fits(text: str) -> bool:
        trial = [*system, {"role": "user", "content": text}, last[1]]
        return len(tokenize_for_training(tokenizer, trial).input_ids) <= max_length

    question = last[0]["content"]
    if fits(question):
        return candidate
    words = question.split(" ")
    low, high = 1, len(words)  # number of words dropped from the front
    if not fits("… " + words[-1]):
        return None
    while low < high:
        middle = (low + high) // 2
        if fits("… " + " ".join(words[middle:])):
            high = middle
        else:
            low = middle + 1
    last[0]["content"] = "… " + " ".join(words[low:])
    return [*system, *last]
