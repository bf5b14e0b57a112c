"""Batched chat generation with a local transformers model (shared by eval, the local provider, checks).

Measured on 2 CPU cores (ENVIRONMENT.md): batching many prompts in one ``generate`` with left
padding under ``torch.inference_mode()`` is ~6x faster than one request at a time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

Messages = list[dict[str, str]]


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (ended with an end-of-turn token) or "length" (hit max_new_tokens)
    prompt_tokens: int
    completion_tokens: int


def generate_chat(
    model: Any,
    tokenizer: Any,
    conversations: Sequence[Messages],
    *,
    max_new_tokens: int = 128,
    batch_size: int = 16,
    temperature: float = 0.0,
    seed: int | None = None,
    progress: str | None = None,
) -> list[Generation]:
    """Answer each conversation (its last turn is the user's) with the model's chat template.

    ``progress`` names a progress tracker counting the answers (none when None).
    """
    import torch

    from sectune.progress import track

    if seed is not None:
        torch.manual_seed(seed)
    prompts = [render_prompt(tokenizer, c) for c in conversations]
    results: list[Generation] = []
    with track(progress or "generating", len(prompts), unit="answers", mode=None if progress else "off") as tracker:
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start : start + batch_size]
            results.extend(_generate_batch(model, tokenizer, batch, max_new_tokens, temperature))
            tracker.advance(len(batch))
    return results


def render_prompt(tokenizer: Any, conversation: Messages) -> str:
    """The prompt text: a new assistant turn, or, when the last message is the assistant's, its continuation.

    A conversation ending with an assistant message is a prefill: the model continues that text (the returned
    Generation holds only the continuation). Small models follow a prefilled start far better than instructions.
    """
    if conversation and conversation[-1]["role"] == "assistant":
        return tokenizer.apply_chat_template(conversation, tokenize=False, continue_final_message=True)
    return tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)


def end_token_ids(tokenizer: Any, model: Any) -> set[int]:
    """Token ids that end an assistant turn: eos plus the generation config's eos ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids


def _generate_batch(model: Any, tokenizer: Any, prompts: list[str], max_new_tokens: int, temperature: float):
    import torch

    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        batch = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    batch = batch.to(model.device)
    stops = end_token_ids(tokenizer, model)
    sampling = {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
    with torch.inference_mode():
        output = model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=sorted(stops),
            **sampling,
        )
    prompt_len = batch["input_ids"].shape[1]
    results = []
    for row, attention in zip(output, batch["attention_mask"], strict=True):
        new = row[prompt_len:].tolist()
        ended = next((i for i, tok in enumerate(new) if tok in stops), None)
        kept = new if ended is None else new[:ended]
        results.append(
            Generation(
                text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                finish_reason="length" if ended is None else "stop",
                prompt_tokens=int(attention.sum()),
                completion_tokens=len(kept) + (0 if ended is None else 1),
            )
        )
    return results
