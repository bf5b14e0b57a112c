"""What ``sectune eval`` can evaluate: a registry key, an HF folder, a train run (a hosted one whose weights
stay with the provider is asked at its endpoint), a PEFT adapter folder, or an OpenAI-compatible endpoint; and
the guard that an adapter really changes the model's logits.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError

if TYPE_CHECKING:
    from sectune.train.hosted.records import HostedEndpoint

PROBE = [{"role": "user", "content": "What is a firewall and why do networks use one?"}]


def is_endpoint(target: str | Path) -> bool:
    return bool(re.match(r"^https?://", str(target)))


def hosted_target(target: str | Path) -> HostedEndpoint | None:
    """The OpenAI-compatible endpoint of a hosted train run whose weights stay with the provider (its
    endpoint.json: OpenAI, or a full fine-tune at Together), else None. Such a run is asked, never loaded."""
    from sectune.train.hosted.records import hosted_endpoint

    return None if is_endpoint(target) else hosted_endpoint(str(target))


def check_target(target: str | Path) -> None:
    """Refuse (one-line UserError) a target that is no endpoint, PEFT adapter folder, model folder, train run or
    registry key, without loading anything."""
    from sectune.registry.refs import check_model_ref

    if is_endpoint(target) or (Path(str(target)).expanduser() / "adapter_config.json").is_file():
        return
    if hosted_target(target) is not None:
        return
    check_model_ref(str(target), file=None, field="target", runs_ok=True)


def target_label(target: str | Path, used: set[str]) -> str:
    """A short unique name for a target: the registry key, the folder name, or the endpoint host."""
    text = str(target).rstrip("/")
    base = re.sub(r"^https?://", "", text).split("/")[0] if is_endpoint(text) else Path(text).name or text
    base = re.sub(r"[^A-Za-z0-9._-]+", "-", base) or "target"
    label, n = base, 2
    while label in used:
        label, n = f"{base}-{n}", n + 1
    used.add(label)
    return label


def resolve_dtype(name: str) -> Any:
    """torch dtype for eval.dtype: auto = bf16 on a GPU that supports it, else fp32 (exact on CPU)."""
    import torch

    if name == "float32":
        return torch.float32
    if name == "bfloat16":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else torch.float32


def load_target(target: str | Path, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for a local target; a bare PEFT adapter folder loads its base model first."""
    from sectune.models.load import load_for_inference

    path = Path(str(target)).expanduser()
    if path.is_dir() and (path / "adapter_config.json").is_file() and not (path / "summary.json").is_file():
        return _load_adapter_folder(path, dtype=dtype)
    if path.is_dir() and not (path / "config.json").is_file() and not (path / "summary.json").is_file():
        raise UserError(
            "not a model, adapter or train run folder",
            file=path,
            fix="pass a registry key, an HF model folder, a PEFT adapter folder or a train run folder",
        )
    return load_for_inference(target, dtype=dtype)


def load_target_tokenizer(target: str | Path) -> Any:
    """The tokenizer a local target would load (a train run's own chat template), without its weights."""
    from sectune.models.load import RUN_MODEL, is_train_run, load_tokenizer, run_base_model, run_template

    path = Path(str(target)).expanduser()
    if is_train_run(path):
        if (path / RUN_MODEL).is_dir():
            return load_tokenizer(path / RUN_MODEL, template=run_template(path))
        return load_tokenizer(run_base_model(path), template=run_template(path))
    if (path / "adapter_config.json").is_file():
        return load_tokenizer(adapter_base(path))
    return load_tokenizer(target)


def adapter_base(path: str | Path) -> str:
    """The base model a PEFT adapter folder names (``base_model_name_or_path``)."""
    config_file = Path(path) / "adapter_config.json"
    base = json.loads(config_file.read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise UserError(
            "adapter has no base model",
            file=config_file,
            field="base_model_name_or_path",
            fix="set it to the base model's registry key or folder",
        )
    return str(base)


def _load_adapter_folder(path: Path, *, dtype: Any) -> tuple[Any, Any]:
    from sectune.models.load import load_with_adapter

    return load_with_adapter(adapter_base(path), path, dtype=dtype)


def adapter_logit_change(model: Any, tokenizer: Any) -> float | None:
    """Largest |logit difference| the adapter makes on a probe prompt; None when the model has no adapter."""
    import torch

    if not hasattr(model, "disable_adapter") or not hasattr(model, "peft_config"):
        return None
    text = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    batch = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(model.device)
    with torch.inference_mode():
        with_adapter = model(**batch).logits.float()
        with model.disable_adapter():
            without = model(**batch).logits.float()
    return float((with_adapter - without).abs().max())


def check_adapter_changes_logits(model: Any, tokenizer: Any, target: str | Path, *, tolerance: float = 1e-6) -> float:
    """Raise when a loaded adapter leaves the logits unchanged (untrained, zero weights or not applied)."""
    change = adapter_logit_change(model, tokenizer)
    if change is not None and change <= tolerance:
        raise UserError(
            f"the adapter does not change the model's logits (max change {change:.2e}): it is untrained "
            "(all-zero LoRA B weights) or was not applied",
            file=target,
            fix="train it (sectune train) or point eval at the run folder that holds the trained adapter",
        )
    return change or 0.0
