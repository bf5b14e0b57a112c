"""The LM head and loss on devices without Triton (CPU, MPS): trained positions only, no recompute.

trl's SFTTrainer scores next tokens through its fused LM head (``trl.trainer.utils.add_fused_lm_head``), which
never builds the full logits: fine on a GPU, where its tiles run in Triton. Elsewhere the same kernel runs as torch
ops, and a profile of a SmolLM2 LoRA step on a CPU put 34 % of the step there, because it

- projects every position, prompt and padding included (it keeps tile shapes fixed for compilers);
- folds each vocabulary tile in several fp32 passes, and again in backward after recomputing the projection;
- accumulates the hidden-state gradient in fp32 (``addmm`` on fp32 copies of each tile), at half the bf16 rate.

``use_kept_gradient_head`` replaces that path on such devices. It projects only the positions whose label is
trained, in token chunks, and keeps d log p(target) / d logits (one-hot minus the softmax) in the compute dtype
for backward instead of recomputing it: backward is one scale and one matmul. What it keeps is one logits-sized
tensor in the compute dtype (2 bytes a vocabulary entry under bf16), which is what transformers' own loss keeps
(bf16 logits), without its fp32 copies. Above ``MAX_KEPT_BYTES`` a micro-batch goes to trl's kernel instead.
The outputs are trl's (``FusedCausalLMOutput``), so trl's loss and metrics code runs unchanged.
"""

from __future__ import annotations

import functools
import logging
import types
from typing import Any

log = logging.getLogger(__name__)

MAX_KEPT_BYTES = 2 * 1024**3  # above this, the kept logits gradient costs more than trl's recompute saves
CHUNK_BYTES = 128 * 1024**2  # one token chunk's fp32 logits: the transient peak of the forward


def has_fast_fused_head(device_type: str) -> bool:
    """Whether trl's fused LM head runs as Triton kernels there (CUDA/XPU with Triton): then it is kept."""
    from transformers.utils import is_triton_available

    return device_type in ("cuda", "xpu") and is_triton_available()


def plain_head_reason(config: Any) -> str | None:
    """Why this model needs trl's general head (logit scaling, soft-capping, MoE router loss), or None."""
    text = config.get_text_config()
    for name in ("final_logit_softcapping", "logit_scale", "output_multiplier", "lm_head_multiplier", "logits_scaling"):
        if getattr(text, name, None) not in (None, 1.0):
            return name
    if getattr(text, "output_router_logits", False):
        return "output_router_logits"
    return None


