"""The four methods on the real embedded SmolLM2-135M (slow, opt-in: pytest -m slow tests/train)."""

from __future__ import annotations

import json
import math

import pytest

from sectune.config import load_config
from sectune.train.api import train

pytestmark = pytest.mark.slow


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("method", ["full", "lora", "qlora", "qlora-8bit"])
def test_method_on_smollm2(method, short_dataset, tmp_path):
    import torch
    from safetensors.torch import load_file

    from sectune.models.load import load_model

    lr = "1e-4" if method == "full" else "1e-3"
    cfg = load_config(
        None,
        [
            "model=smollm2-135m",
            f"train.method={method}",
            "train.max_steps=8",
            "train.batch_size=2",
            "train.grad_accum=1",
            f"train.learning_rate={lr}",
            "train.logging_steps=1",
            "train.lora.dropout=0.0",
            "train.stop_check.prompts=2",
            "train.stop_check.max_new_tokens=32",
        ],
    )
    run = train(cfg, short_dataset, tmp_path / method)
    summary = json.loads((run / "summary.json").read_text())
    losses = [e["loss"] for e in summary["log_history"] if "loss" in e]
    assert all(math.isfinite(x) for x in losses)
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3, losses  # falling (averaged: batches differ)
    assert summary["data_checks"]["ok"] and summary["stop_check"]["status"] == "ok"
    base = load_model("smollm2-135m").state_dict()
    if method == "full":
        trained = load_file(str(run / "model" / "model.safetensors"))
        moved = [k for k in trained if k in base and not torch.equal(trained[k].float(), base[k].float())]
        assert len(moved) > len(trained) // 2
        return
    adapter = load_file(str(run / "adapter" / "adapter_model.safetensors"))
    assert adapter and all("lora_" in k for k in adapter)  # only LoRA weights saved: the base stays the base
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(float(v.abs().sum()) > 0 for v in lora_b)  # B started at zero
    assert summary["trainable_params"] == sum(v.numel() for v in adapter.values())
