"""`sectune plan`: how much memory a training run needs, before it starts.

An estimate from the architecture numbers in the registry (``ModelSpec.arch``), counted the way sectune
trains (docs/train.md explains each line):

- weights: LoRA's frozen base in the compute dtype (16-bit when training in bf16/fp16), full fine-tuning's
  in fp32; NF4 with double quantization is ~4.13 bits per weight for 4-bit, 8 bits (+ scales) for 8-bit.
  Embeddings and an untied LM head stay unquantized and are upcast to fp32 by peft's
  ``prepare_model_for_kbit_training``.
- LoRA: adapter weights, gradients and AdamW moments, all fp32 (16 bytes per adapter parameter).
- full fine-tuning: fp32 gradients and AdamW moments for every parameter.
- activations: what one decoder layer keeps for backward per token (norm inputs and outputs, q/k/v, attention
  output, the four MLP tensors, LoRA dropout copies), times the layers, or only the layer inputs plus one layer
  with gradient checkpointing; plus the logits and their gradient.
- overhead: the CUDA context and allocator slack on GPU, the Python/torch runtime on CPU.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.registry.models import Architecture, ModelSpec

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

GB = 1024**3
NF4_BYTES = 4.127 / 8  # 4-bit NF4, block 64, double-quantized absmax
INT8_BYTES = 1.0 + 4 / 4096  # int8 weights + per-row fp32 scales (negligible)
ADAMW_STATE_BYTES = 8  # two fp32 moments
CUDA_OVERHEAD_GB = 1.0  # CUDA context + allocator fragmentation, measured typically 0.8–1.5 GB
CPU_OVERHEAD_GB = 0.8  # Python, torch, tokenizer, dataset (SmolLM2 LoRA run: 2.4 GB RSS, 0.54 GB fp32 weights)


@dataclass(frozen=True)
class MemoryPlan:
    """A memory estimate (GB) for one model × method × batch × sequence length, and what the machine has."""

    model: str
    method: str
    batch_size: int
    max_length: int
    precision: str
    gradient_checkpointing: bool
    device: str
    weights_gb: float
    lora_gb: float
    gradients_gb: float
    optimizer_gb: float
    activations_gb: float
    overhead_gb: float
    total_gb: float
    available_gb: float | None
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool | None:
        return None if self.available_gb is None else self.total_gb <= self.available_gb

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


def layer_params(arch: Architecture) -> dict[str, tuple[int, int]]:
    """(in, out) features of the linear layers of one decoder layer (Llama-style)."""
    head_dim = arch.hidden_size // arch.num_heads
    kv = arch.num_kv_heads * head_dim
    h, inter = arch.hidden_size, arch.intermediate_size
    return {
        "q_proj": (h, arch.num_heads * head_dim),
        "k_proj": (h, kv),
        "v_proj": (h, kv),
        "o_proj": (arch.num_heads * head_dim, h),
        "qkv_proj": (h, arch.num_heads * head_dim + 2 * kv),
        "gate_proj": (h, inter),
        "up_proj": (h, inter),
        "down_proj": (inter, h),
        "gate_up_proj": (h, 2 * inter),
    }


LINEAR_LAYERS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def embedding_params(arch: Architecture) -> tuple[int, bool]:
    """(embedding parameters, whether the LM head is a separate untied matrix) from the total count."""
    shapes = layer_params(arch)
    body = arch.num_layers * sum(i * o for name, (i, o) in shapes.items() if name in LINEAR_LAYERS)
    embedding = arch.vocab_size * arch.hidden_size
    total = arch.params_b * 1e9
    untied = abs(total - (body + 2 * embedding)) < abs(total - (body + embedding))
    return embedding, untied


def llama_config(
    arch: Architecture,
    *,
    bos_token_id: int | None = None,
    eos_token_id: int | None = None,
    pad_token_id: int | None = None,
) -> Any:
    """A transformers ``LlamaConfig`` of these numbers (LM head tied unless the count says otherwise), for
    random-init models (the GPU bench) and shape checks; the token ids are those of the tokenizer used."""
    from transformers import LlamaConfig

    _, untied = embedding_params(arch)
    return LlamaConfig(
        vocab_size=arch.vocab_size,
        hidden_size=arch.hidden_size,
        intermediate_size=arch.intermediate_size,
        num_hidden_layers=arch.num_layers,
        num_attention_heads=arch.num_heads,
        num_key_value_heads=arch.num_kv_heads,
        max_position_embeddings=4096,
        tie_word_embeddings=not untied,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
    )


def lora_params(arch: Architecture, targets: list[str] | str, r: int) -> int:
    """Adapter parameters: r × (in + out) per targeted linear layer."""
    shapes = layer_params(arch)
    names = LINEAR_LAYERS if targets == "all-linear" else [t for t in targets if t in shapes]
    return arch.num_layers * sum(r * (shapes[n][0] + shapes[n][1]) for n in names)


def activation_bytes(
    arch: Architecture, tokens: int, bytes_per_value: int, *, checkpointing: bool, lora_inputs: int
) -> float:
    """Bytes kept for backward by the decoder layers and the logits, for ``tokens`` tokens in a micro-batch."""
    h, inter = arch.hidden_size, arch.intermediate_size
    kv = arch.num_kv_heads * (h // arch.num_heads)
    # per token, one layer: 2 norms (in+out), q/k/v/attn-out/o-input, 4 MLP tensors, LoRA dropout copies
    per_layer = 4 * h + (2 * h + 2 * kv) + 2 * h + 2 * h + 4 * inter + lora_inputs * h
    layers = (arch.num_layers * h + per_layer) if checkpointing else arch.num_layers * per_layer
    logits = arch.vocab_size * (bytes_per_value + 4 + 4)  # logits, fp32 log-softmax and its gradient
    return tokens * (layers * bytes_per_value + logits)


def estimate(
    spec: ModelSpec | str,
    method: str,
    *,
    arch: Architecture | None = None,
    batch_size: int = 1,
    max_length: int = 1024,
    lora_r: int = 16,
    lora_targets: list[str] | str | None = None,
    lora_dropout: float = 0.05,
    gradient_checkpointing: bool = False,
    device: str = "cuda",
    precision: str = "bf16",
) -> MemoryPlan:
    """The memory plan for one configuration (no machine lookup: see ``machine_memory``)."""
    name = spec.key if isinstance(spec, ModelSpec) else str(spec)
    arch = arch or (spec.arch if isinstance(spec, ModelSpec) else None)
    if arch is None:
        raise ValueError("pass arch= for a model that is not in the registry")
    targets = lora_targets or (spec.lora_targets if isinstance(spec, ModelSpec) else "all-linear")
    half = precision in ("bf16", "fp16")
    act_bytes = 2 if half else 4
    total_params = arch.params_b * 1e9
    embedding, untied = embedding_params(arch)
    unquantized = embedding * (2 if untied else 1)
    weights = _weight_bytes(method, total_params, unquantized, half=half)
    gradients = optimizer = lora = 0.0
    if method == "full":
        gradients = total_params * 4
        optimizer = total_params * ADAMW_STATE_BYTES
    else:
        lora = lora_params(arch, targets, lora_r) * (4 + 4 + ADAMW_STATE_BYTES)
    lora_inputs = 0 if method == "full" or lora_dropout == 0 else len(targets) if isinstance(targets, list) else 7
    activations = activation_bytes(
        arch, batch_size * max_length, act_bytes, checkpointing=gradient_checkpointing, lora_inputs=lora_inputs
    )
    overhead = (CUDA_OVERHEAD_GB if device == "cuda" else CPU_OVERHEAD_GB) * GB
    parts = [weights, lora, gradients, optimizer, activations, overhead]
    return MemoryPlan(
        model=name,
        method=method,
        batch_size=batch_size,
        max_length=max_length,
        precision=precision,
        gradient_checkpointing=gradient_checkpointing,
        device=device,
        weights_gb=round(weights / GB, 2),
        lora_gb=round(lora / GB, 2),
        gradients_gb=round(gradients / GB, 2),
        optimizer_gb=round(optimizer / GB, 2),
        activations_gb=round(activations / GB, 2),
        overhead_gb=round(overhead / GB, 2),
        total_gb=round(sum(parts) / GB, 2),
        available_gb=None,
    )


def _weight_bytes(method: str, params: float, unquantized: float, *, half: bool) -> float:
    if method == "qlora":
        return (params - unquantized) * NF4_BYTES + unquantized * 4
    if method == "qlora-8bit":
        return (params - unquantized) * INT8_BYTES + unquantized * 4
    if method == "lora" and half:
        return params * 2  # frozen base in the compute dtype (GPU, or a CPU with native bf16)
    return params * 4  # fp32 weights (trained full weights, or an fp32 run)


def machine_memory() -> tuple[str, float]:
    """(device, GB available for training): free memory of GPU 0, else available RAM."""
    try:
        import torch

        if torch.cuda.is_available():
            free, _total = torch.cuda.mem_get_info(0)
            return "cuda", free / GB
    except ImportError:
        pass
    import psutil

    return "cpu", psutil.virtual_memory().available / GB


TARGET = re.compile(r"^(cpu|cuda)(?::(\d+(?:\.\d+)?)\s*(?:gb|gib)?)?$", re.IGNORECASE)


def parse_target(text: str) -> tuple[str, float | None]:
    """``cuda:24GB`` → ("cuda", 24.0); ``cpu`` → ("cpu", None): a device to plan for, and its memory if given."""
    match = TARGET.match(text.strip())
    if not match:
        raise UserError(
            f"not a device to plan for: '{text}'", field="--device", fix="write cpu, cuda, cuda:24GB or cpu:64GB"
        )
    return match.group(1).lower(), float(match.group(2)) if match.group(2) else None


def target_memory(target: tuple[str, float | None] | None) -> tuple[str, float]:
    """(device, GB available): the named target, or this machine (a target without a size must be this one)."""
    here, available = machine_memory()
    if target is None:
        return here, available
    device, size = target
    if size is not None:
        return device, size
    if device != here:
        raise UserError(
            f"this machine has no {device} to measure", field="--device", fix=f"give its memory, e.g. {device}:24GB"
        )
    return here, available


def plan_for_machine(plan_args: dict[str, Any], target: tuple[str, float | None] | None = None) -> MemoryPlan:
    """``estimate`` for this machine's device (or a named target device), with its memory filled in."""
    device, available = target_memory(target)
    plan = estimate(**{"device": device, **plan_args})
    notes = list(plan.notes)
    if plan.total_gb > available and not plan.gradient_checkpointing:
        with_ckpt = estimate(**{"device": device, **plan_args, "gradient_checkpointing": True})
        notes.append(f"with gradient checkpointing: {with_ckpt.total_gb:.1f} GB")
    return MemoryPlan(**{**asdict(plan), "available_gb": round(available, 2), "notes": notes})


