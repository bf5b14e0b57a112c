"""Which dtypes this machine runs fast: one decision, used by every stage and shown by `sectune doctor`.

Measured on 2-core cloud CPUs (docs/performance.md, `sectune doctor --measure`): where the CPU has native bf16
instructions (AVX512-BF16 or AMX) bf16 matmuls beat fp32, bf16 autocast is the fastest training variant and
bf16 weights generate about 2× faster than fp32; on an AVX2-only CPU torch emulates bf16 and the same matmul is
tens of times slower than fp32, so everything stays fp32 there. CUDA: bf16 where the GPU has it, else fp16.

Evaluation and serving default to fp32 on CPU whatever this says: there exact, repeatable scores matter more
than speed (``eval.dtype`` / ``serve.dtype`` choose otherwise).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

BF16_OVERRIDE = "SECTUNE_CPU_BF16"  # 1/0: treat the CPU as having native bf16 or not (tests of both paths)
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@dataclass(frozen=True)
class FastDtypes:
    """What runs fast here: training precision, dtype of weights for generation, QLoRA's 4-bit compute dtype."""

    device: str  # "cuda" or "cpu"
    train_precision: str  # bf16, fp16 or fp32 (train.precision: auto)
    generation: str  # torch dtype name of weights that only generate (the local provider): bfloat16 / float32 …
    qlora_compute: str  # torch dtype name bitsandbytes computes 4-bit layers in
    why: str  # the hardware fact the choice rests on

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX): bf16 then pays off.

    ``SECTUNE_CPU_BF16=1`` or ``0`` overrides the detection, so one machine can run both code paths.
    """
    forced = os.environ.get(BF16_OVERRIDE, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def fast_dtypes() -> FastDtypes:
    """The one place that decides dtypes by what the hardware does fast (imports torch only for CUDA)."""
    cuda = _cuda_bf16()
    if cuda is not None:
        half = "bf16" if cuda else "fp16"
        name = "bfloat16" if cuda else "float16"
        why = "CUDA GPU with bf16" if cuda else "CUDA GPU without bf16 (fp16 instead)"
        return FastDtypes("cuda", half, name, name, why)
    if cpu_has_fast_bf16():
        forced = os.environ.get(BF16_OVERRIDE, "").strip() == "1"
        why = f"{BF16_OVERRIDE}=1" if forced else "CPU with native bf16 (" + _native_flags() + ")"
        return FastDtypes("cpu", "bf16", "bfloat16", "bfloat16", why)
    forced = os.environ.get(BF16_OVERRIDE, "").strip() == "0"
    why = f"{BF16_OVERRIDE}=0" if forced else "CPU without native bf16 (bf16 would be emulated, far slower)"
    return FastDtypes("cpu", "fp32", "float32", "float32", why)


def torch_dtype(name: str) -> Any:
    """The torch dtype for a name from :class:`FastDtypes` (``float32``, ``bfloat16``, ``float16``)."""
    import torch

    return getattr(torch, name)


def _native_flags() -> str:
    flags = cpu_flags()
    return ", ".join(flag for flag in NATIVE_BF16_FLAGS if flag in flags) or "flags"


def _cuda_bf16() -> bool | None:
    """None without CUDA; else whether the GPU supports bf16. Never imports torch when it is not installed."""
    from importlib.util import find_spec

    if find_spec("torch") is None:
        return None
    import torch

    if not torch.cuda.is_available():
        return None
    return bool(torch.cuda.is_bf16_supported())


def measure_matmul(size: int = 512, seconds: float = 0.5) -> dict[str, float]:
    """GFLOP/s of a size×size matmul on the CPU in fp32 and bf16 (the evidence behind the choice above)."""
    import time

    import torch

    results = {}
    for name in ("float32", "bfloat16"):
        a = torch.randn(size, size).to(torch_dtype(name))
        b = torch.randn(size, size).to(torch_dtype(name))
        torch.matmul(a, b)  # warm up
        count, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            torch.matmul(a, b)
            count += 1
        elapsed = time.perf_counter() - started
        results[name] = round(2 * size**3 * count / elapsed / 1e9, 2)
    return results
