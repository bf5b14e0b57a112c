"""The 4-bit silent-gradient trap (ENVIRONMENT.md) and sectune's guard against it.

On CPU, bitsandbytes repacks Linear4bit weights for inference after one eval-mode, no-grad forward; LoRA
gradients are then silently wrong. These tests compare the LoRA gradients of a 4-bit model with those of a
dequantized fp32 reference after an evaluation pass: with sectune's guard they match; with the guard
removed (the raw trap) they do not, so the comparison is able to fail.
"""

from __future__ import annotations

import pytest
import torch

from sectune.train.guard import QuantizedInferenceError, forbid_inference, is_4bit
from sectune.train.model import build_model


def _qlora_model(tiny_config, ref):
    cfg = tiny_config("train.method=qlora", "train.lora.dropout=0.0", "train.lora.target_modules=all-linear")
    torch.manual_seed(0)
    built = build_model(ref, cfg.train, precision="fp32", gradient_checkpointing=False)
    # B starts at zero; give the adapters real values so every LoRA gradient is non-trivial
    with torch.no_grad():
        for name, param in built.model.named_parameters():
            if "lora_" in name:
                param.normal_(0, 0.05)
    return cfg, built.model


def _dequantized_reference(cfg, model, ref):
    """An fp32 copy whose linear weights are the 4-bit model's dequantized weights, with the same LoRA."""
    import bitsandbytes.functional as bnbf
    from bitsandbytes.nn import Linear4bit
    from peft import get_peft_model

    from sectune.models.load import load_model, resolve_model
    from sectune.train.model import lora_targets, peft_config

    reference = load_model(ref, dtype=torch.float32)
    modules = dict(reference.named_modules())
    for name, module in model.base_model.model.named_modules():
        if isinstance(module, Linear4bit):
            weight = bnbf.dequantize_4bit(module.weight.data, module.weight.quant_state).float()
            modules[name.removesuffix(".base_layer")].weight.data.copy_(weight)
    reference = get_peft_model(reference, peft_config(cfg.train.lora, lora_targets(cfg.train.lora, resolve_model(ref))))
    lora_state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    missing = reference.load_state_dict(lora_state, strict=False)
    assert not missing.unexpected_keys
    return reference


def _batch(seed: int = 1) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, 300, (2, 24), generator=generator)
    return {"input_ids": ids, "labels": ids}


def _lora_gradients(model) -> dict[str, torch.Tensor]:
    model.train()
    model.zero_grad()
    model(**_batch()).loss.backward()
    return {
        n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
        for n, p in model.named_parameters()
        if "lora_" in n
    }


def _relative_error(got: dict, want: dict) -> float:
    assert got.keys() == want.keys() and got
    return max(float((got[k] - want[k]).norm() / want[k].norm()) for k in want)


def _evaluation_pass(model) -> None:
    """What a trainer's evaluation loop (or generate) does to the model it is given."""
    model.eval()
    with torch.no_grad():
        model(**_batch(seed=2))
    model.train()


def _gradient_error_after_evaluation(tiny_config, tiny_model_dir, *, guard: bool) -> float:
    cfg, model = _qlora_model(tiny_config, tiny_model_dir)
    assert is_4bit(model)
    reference = _lora_gradients(_dequantized_reference(cfg, model, tiny_model_dir))
    assert _relative_error(_lora_gradients(model), reference) < 1e-4  # before any evaluation: exact
    if guard:
        forbid_inference(model)
    try:
        _evaluation_pass(model)
    except QuantizedInferenceError:
        model.train()  # refused: sectune evaluates a separately loaded model instead (run.separate_instance_loss)
    return _relative_error(_lora_gradients(model), reference)


def _bitsandbytes_repacks_after_eval() -> bool:
    """bitsandbytes' own condition for the inference repack: its CPU kernels see AVX512-BF16 (not sectune's
    detection, which SECTUNE_CPU_BF16 may force)."""
    import bitsandbytes.functional as bnbf

    return not torch.cuda.is_available() and bool(bnbf.has_avx512bf16())


@pytest.mark.skipif(
    not _bitsandbytes_repacks_after_eval(),
    reason="bitsandbytes repacks 4-bit weights after an eval forward only on CPUs with AVX512-BF16; "
    "the trap does not exist here (the guard's own tests still run)",
)
def test_raw_trap_exists_without_the_guard(tiny_config, tiny_model_dir):
    """Remove the guard and the 4-bit LoRA gradients no longer match the dequantized reference."""
    error = _gradient_error_after_evaluation(tiny_config, tiny_model_dir, guard=False)
    assert error > 0.5, f"bitsandbytes no longer repacks after eval on this machine (error {error})"


def test_gradients_match_reference_after_evaluation_with_sectunes_guard(tiny_config, tiny_model_dir):
    error = _gradient_error_after_evaluation(tiny_config, tiny_model_dir, guard=True)
    assert error < 1e-4


def test_guard_refuses_the_trainers_evaluation_and_generation(tiny_config, tiny_model_dir):
    _, model = _qlora_model(tiny_config, tiny_model_dir)
    forbid_inference(model)
    with pytest.raises(QuantizedInferenceError, match="separately loaded model"):
        _evaluation_pass(model)
    with pytest.raises(QuantizedInferenceError):
        model.generate(input_ids=_batch()["input_ids"][:1, :4], max_new_tokens=2)


def test_qlora_schedules_no_evaluation_during_training(tiny_config, tiny_dataset, tmp_path):
    from sectune.train.run import open_session, sft_arguments

    for method, expected in (("qlora", "no"), ("lora", "steps")):
        session = open_session(
            tiny_config(f"train.method={method}"), tiny_dataset, tmp_path / method, resume=False, overwrite=False
        )
        args = sft_arguments(session, precision="fp32", gradient_checkpointing=False, has_validation=True)
        assert args.eval_strategy == expected