def plan(
    cfg: ExperimentConfig,
    *,
    arch: Any = None,
    batch_size: int | None = None,
    max_length: int | None = None,
    method: str | None = None,
    gradient_checkpointing: bool | None = None,
    precision: str | None = None,
    device: str | None = None,
) -> MemoryPlan:
    """Estimate the memory ``cfg``'s training run needs, next to what this machine (or ``device``) has.

    Keyword arguments override the config (``arch``: an ``Architecture`` for a model not in the registry).
    ``device`` plans for another machine: ``cuda:24GB``, ``cpu:64GB`` (or ``cuda``/``cpu`` for this one); the
    auto batch and precision then follow that device (4 rows and bf16 on a GPU, 1 row and fp32 on a CPU).
    """
    target = parse_target(device) if device else None
    for name, value in (("batch_size", batch_size), ("max_length", max_length)):
        if value is not None and value < 1:  # 0 would silently plan the config's value
            raise UserError(f"must be at least 1, got {value}", field=name, fix=f"pass {name}=1 or more")
    from sectune.models.load import ResolvedModel, resolve_model
    from sectune.registry.models import REGISTRY
    from sectune.train.model import lora_targets

    train_cfg = cfg.train
    ref = train_cfg.model or cfg.model
    spec = REGISTRY.get(ref)
    if spec is None and arch is None:
        spec = resolve_model(ref).spec  # a folder whose config names a registry model
        if spec is None:
            raise UserError(
                f"no architecture numbers for model '{ref}'",
                field="model",
                fix="plan a registry model (sectune models) or pass arch= from Python",
            )
    targets = lora_targets(train_cfg.lora, ResolvedModel(ref, spec, ref))
    checkpointing = train_cfg.gradient_checkpointing if gradient_checkpointing is None else gradient_checkpointing
    return plan_for_machine(
        {
            "spec": spec or ref,
            "arch": arch,
            "method": method or train_cfg.method,
            "batch_size": batch_size or _batch_for(train_cfg.batch_size, train_cfg.grad_accum, target),
            "max_length": max_length or train_cfg.max_length or cfg.prep.max_length,
            "lora_r": train_cfg.lora.r,
            "lora_targets": targets,
            "lora_dropout": train_cfg.lora.dropout,
            "gradient_checkpointing": checkpointing is True,
            "precision": precision or _precision_for(train_cfg.precision, target),
        },
        target,
    )


def _batch_for(batch_size: int | str, grad_accum: int | str, target: tuple[str, float | None] | None) -> int:
    from sectune.train.model import resolve_batch

    if target is None or batch_size != "auto":
        return resolve_batch(batch_size, grad_accum)[0]
    return 4 if target[0] == "cuda" else 1  # what resolve_batch picks on that device


def _precision_for(requested: str, target: tuple[str, float | None] | None) -> str:
    from sectune.train.model import resolve_precision

    if target is None or requested != "auto":
        return resolve_precision(requested)
    return "bf16" if target[0] == "cuda" else "fp32"  # a GPU of today; an unknown CPU gets fp32
