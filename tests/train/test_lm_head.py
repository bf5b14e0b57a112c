"""The kept-gradient LM head (CPU/MPS) gives trl's fused head's loss, metrics and gradients."""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

from transformers import LlamaConfig, LlamaForCausalLM  # noqa: E402
from trl.trainer.utils import add_fused_lm_head  # noqa: E402

from sectune.train import lm_head  # noqa: E402

OUTPUTS = ("log_probs", "entropy", "is_top1")


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=301, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True, **overrides,
    )  # fmt: skip
    return LlamaForCausalLM(config)


def pair(model=None):
    """trl's fused head and the kept-gradient head on two copies of the same weights."""
    trl_model = model or tiny_llama()
    ours = copy.deepcopy(trl_model)
    add_fused_lm_head(trl_model, outputs=OUTPUTS)
    add_fused_lm_head(ours, outputs=OUTPUTS)
    assert lm_head.use_kept_gradient_head(ours)
    return trl_model, ours


def batch():
    """Two rows: a masked prompt, a padded tail on the second, trained positions between."""
    generator = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 301, (2, 19), generator=generator)
    labels = ids.clone()
    labels[:, :6] = -100
    labels[1, 13:] = -100
    return ids, labels


def step(model, ids, labels, *, bf16: bool = False):
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(input_ids=ids, labels=labels, fused_lm_head=True)
    out.loss.backward()
    grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
    return out, grads


def relative(a, b) -> float:
    return float((a - b).norm() / b.norm())


def test_fp32_matches_trls_fused_head_in_loss_metrics_and_every_gradient():
    trl_model, ours = pair()
    ids, labels = batch()
    expected, expected_grads = step(trl_model, ids, labels)
    got, grads = step(ours, ids, labels)
    torch.testing.assert_close(got.loss, expected.loss)
    torch.testing.assert_close(got.log_probs, expected.log_probs)
    torch.testing.assert_close(got.entropy, expected.entropy, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.is_top1, expected.is_top1)
    assert torch.equal(got.label_mask, expected.label_mask)
    assert grads.shape == expected_grads.shape  # the tied embedding/LM head gets its gradient too
    torch.testing.assert_close(grads, expected_grads, atol=1e-6, rtol=1e-4)
    assert float(got.log_probs.detach()[~got.label_mask].abs().sum()) == 0.0  # zero on ignored positions, like trl


def test_the_loss_is_the_models_own_cross_entropy():
    model = tiny_llama()
    ids, labels = batch()
    reference = model(input_ids=ids, labels=labels).loss
    _, ours = pair(model)
    torch.testing.assert_close(ours(input_ids=ids, labels=labels, fused_lm_head=True).loss, reference)


def test_bf16_autocast_gradients_stay_as_close_to_fp32_as_plain_bf16_training():
    """Under bf16 the kept logits gradient is rounded to bf16, as transformers' own bf16 loss does."""
    model = tiny_llama()
    ids, labels = batch()
    _, fp32_grads = step(copy.deepcopy(model), ids, labels)
    plain = copy.deepcopy(model)  # the model's own loss over full bf16 logits
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain(input_ids=ids, labels=labels).loss.backward()
    plain_grads = torch.cat([p.grad.flatten() for p in plain.parameters() if p.grad is not None])
    _, ours = pair(model)
    _, grads = step(ours, ids, labels, bf16=True)
    assert relative(grads, fp32_grads) <= 1.5 * relative(plain_grads, fp32_grads) + 1e-3


def test_token_chunks_give_the_same_numbers(monkeypatch):
    _, ours = pair()
    ids, labels = batch()
    whole, whole_grads = step(ours, ids, labels)
    monkeypatch.setattr(lm_head, "CHUNK_BYTES", 4 * 301 * 3)  # 3 tokens a chunk
    assert lm_head.chunk_tokens(301) == 3
    chunked, chunked_grads = step(ours, ids, labels)
    torch.testing.assert_close(chunked.loss, whole.loss)
    torch.testing.assert_close(chunked_grads, whole_grads)


def test_a_micro_batch_over_the_kept_bytes_goes_to_trls_kernel(monkeypatch):
    _, ours = pair()
    ids, labels = batch()

    def refuse(*args):
        raise AssertionError("the kept-gradient head ran")

    monkeypatch.setattr(lm_head.KeptGradientLogProbs, "apply", classmethod(lambda cls, *a: refuse()))
    with pytest.raises(AssertionError, match="kept-gradient head ran"):
        step(ours, ids, labels)
    monkeypatch.setattr(lm_head, "MAX_KEPT_BYTES", 10)
    out, _ = step(ours, ids, labels)
    assert torch.isfinite(out.loss)


def test_models_that_scale_or_cap_their_logits_keep_trls_head():
    model = tiny_llama()
    model.config.final_logit_softcapping = 30.0
    add_fused_lm_head(model, outputs=OUTPUTS)
    assert lm_head.plain_head_reason(model.config) == "final_logit_softcapping"
    assert not lm_head.use_kept_gradient_head(model)


def test_lora_trains_only_the_adapter_through_the_kept_head():
    from peft import LoraConfig, get_peft_model

    trl_model = tiny_llama()
    ours = copy.deepcopy(trl_model)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    add_fused_lm_head(trl_model, outputs=OUTPUTS)
    add_fused_lm_head(ours, outputs=OUTPUTS)
    trl_peft, our_peft = get_peft_model(trl_model, lora), get_peft_model(ours, copy.deepcopy(lora))
    our_peft.load_state_dict(trl_peft.state_dict())
    assert lm_head.use_kept_gradient_head(our_peft)
    ids, labels = batch()
    _, expected = step(trl_peft, ids, labels)
    _, grads = step(our_peft, ids, labels)
    trained = [name for name, p in our_peft.named_parameters() if p.grad is not None]
    assert trained and all("lora_" in name for name in trained)
    torch.testing.assert_close(grads, expected, atol=1e-6, rtol=1e-4)


def test_generation_is_untouched():
    _, ours = pair()
    ids, _ = batch()
    logits = ours(input_ids=ids).logits
    assert logits.shape == (2, 19, 301)
