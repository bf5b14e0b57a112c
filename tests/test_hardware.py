"""Issue 21: one function decides every dtype by what the hardware does fast; doctor shows it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sectune.hardware import BF16_OVERRIDE, cpu_has_fast_bf16, fast_dtypes


@pytest.mark.parametrize(("forced", "precision", "weights"), [("0", "fp32", "float32"), ("1", "bf16", "bfloat16")])
def test_auto_dtypes_follow_the_cpu_bf16_support(monkeypatch, forced, precision, weights):
    monkeypatch.setenv(BF16_OVERRIDE, forced)
    chosen = fast_dtypes()
    assert (chosen.device, chosen.train_precision, chosen.generation, chosen.qlora_compute) == (
        "cpu", precision, weights, weights
    )  # fmt: skip
    assert BF16_OVERRIDE in chosen.why


def test_detection_reads_the_cpu_flags_without_the_override(monkeypatch):
    monkeypatch.delenv(BF16_OVERRIDE, raising=False)
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    assert cpu_has_fast_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)


@pytest.mark.parametrize(("forced", "dtype"), [("0", "float32"), ("1", "bfloat16")])
def test_every_auto_choice_uses_it(monkeypatch, forced, dtype):
    """train.precision auto, the local provider's weights and QLoRA's default 4-bit compute dtype."""
    import torch

    from sectune.models.load import quantization_config
    from sectune.train.model import resolve_precision

    monkeypatch.setenv(BF16_OVERRIDE, forced)
    assert resolve_precision("auto") == {"float32": "fp32", "bfloat16": "bf16"}[dtype]
    assert quantization_config("4bit").bnb_4bit_compute_dtype == getattr(torch, dtype)
    assert quantization_config("4bit", torch.float32).bnb_4bit_compute_dtype == torch.float32  # asked: kept


@pytest.mark.parametrize(("forced", "dtype"), [("0", "float32"), ("1", "bfloat16")])
def test_the_local_provider_loads_weights_in_the_fast_dtype(monkeypatch, tiny_model_dir, forced, dtype):
    import torch

    from sectune.llm.local import _load

    monkeypatch.setenv(BF16_OVERRIDE, forced)
    model, _ = _load(str(tiny_model_dir))
    assert next(model.parameters()).dtype == getattr(torch, dtype)


def test_doctor_json_names_the_flags_and_the_dtypes():
    env = {"SECTUNE_CPU_BF16": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [sys.executable, "-m", "sectune", "doctor", "--json", "--measure"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["fast_dtypes"]["train_precision"] == "fp32" and report["fast_dtypes"]["generation"] == "float32"
    assert set(report["matmul_gflops"]) == {"float32", "bfloat16"}
    assert all(value > 0 for value in report["matmul_gflops"].values())
    assert isinstance(report["cpu_simd"], list)
