"""One place that knows how to load a model: registry key, HF folder, or a sectune train run.

Used by train, evaluate and the local LLM provider. Safetensors only; ``trust_remote_code`` stays
off unless the caller asks. 4-bit models loaded here for *training* must never be used for eval or
generation (bitsandbytes repacks weights after an eval forward and LoRA gradients silently break on
CPU): ``load_for_inference`` always loads a fresh instance.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sectune.errors import UserError, closest_sibling
from sectune.registry.models import REGISTRY, ModelSpec
from sectune.runs import SUMMARY_FILE, is_finished

# Known third-party noise on every CPU run, with nothing for the user to do about it: bitsandbytes tries to
# download a CPU kernel from the hub (sectune stays offline; its fallback is used), and peft/trl call a
# transformers method deprecated in 5.x.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)

Quantization = Literal["4bit", "8bit"] | None
RUN_SUMMARY = SUMMARY_FILE
RUN_ADAPTER = "adapter"
RUN_MODEL = "model"
RUN_TEMPLATE = "chat_template.jinja"


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's weights live and what the registry knows about it (if anything)."""

    path: str  # a local folder (or a hub id found in the local HF cache)
    spec: ModelSpec | None
    ref: str  # what the user wrote


def resolve_model(ref: str | Path) -> ResolvedModel:
    """Turn a registry key or a folder path into a loadable location."""
    text = str(ref)
    if text in REGISTRY:
        spec = REGISTRY[text]
        if spec.embedded:
            from sectune.registry.embedded import ensure_embedded_model

            return ResolvedModel(str(ensure_embedded_model()), spec, text)
        return ResolvedModel(hub_location(spec.hub_id), spec, text)
    path = Path(text).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise UserError(
                "not a model folder (no config.json)",
                file=path,
                fix="pass a registry key (sectune models), an HF model folder or a train run",
            )
        return ResolvedModel(str(path), spec_for_folder(path), text)
    raise missing_model_error(text)


def missing_model_error(text: str) -> UserError:
    """Neither a registry key nor a folder: say which, suggesting the closest sibling folder or registry key."""
    import difflib

    path = Path(text).expanduser()
    if path.exists():  # a file
        return UserError(
            "is a file, not a model folder",
            file=text,
            field="model",
            fix="pass the folder (a train run, or an HF model folder with config.json) or a registry key",
        )
    hub_key = next((key for key, spec in REGISTRY.items() if spec.hub_id.lower() == text.lower()), None)
    if hub_key:
        return UserError(
            "a hub id, not a registry key or folder", file=text, field="model", fix=f"use its registry key '{hub_key}'"
        )
    looks_like_path = any(sep in text for sep in ("/", "\\")) or text.startswith((".", "~"))
    sibling = closest_sibling(path)
    key = difflib.get_close_matches(text, list(REGISTRY), n=1, cutoff=0.5)
    candidates = [c for c in (sibling, key[0] if key else None) if c]
    best = max(candidates, key=lambda c: difflib.SequenceMatcher(None, text, c).ratio(), default=None)
    if looks_like_path or (best is not None and best == sibling):
        parent = path.parent
        where = "" if parent.is_dir() else f" (nor does {parent.as_posix()}/)"
        fix = (
            f"did you mean '{best}'?"
            if best
            else "pass an existing train run or model folder, or a registry key (sectune models)"
        )
        return UserError(f"no such folder{where}, and not a registry key", file=text, field="model", fix=fix)
    from sectune.errors import unknown_name_error

    return unknown_name_error("model", text, REGISTRY)


def hub_location(hub_id: str) -> str:
    """The local snapshot of a hub model when it is cached, else the hub id (transformers downloads it).

    Offline (HF_HUB_OFFLINE=1) a missing model fails at once with the command that fetches it, instead of
    transformers retrying the network for a minute.
    """
    import os

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(hub_id, local_files_only=True)
    except (LocalEntryNotFoundError, OSError, ValueError):
        if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
            raise UserError(
                "model is not in the local Hugging Face cache and HF_HUB_OFFLINE is set",
                field=hub_id,
                fix=f"download it once with `hf download {hub_id}` or pass a local model folder",
            ) from None
        return hub_id


def spec_for_folder(path: Path) -> ModelSpec | None:
    """The registry entry whose hub id a folder's config names, when it names one."""
    try:
        name = json.loads((path / "config.json").read_text()).get("_name_or_path", "")
    except (OSError, json.JSONDecodeError):
        return None
    return next((s for s in REGISTRY.values() if s.hub_id == name), None)


def is_train_run(path: str | Path) -> bool:
    """A finished train run (``sectune.runs.is_finished``) with its weights: adapter/ or model/."""
    return is_finished(path, needs_one_of=(RUN_ADAPTER, RUN_MODEL))


