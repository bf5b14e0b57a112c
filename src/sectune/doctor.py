"""`sectune doctor`: what this machine has and what that means for each training method."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata, util

from sectune.hardware import BF16_OVERRIDE, cpu_flags, cpu_has_fast_bf16, fast_dtypes, measure_matmul

__all__ = ["BF16_OVERRIDE", "MachineReport", "collect", "cpu_has_fast_bf16", "method_advice", "print_report"]

EXTRAS = {
    "train": ["torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes"],
    "eval": ["rouge_score", "sacrebleu", "matplotlib", "sentence_transformers"],
    "track": ["wandb", "mlflow", "tensorboard"],
    "anthropic": ["anthropic"],
    "litellm": ["litellm"],
    "ui": ["streamlit"],
    "serve": ["fastapi", "uvicorn"],
    "gguf": ["sentencepiece"],
}


@dataclass
class MachineReport:
    python: str
    platform: str
    cpu_count: int
    memory_gb: float
    cuda_devices: list[str] = field(default_factory=list)
    gpu_memory_gb: list[float] = field(default_factory=list)
    bf16: bool = False
    cpu_simd: list[str] = field(default_factory=list)  # the CPU's vector flags that decide the fast dtypes
    fast_dtypes: dict[str, str] = field(default_factory=dict)  # sectune.hardware.fast_dtypes(): what auto picks
    matmul_gflops: dict[str, float] = field(default_factory=dict)  # --measure: fp32 vs bf16 matmul on the CPU
    bitsandbytes: str = "not installed"
    extras: dict[str, bool] = field(default_factory=dict)
    embedded_model: str = "not built"
    methods: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "neon", "asimd")


def collect(*, measure: bool = False) -> MachineReport:
    """Inspect the machine; never fails on a missing optional package. ``measure`` times fp32/bf16 matmuls."""
    import psutil

    report = MachineReport(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 1,
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
    )
    report.extras = {name: all(util.find_spec(m) is not None for m in mods) for name, mods in EXTRAS.items()}
    report.cpu_simd = sorted(flag for flag in cpu_flags() if flag in SIMD_FLAGS)
    if util.find_spec("torch"):
        _probe_torch(report)
        report.fast_dtypes = fast_dtypes().as_dict()
        if measure:
            report.matmul_gflops = measure_matmul()
    report.bitsandbytes = _bitsandbytes_backend(report)
    from sectune.registry.embedded import embedded_model_dir, is_built

    report.embedded_model = str(embedded_model_dir()) if is_built() else "not built (built on first use, ~30 s)"
    report.methods = method_advice(report)
    return report


def _probe_torch(report: MachineReport) -> None:
    import torch

    if torch.cuda.is_available():
        for index in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(index)
            report.cuda_devices.append(props.name)
            report.gpu_memory_gb.append(round(props.total_memory / 2**30, 1))
        report.bf16 = torch.cuda.is_bf16_supported()
    else:
        report.bf16 = cpu_has_fast_bf16()


def _bitsandbytes_backend(report: MachineReport) -> str:
    if util.find_spec("bitsandbytes") is None:
        return "not installed"
    version = metadata.version("bitsandbytes")
    return f"{version} ({'cuda' if report.cuda_devices else 'cpu'} backend)"


def method_advice(report: MachineReport) -> dict[str, str]:
    """One line per training method: can it run here, and how well."""
    if not report.extras.get("train"):
        missing = "install the train extra: pip install 'sectune[train]'"
        return {m: missing for m in ("full", "lora", "qlora", "qlora-8bit")}
    if report.cuda_devices:
        vram = max(report.gpu_memory_gb)
        return {
            "full": f"GPU ({vram:g} GB): full fine-tuning of models up to ~{vram / 16:.1f}B params (AdamW, bf16)",
            "lora": f"GPU: LoRA up to ~{vram / 2.5:.0f}B params in bf16",
            "qlora": f"GPU: 4-bit NF4 QLoRA up to ~{vram / 0.9:.0f}B params",
            "qlora-8bit": "GPU: 8-bit LoRA, about twice the memory of 4-bit",
        }
    speed = "bf16 autocast available" if report.bf16 else "fp32 only (no native bf16)"
    return {
        "full": f"CPU, {speed}: fine for ≤ 0.5B models (SmolLM2-135M: ~134 tok/s on 2 cores)",
        "lora": f"CPU, {speed}: the default for small models (SmolLM2-135M: ~190 tok/s on 2 cores)",
        "qlora": "CPU: works through bitsandbytes' CPU backend; sectune never evaluates the 4-bit training instance",
        "qlora-8bit": "CPU: works through bitsandbytes' CPU backend, slower than LoRA on small models",
    }


def print_report(*, as_json: bool = False, measure: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    report = collect(measure=measure)
    if as_json:
        import json

        print(json.dumps(report.as_dict(), indent=2))
        return
    table = Table(title="sectune doctor", show_header=False)
    table.add_column("what")
    table.add_column("found")
    table.add_row("python", f"{report.python} on {report.platform}")
    table.add_row("CPU / memory", f"{report.cpu_count} cores, {report.memory_gb} GB")
    gpus = ", ".join(f"{n} ({m} GB)" for n, m in zip(report.cuda_devices, report.gpu_memory_gb, strict=True))
    table.add_row("GPU", gpus or "none")
    table.add_row("bf16", "yes" if report.bf16 else "no")
    table.add_row("CPU vector flags", ", ".join(report.cpu_simd) or "unknown")
    if report.fast_dtypes:
        d = report.fast_dtypes
        table.add_row(
            "fast dtypes (auto)",
            f"train {d['train_precision']} · generation {d['generation']} · QLoRA compute {d['qlora_compute']}"
            f" ({d['why']})",
        )
    if report.matmul_gflops:
        gflops = report.matmul_gflops
        ratio = gflops["bfloat16"] / gflops["float32"] if gflops.get("float32") else 0.0
        table.add_row(
            "matmul 512² (measured)",
            f"fp32 {gflops['float32']:g} GFLOP/s · bf16 {gflops['bfloat16']:g} GFLOP/s (bf16/fp32 {ratio:.2f}×)",
        )
    table.add_row("bitsandbytes", report.bitsandbytes)
    table.add_row("extras", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in report.extras.items()))
    table.add_row("embedded model", report.embedded_model)
    for method, advice in report.methods.items():
        table.add_row(f"method {method}", advice)
    Console().print(table)