def chunk_tokens(vocab: int) -> int:
    return max(1, CHUNK_BYTES // (4 * vocab))


class KeptGradientLogProbs:
    """log p(target), entropy and top-1 of ``hidden @ weight.T`` for trained positions; see the module doc.

    A ``torch.autograd.Function`` built lazily so that importing this module does not import torch.
    """

    _function: Any = None

    @classmethod
    def apply(cls, hidden: Any, weight: Any, targets: Any) -> tuple[Any, Any, Any]:
        if cls._function is None:
            cls._function = _build_function()
        return cls._function.apply(hidden, weight, targets)


def _build_function() -> Any:
    import torch

    class _Function(torch.autograd.Function):
        @staticmethod
        def forward(ctx, hidden, weight, targets):  # hidden [M, H], weight [V, H], targets [M]
            tokens, vocab = hidden.shape[0], weight.shape[0]
            grad_logits = torch.empty((tokens, vocab), dtype=hidden.dtype, device=hidden.device)
            log_probs = torch.empty(tokens, dtype=torch.float32, device=hidden.device)
            entropy = torch.empty_like(log_probs)
            is_top1 = torch.empty(tokens, dtype=torch.bool, device=hidden.device)
            step = chunk_tokens(vocab)
            for start in range(0, tokens, step):
                end = min(start + step, tokens)
                target = targets[start:end].unsqueeze(-1)
                logits = (hidden[start:end] @ weight.t()).float()
                # argmax is the first maximum: a tie with an earlier token is not a top-1 hit (trl's rule)
                is_top1[start:end] = logits.argmax(dim=-1) == targets[start:end]
                log_p = logits.sub_(torch.logsumexp(logits, dim=-1, keepdim=True))  # in place: fewer fp32 chunks
                log_probs[start:end] = log_p.gather(-1, target).squeeze(-1)
                probs = log_p.exp()
                entropy[start:end] = -(probs * log_p).sum(-1)
                kept = grad_logits[start:end]
                kept.copy_(probs.neg_())  # d log p(target) / d z = one-hot(target) − p
                kept.scatter_add_(-1, target, torch.ones(target.shape, dtype=kept.dtype, device=kept.device))
            ctx.save_for_backward(hidden, weight, grad_logits)
            ctx.mark_non_differentiable(entropy, is_top1)
            return log_probs, entropy, is_top1

        @staticmethod
        def backward(ctx, grad_log_probs, _grad_entropy, _grad_top1):
            hidden, weight, grad_logits = ctx.saved_tensors
            if grad_log_probs is None:
                return None, None, None
            scaled = grad_logits * grad_log_probs.unsqueeze(-1).to(grad_logits.dtype)
            grad_hidden = scaled @ weight if ctx.needs_input_grad[0] else None
            grad_weight = scaled.t() @ hidden if ctx.needs_input_grad[1] else None
            return grad_hidden, grad_weight, None

    return _Function


def kept_gradient_outputs(
    hidden_states: Any, lm_head: Any, labels: Any, num_items_in_batch: Any = None
) -> dict[str, Any]:
    """trl's fused-head fields (already shifted ``labels``): per-token tensors of ``labels``' shape, zero where -100."""
    import torch

    mask = labels != -100
    weight = lm_head.weight
    device_type = hidden_states.device.type
    autocast = torch.is_autocast_enabled(device_type)
    dtype = torch.get_autocast_dtype(device_type) if autocast else hidden_states.dtype
    trained = hidden_states[mask].to(dtype)
    with torch.autocast(device_type, enabled=False):
        log_probs, entropy, is_top1 = KeptGradientLogProbs.apply(trained, weight.to(dtype), labels[mask])
    full = {
        name: value.new_zeros(mask.shape).masked_scatter(mask, value)
        for name, value in (("log_probs", log_probs), ("entropy", entropy), ("is_top1", is_top1))
    }
    count = mask.sum().clamp(min=1) if num_items_in_batch is None else num_items_in_batch
    return {**full, "loss": -full["log_probs"].sum() / count, "label_mask": mask}


def use_kept_gradient_head(model: Any) -> bool:
    """Route ``fused_lm_head=True`` calls of ``model`` (trl already patched it) through the kept-gradient head.

    Only on devices where trl's kernel is not Triton, and for plain LM heads; returns whether it did.
    """
    from trl.trainer.utils import FusedCausalLMOutput

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    device_type = next(base.parameters()).device.type
    reason = plain_head_reason(base.config)
    head = base.get_output_embeddings()
    if has_fast_fused_head(device_type) or reason or head is None or getattr(head, "bias", None) is not None:
        if reason:
            log.info("LM head: trl's fused head (the model sets %s)", reason)
        return False
    trl_forward = base.forward
    vocab = head.weight.shape[0]

    @functools.wraps(type(base).forward)
    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, num_items_in_batch=None, **kwargs):
        shifted = labels[:, 1:] if shift_labels is None and labels is not None else shift_labels
        if not fused_lm_head or shifted is None or _kept_bytes(shifted, vocab) > MAX_KEPT_BYTES:
            return trl_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                num_items_in_batch=num_items_in_batch,
                **kwargs,
            )
        kwargs["use_cache"] = False
        hidden = self.base_model(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden = hidden[:, :-1]
        lm_head = self.get_output_embeddings()
        device = lm_head.weight.device  # with device_map, the backbone can end on another device than the head
        fields = kept_gradient_outputs(hidden.to(device), lm_head, shifted.to(device), num_items_in_batch)
        return FusedCausalLMOutput(**fields, log_sum_sq_probs=None, mean_logits=None, aux_loss=None)

    base.forward = types.MethodType(forward, base)
    return True


def _kept_bytes(labels: Any, vocab: int) -> int:
    return int((labels != -100).sum()) * vocab * 4  # at most: fp32 training keeps 4 bytes a value, bf16 2
