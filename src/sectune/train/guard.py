"""The 4-bit guard: a QLoRA training instance is never used for evaluation or generation.

bitsandbytes 0.50 on CPU repacks ``Linear4bit`` weights into an inference-only layout the first time a
layer runs in eval mode without grad; after that its matmul has no backward and LoRA gradients are
silently wrong (ENVIRONMENT.md: relative error 1.0 after one eval forward). sectune therefore

1. never schedules an in-training evaluation for 4-bit methods (validation loss is computed afterwards
   on a separately loaded model, see ``run.validation_loss``), and
2. installs ``forbid_inference`` on the training instance, so any code path that still tries an
   eval-mode or no-grad forward fails loudly instead of corrupting the run.
"""

from __future__ import annotations

from typing import Any

GUARD_MESSAGE = (
    "refusing an evaluation/generation forward on the 4-bit training instance: bitsandbytes would repack its "
    "weights for inference and silently break LoRA gradients (fix: evaluate a separately loaded model, e.g. "
    "sectune.models.load.load_for_inference(run_dir))"
)


class QuantizedInferenceError(RuntimeError):
    """An eval/no-grad forward was attempted on a 4-bit model that is being trained."""


def is_4bit(model: Any) -> bool:
    """True when any layer of ``model`` is a bitsandbytes 4-bit linear layer."""
    try:
        from bitsandbytes.nn import Linear4bit
    except ImportError:
        return False
    return any(isinstance(module, Linear4bit) for module in model.modules())


def _refuse_inference(module: Any, args: Any, kwargs: Any) -> None:
    import torch

    if not module.training or not torch.is_grad_enabled():
        raise QuantizedInferenceError(GUARD_MESSAGE)


def forbid_inference(model: Any) -> Any:
    """Make every 4-bit layer of ``model`` refuse eval-mode or no-grad forwards. Returns a handle list."""
    from bitsandbytes.nn import Linear4bit

    return [
        module.register_forward_pre_hook(_refuse_inference, with_kwargs=True)
        for module in model.modules()
        if isinstance(module, Linear4bit)
    ]
