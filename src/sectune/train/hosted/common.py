"""What the backends share: the upload files, token estimates, and the checks every mapping makes.

Every check raises a one-line UserError naming the key and the fix, before anything is uploaded.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.train.hosted.backend import UploadFile

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

CHARS_PER_TOKEN = 4  # a rough estimate for English text; the provider counts with its own tokenizer
UPLOAD_SPLITS = ("train", "validation")  # the test split stays home: it is for sectune eval


def require_sdk(module: str, extra: str) -> None:
    """Refuse (exit 2, before the run folder exists) when the service's SDK is not installed."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise UserError(
            f"train.backend={extra} needs the '{module}' package",
            field="train.backend",
            fix=f"pip install 'sectune[{extra}]'",
        )


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """About how many tokens a conversation is (content plus a few tokens of chat markup per message)."""
    return sum(len(m["content"]) // CHARS_PER_TOKEN + 4 for m in messages)


def write_chat_files(splits: Mapping[str, list[dict[str, Any]]], folder: Path) -> list[UploadFile]:
    """One ``{"messages": [...]}`` JSONL per non-empty split: the chat format all three services read."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for split in UPLOAD_SPLITS:
        rows = splits.get(split) or []
        if not rows:
            continue
        path = folder / f"{split}.jsonl"
        lines = [json.dumps({"messages": row["messages"]}, ensure_ascii=False) for row in rows]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        tokens = sum(estimate_tokens(row["messages"]) for row in rows)
        files.append(UploadFile(split=split, path=path, rows=len(rows), tokens=tokens))
    return files


def model_key(cfg: ExperimentConfig) -> str:
    return cfg.train.model or cfg.model


def provider_model(cfg: ExperimentConfig, service: str, table: Mapping[str, str]) -> str:
    """The service's name of the base model: train.hosted.base_model, else sectune's table for the key."""
    if cfg.train.hosted.base_model:
        return cfg.train.hosted.base_model
    key = model_key(cfg)
    if key in table:
        return table[key]
    offered = ", ".join(sorted(table)) or "none of sectune's registry models"
    raise UserError(
        f"{service} offers no model for '{key}' in sectune's table (it offers: {offered})",
        field="model",
        fix=f"pick one of those models, or name {service}'s own base model with --set train.hosted.base_model=NAME",
    )


def whole_epochs(cfg: ExperimentConfig, service: str) -> int:
    epochs = cfg.train.epochs
    if epochs != int(epochs):
        raise UserError(
            f"{service} trains whole epochs only, got {epochs}",
            field="train.epochs",
            fix=f"set train.epochs to a whole number (e.g. {max(1, round(epochs))})",
        )
    return int(epochs)


def refuse_max_steps(cfg: ExperimentConfig, service: str) -> None:
    if cfg.train.max_steps > 0:
        raise UserError(
            f"{service} takes a number of epochs, not of steps",
            field="train.max_steps",
            fix="set train.max_steps=-1 and choose train.epochs",
        )


def refuse_lora_variants(cfg: ExperimentConfig, service: str) -> None:
    """DoRA and rsLoRA are local-only: no hosted service here trains them."""
    if cfg.train.lora.use_dora:
        raise UserError(
            f"{service} does not train DoRA adapters", field="train.lora.use_dora", fix="set train.lora.use_dora=false"
        )
    if cfg.train.lora.use_rslora:
        raise UserError(
            f"{service} does not train rank-stabilised LoRA",
            field="train.lora.use_rslora",
            fix="set train.lora.use_rslora=false",
        )


def lora_targets(cfg: ExperimentConfig) -> list[str] | str:
    """train.lora.target_modules resolved: the registry's list, "all-linear", or the user's list."""
    targets = cfg.train.lora.target_modules
    if targets != "registry":
        return targets
    from sectune.registry.models import REGISTRY

    spec = REGISTRY.get(model_key(cfg))
    if spec is None:
        raise UserError(
            "target_modules 'registry' needs a registry model",
            field="train.lora.target_modules",
            fix="list the modules (e.g. [q_proj, v_proj]) or use all-linear",
        )
    return list(spec.lora_targets)


def result_name(cfg: ExperimentConfig, limit: int = 40) -> str:
    """The name the service gives the result: train.hosted.suffix or the experiment's name, in [a-z0-9-]."""
    name = cfg.train.hosted.suffix or cfg.name
    return (re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-") or "sectune")[:limit]


def grad_steps_batch(cfg: ExperimentConfig) -> int | None:
    """Rows per optimizer step when both numbers are set, else None (the service chooses)."""
    batch, accum = cfg.train.batch_size, cfg.train.grad_accum
    if batch == "auto" or accum == "auto":
        return None
    return int(batch) * int(accum)
