"""Each generation metric against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sectune.evaluate import metrics
from sectune.evaluate.stats import bootstrap_interval, mcnemar_p, mean_with_interval, paired_difference


def test_rouge_l_is_the_lcs_f1():
    # LCS("the cat sat", "the cat sat on the mat") = 3 words: P = 3/3, R = 3/6, F1 = 2PR/(P+R) = 2/3
    assert metrics.rouge_l(["the cat sat"], ["the cat sat on the mat"]) == pytest.approx(2 / 3)
    assert metrics.rouge_l(["a firewall filters traffic"], ["a firewall filters traffic"]) == pytest.approx(1.0)
    assert metrics.rouge_l(["zebra"], ["firewall"]) == 0.0


def test_bleu_applies_the_brevity_penalty():
    # every n-gram precision is 1 (4/4, 3/3, 2/2, 1/1); BP = exp(1 - 6/4)
    expected = 100 * math.exp(1 - 6 / 4)
    assert metrics.bleu(["the cat sat on"], ["the cat sat on the mat"]) == pytest.approx(expected, rel=1e-6)
    assert metrics.bleu(["the cat sat on the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)


def test_chrf_by_hand():
    # char 1-grams: P = 2/2, R = 2/3; 2-grams: P = 1/1, R = 1/2; higher orders have no hypothesis n-grams.
    # sacrebleu averages P and R over the 2 effective orders: P = 1, R = 7/12; F(beta=2) = 5PR / (4P + R)
    precision, recall = 1.0, 7 / 12
    expected = 100 * 5 * precision * recall / (4 * precision + recall)
    assert metrics.chrf(["ab"], ["abc"]) == pytest.approx(expected, rel=1e-9)
    assert metrics.chrf(["abc def"], ["abc def"]) == pytest.approx(100.0)


def test_embedding_similarity_is_the_mean_cosine():
    vectors = {"p1": [1.0, 0.0], "r1": [1.0, 1.0], "p2": [0.0, 1.0], "r2": [0.0, -2.0]}

    def encoder(texts):
        return np.array([vectors[t] for t in texts])

    expected = (1 / math.sqrt(2) + -1.0) / 2
    assert metrics.embedding_similarity(["p1", "p2"], ["r1", "r2"], encoder) == pytest.approx(expected)


def test_packaged_sentence_model_loads_offline_and_ranks_paraphrases_higher():
    encode = metrics.sentence_encoder()
    close = metrics.embedding_similarity(["A firewall filters traffic."], ["Firewalls filter network traffic."], encode)
    far = metrics.embedding_similarity(["A firewall filters traffic."], ["I like baking bread on Sundays."], encode)
    assert close > far + 0.2


def test_answer_length_counts_words_and_tokens(tiny_tokenizer):
    result = metrics.answer_length(["a b c", "d"], tiny_tokenizer)
    assert result["mean_words"] == 2.0
    expected_tokens = np.mean([len(tiny_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in ["a b c", "d"]])
    assert result["mean_tokens"] == pytest.approx(expected_tokens)


def test_perplexity_of_a_uniform_model_is_the_vocabulary_size(tiny_tokenizer, forced_lm):
    vocab = len(tiny_tokenizer)
    model = forced_lm(vocab)
    prompts = [[{"role": "user", "content": "What is a firewall?"}], [{"role": "user", "content": "Hi"}]]
    refs = ["A firewall filters traffic.", "Hello there, how can I help?"]
    result = metrics.reference_perplexity(model, tiny_tokenizer, prompts, refs, batch_size=1)
    assert result["perplexity"] == pytest.approx(vocab, rel=1e-5)
    # only answer tokens count: the answer text plus its end-of-turn token(s), never the prompt
    answer_only = sum(len(tiny_tokenizer(r + "<|im_end|>\n", add_special_tokens=False)["input_ids"]) for r in refs)
    assert result["answer_tokens"] == answer_only


def test_perplexity_drops_when_the_model_favours_the_answer(tiny_tokenizer, forced_lm):
    answer = "firewall"
    ids = tiny_tokenizer(answer + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    favoured = forced_lm(len(tiny_tokenizer), {i: 8.0 for i in ids})
    prompt = [[{"role": "user", "content": "Name a network filter."}]]
    uniform = metrics.reference_perplexity(forced_lm(len(tiny_tokenizer)), tiny_tokenizer, prompt, [answer])
    better = metrics.reference_perplexity(favoured, tiny_tokenizer, prompt, [answer])
    assert better["perplexity"] < uniform["perplexity"] / 10
    # by hand: each answer token gets e^8 / (k e^8 + V - k), k distinct favoured ids
    k, vocab = len(set(ids)), len(tiny_tokenizer)
    p = math.exp(8) / (k * math.exp(8) + vocab - k)
    assert better["perplexity"] == pytest.approx(1 / p, rel=1e-4)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = [1, 0, 1, 1, 0, 1, 0, 1, 1, 1]
    first = bootstrap_interval(values, samples=500, seed=3)
    assert first == bootstrap_interval(values, samples=500, seed=3)
    assert first[0] <= np.mean(values) <= first[1]
    assert bootstrap_interval([0.5] * 8, samples=100, seed=0) == (0.5, 0.5)
    entry = mean_with_interval(values, samples=500, seed=3)
    assert entry["value"] == pytest.approx(0.7) and entry["n"] == 10


def test_mcnemar_and_paired_difference_by_hand():
    a = [1, 1, 1, 1, 1, 0, 0]
    b = [0, 0, 0, 0, 0, 0, 0]
    # 5 discordant pairs all favouring a: p = 2 * (1/2)^5
    assert mcnemar_p(a, b) == pytest.approx(2 / 32)
    small = paired_difference([1, 0], [0, 1], samples=200, seed=0)
    assert small["difference"] == 0.0 and small["verdict"] == "within noise" and not small["significant"]
    big = paired_difference([1] * 40, [0] * 40, samples=200, seed=0)
    assert big["verdict"] == "better" and big["ci_low"] == 1.0


def test_continuation_logprobs_equal_a_full_unpadded_forward(tiny_model_dir):
    import torch

    from sectune.models.load import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    texts = [("What is a firewall?", " It filters traffic."), ("Hi", " A VPN encrypts traffic between endpoints.")]
    sequences = []
    for prompt, answer in texts:
        p = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        a = tokenizer(answer, add_special_tokens=False)["input_ids"]
        sequences.append((p + a, len(p)))
    batched = metrics.continuation_logprobs(model, sequences, tokenizer.pad_token_id)
    for (ids, prompt_len), got in zip(sequences, batched, strict=True):
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0].float()
        full = torch.log_softmax(logits, dim=-1)
        expected = [float(full[pos, ids[pos + 1]]) for pos in range(prompt_len - 1, len(ids) - 1)]
        assert got == pytest.approx(expected, abs=1e-5)


def test_shared_prompt_logprobs_equal_each_sequence_scored_whole(tiny_model_dir):
    """The shared prefix, each prompt and each continuation computed once on a KV cache give the numbers of
    prompt + continuation run whole: uneven prompts over a common prefix, continuations of 1 to 4 tokens."""
    import torch

    from sectune.models.load import load_for_inference

    model, tokenizer = load_for_inference(tiny_model_dir)
    head = tokenizer("System: you answer security questions.\nUser:", add_special_tokens=False)["input_ids"]
    prompts = [head + tokenizer(q, add_special_tokens=False)["input_ids"] for q in (" What is a VPN?", " Hi", " MFA?")]
    continuations = [
        [tokenizer(t, add_special_tokens=False)["input_ids"] for t in (" A tunnel.", " B", " It encrypts traffic.")],
        [tokenizer(" Hello there", add_special_tokens=False)["input_ids"], []],
        [tokenizer(" Two factors of proof", add_special_tokens=False)["input_ids"]],
    ]
    assert any(len(c) == 1 for conts in continuations for c in conts) and max(map(len, continuations[0])) >= 3
    pad = tokenizer.pad_token_id
    next_logprobs, per_token = metrics.shared_prompt_logprobs(model, prompts, continuations, pad)
    assert next_logprobs.shape == (len(prompts), model.config.vocab_size)
    for prompt, row in zip(prompts, next_logprobs, strict=True):
        with torch.inference_mode():
            whole = torch.log_softmax(model(input_ids=torch.tensor([prompt])).logits[0, -1].float(), dim=-1)
        assert (row - whole).abs().max() < 1e-5
    for prompt, conts, got in zip(prompts, continuations, per_token, strict=True):
        for cont, values in zip(conts, got, strict=True):
            expected = metrics.continuation_logprobs(model, [(prompt + cont, len(prompt))], pad)[0] if cont else []
            assert values == pytest.approx(expected, abs=1e-5)