def chat_template_for(resolved: ResolvedModel) -> str | None:
    """sectune's training template for a registry model (with generation markers), else None."""
    if resolved.spec is None:
        return None
    return resolved.spec.template_path.read_text(encoding="utf-8")


def load_tokenizer(ref: str | Path, *, trust_remote_code: bool = False, template: str | None = None):
    """The tokenizer of a model, with sectune's chat template for registry families."""
    from transformers import AutoTokenizer

    resolved = resolve_model(ref)
    tokenizer = AutoTokenizer.from_pretrained(resolved.path, trust_remote_code=trust_remote_code)
    chosen = template or chat_template_for(resolved)
    if chosen:
        tokenizer.chat_template = chosen
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def quantization_config(quantization: Quantization, compute_dtype: Any = None, quant_storage: Any = None):
    """bitsandbytes settings: 4-bit NF4 with double quantization, or 8-bit."""
    if quantization is None:
        return None
    import torch
    from transformers import BitsAndBytesConfig

    from sectune.hardware import fast_dtypes, torch_dtype

    if quantization == "4bit":
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            # the caller's dtype, else what this hardware computes fast (bf16 is emulated on AVX2-only CPUs)
            bnb_4bit_compute_dtype=compute_dtype or torch_dtype(fast_dtypes().qlora_compute),
            # FSDP shards float tensors only: FSDP-QLoRA stores the packed 4-bit weights in the compute dtype
            bnb_4bit_quant_storage=quant_storage or torch.uint8,
        )
    if quantization == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    raise UserError(f"unknown quantization '{quantization}'", field="quantization", fix="use 4bit or 8bit")


def load_model(
    ref: str | Path,
    *,
    dtype: Any = None,
    quantization: Quantization = None,
    device_map: Any = None,
    trust_remote_code: bool = False,
    quant_storage: Any = None,
):
    """Load a causal LM from a registry key or folder (safetensors only)."""
    from transformers import AutoModelForCausalLM

    resolved = resolve_model(ref)
    kwargs: dict[str, Any] = {"use_safetensors": True, "trust_remote_code": trust_remote_code}
    if dtype is not None:
        kwargs["dtype"] = dtype
    if quantization:
        kwargs["quantization_config"] = quantization_config(quantization, dtype, quant_storage)
    if device_map is not None:
        kwargs["device_map"] = device_map
    try:
        return AutoModelForCausalLM.from_pretrained(resolved.path, **kwargs)
    except OSError as exc:
        raise UserError(
            f"cannot load model: {exc}".splitlines()[0],
            file=resolved.path,
            fix="download it first (huggingface-cli download) or pass a local folder",
        ) from None


def load_for_inference(target: str | Path, *, dtype: Any = None, trust_remote_code: bool = False):
    """(model, tokenizer) for evaluation or generation: a registry key, a folder or a train run.

    A train run loads its base model plus adapter (or its full model) and the chat template
    stored with the run, so inference uses exactly the template training used.
    """
    if is_train_run(target):
        return _load_run(Path(target), dtype=dtype, trust_remote_code=trust_remote_code)
    model = load_model(target, dtype=dtype, trust_remote_code=trust_remote_code)
    model.eval()
    return model, load_tokenizer(target, trust_remote_code=trust_remote_code)


def run_template(run: str | Path) -> str | None:
    """The chat template stored with a train run (the one it trained with), or None."""
    template_file = Path(run) / RUN_TEMPLATE
    return template_file.read_text(encoding="utf-8") if template_file.is_file() else None


def run_base_model(run: str | Path) -> str:
    """The base model a train run's adapter goes on, from its summary."""
    base = json.loads((Path(run) / RUN_SUMMARY).read_text(encoding="utf-8")).get("base_model")
    if not base:
        raise UserError(
            "train run has no base_model",
            file=Path(run) / RUN_SUMMARY,
            field="base_model",
            fix="re-run sectune train",
        )
    return str(base)


def _load_run(run: Path, *, dtype: Any, trust_remote_code: bool):
    template = run_template(run)
    if (run / RUN_MODEL).is_dir():
        model = load_model(run / RUN_MODEL, dtype=dtype, trust_remote_code=trust_remote_code)
        tokenizer = load_tokenizer(run / RUN_MODEL, template=template)
        model.eval()
        return model, tokenizer
    return load_with_adapter(
        run_base_model(run), run / RUN_ADAPTER, dtype=dtype, trust_remote_code=trust_remote_code, template=template
    )


def load_with_adapter(
    base: str | Path,
    adapter: str | Path,
    *,
    dtype: Any = None,
    trust_remote_code: bool = False,
    template: str | None = None,
):
    """(model, tokenizer) for inference: the base model with a PEFT adapter on top, in eval mode."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_model(base, dtype=dtype, trust_remote_code=trust_remote_code), str(adapter))
    model.eval()
    return model, load_tokenizer(base, trust_remote_code=trust_remote_code, template=template)
