"""Build the model a training method needs: full weights, LoRA, 4-bit QLoRA or 8-bit LoRA.

Precision: ``auto`` picks bf16 where the hardware has it (CUDA with bf16, or a CPU with AVX512-BF16/AMX,
where bf16 autocast over fp32 weights was the fastest variant measured), else fp16 on older GPUs and
fp32 on CPUs without native bf16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sectune.config.train import LoraConfig, TrainConfig
from sectune.errors import UserError
from sectune.models.load import ResolvedModel

log = logging.getLogger(__name__)

QUANTIZATION = {"qlora": "4bit", "qlora-8bit": "8bit"}


@dataclass(frozen=True)
class BuiltModel:
    model: Any
    trainable_params: int
    total_params: int
    target_modules: list[str] | str | None  # None for full fine-tuning


def has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


ROWS_PER_UPDATE = 8  # per device, when grad_accum is auto


def resolve_batch(batch_size: int | str, grad_accum: int | str) -> tuple[int, int]:
    """(rows per step, steps per update) for the config's values ("auto": 1 on CPU, 4 on GPU; 8 rows per update)."""
    batch = (4 if has_cuda() else 1) if batch_size == "auto" else int(batch_size)
    accum = max(1, ROWS_PER_UPDATE // batch) if grad_accum == "auto" else int(grad_accum)
    return batch, accum


def resolve_precision(requested: str) -> str:
    """bf16, fp16 or fp32 for ``requested`` (auto: ``sectune.hardware.fast_dtypes``, bf16 where it is fast)."""
    if requested != "auto":
        if requested == "fp16" and not has_cuda():
            raise UserError("fp16 mixed precision needs a CUDA GPU", field="train.precision", fix="use auto or bf16")
        return requested
    from sectune.hardware import fast_dtypes

    return fast_dtypes().train_precision


def half_dtype(precision: str) -> Any:
    """torch.bfloat16 / torch.float16 for "bf16" / "fp16"; None for fp32."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def load_dtype(method: str, precision: str) -> Any:
    """The dtype the weights are loaded in.

    LoRA's frozen base weights are stored in the compute dtype when training in bf16/fp16, on GPU and on a
    CPU with native bf16 alike: half the memory, and no autocast cast of every weight on every forward
    (SmolLM2 LoRA on an AVX512-BF16 CPU: ~1.2x tokens/s, -23 % peak; docs/performance.md). Trained full
    weights stay fp32 under autocast; fp32 runs keep fp32 weights.
    """
    import torch

    half = half_dtype(precision)
    if method in QUANTIZATION:
        return half or torch.float32  # also the 4-bit compute dtype
    if method == "lora" and half is not None:
        return half
    return torch.float32


def fsdp_enabled() -> bool:
    """True under `accelerate launch` with an FSDP config (accelerate sets this variable)."""
    import os

    return os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true"


def device_map_for(method: str) -> Any:
    """Quantized models are placed at load time: on this process's GPU (one per DDP rank); FSDP places them."""
    if method not in QUANTIZATION or not has_cuda() or fsdp_enabled():
        return None
    from accelerate import PartialState

    return {"": PartialState().process_index}


def torch_float32() -> Any:
    import torch

    return torch.float32


def lora_targets(lora: LoraConfig, resolved: ResolvedModel) -> list[str] | str:
    """Target modules: the registry's list, every linear layer, or the user's list."""
    if lora.target_modules == "registry":
        if resolved.spec is None:
            log.warning("model %s is not in the registry: LoRA targets all linear layers", resolved.ref)
            return "all-linear"
        return list(resolved.spec.lora_targets)
    return lora.target_modules


def peft_config(lora: LoraConfig, targets: list[str] | str):
    from peft import LoraConfig as PeftLoraConfig

    return PeftLoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=targets,
        use_dora=lora.use_dora,
        use_rslora=lora.use_rslora,
        bias="none",
        task_type="CAUSAL_LM",
    )


def build_model(model_ref: str, cfg: TrainConfig, *, precision: str, gradient_checkpointing: bool) -> BuiltModel:
    """Load the base model for ``cfg.method`` and wrap it with LoRA unless the method is ``full``."""
    from sectune.models.load import load_model, resolve_model

    resolved = resolve_model(model_ref)
    quantization = QUANTIZATION.get(cfg.method)
    dtype = load_dtype(cfg.method, precision)
    fsdp_qlora = cfg.method == "qlora" and fsdp_enabled()
    if fsdp_qlora and dtype is torch_float32():
        raise UserError("FSDP-QLoRA needs bf16 or fp16", field="train.precision", fix="set train.precision=bf16")
    model = load_model(
        model_ref,
        dtype=dtype,
        quantization=quantization,  # type: ignore[arg-type]
        device_map=device_map_for(cfg.method),
        quant_storage=dtype if fsdp_qlora else None,  # FSDP shards float storage only
    )
    model.config.use_cache = False  # the KV cache only costs memory while training
    if cfg.method == "full":
        total = sum(p.numel() for p in model.parameters())
        return BuiltModel(model, total, total, None)
    if quantization and not fsdp_qlora:  # its fp32 upcast would break FSDP's uniform dtype
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gradient_checkpointing)
    from peft import get_peft_model

    targets = lora_targets(cfg.lora, resolved)
    try:
        model = get_peft_model(model, peft_config(cfg.lora, targets))
    except ValueError as exc:  # peft names the missing modules
        raise UserError(
            f"LoRA targets do not match the model: {exc}".splitlines()[0],
            field="train.lora.target_modules",
            fix="use 'registry', 'all-linear' or module names of this model",
        ) from None
    trainable, total = model.get_nb_trainable_parameters()
    return BuiltModel(model, int(trainable), int(total), targets)
