"""`sectune doctor`: what this machine has and what that means for each training method."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from importlib import metadata, util

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
    bitsandbytes: str = "not installed"
    extras: dict[str, bool] = field(default_factory=dict)
    embedded_model: str = "not built"
    methods: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def collect() -> MachineReport:
    """Inspect the machine; never fails on a missing optional package."""
    import psutil

    report = MachineReport(
        python=platform.python_version(),
        platform=platform.platform(),
        cpu_count=os.cpu_count() or 1,
        memory_gb=round(psutil.virtual_memory().total / 2**30, 1),
    )
    report.extras = {name: all(util.find_spec(m) is not None for m in mods) for name, mods in EXTRAS.items()}
    if util.find_spec("torch"):
        _probe_torch(report)
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


BF16_OVERRIDE = "SECTUNE_CPU_BF16"  # 1/0: treat the CPU as having native bf16 or not (tests of both paths)


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX): bf16 autocast then pays off.

    ``SECTUNE_CPU_BF16=1`` or ``0`` overrides the detection, so one machine can run both code paths.
    """
    forced = os.environ.get(BF16_OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            flags = handle.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


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


def print_report(*, as_json: bool = False) -> None:
    from rich.console import Console
    from rich.table import Table

    report = collect()
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
    table.add_row("bitsandbytes", report.bitsandbytes)
    table.add_row("extras", ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in report.extras.items()))
    table.add_row("embedded model", report.embedded_model)
    for method, advice in report.methods.items():
        table.add_row(f"method {method}", advice)
    Console().print(table)
