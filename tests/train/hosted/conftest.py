"""Fixtures of the hosted-training tests: fake keys, the three fake services, a real tiny PEFT adapter to serve,
a config builder pointing a backend at its fake, and the CLI run in process.

Every fake listens on 127.0.0.1 only; no test reaches the network. The dataset is tests/train/conftest.py's
``tiny_dataset`` (train 24, validation 6, test 4 rows).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hosted_fakes import FakeOpenAIFineTuning, FakePredibase, FakeService, FakeTogether, Script
from hosted_helpers import BASE_MODELS, KEY_ENVS

KEY_ALPHABET = "0123456789qxzj"  # no English word shares 4 characters with such a key (redaction stays out of texts)


@pytest.fixture
def keys(monkeypatch, tmp_path) -> dict[str, str]:
    """A fresh fake key per service in the environment; no base URL from the environment; cwd without a .env."""
    monkeypatch.chdir(tmp_path)
    for env in ("OPENAI_BASE_URL", "TOGETHER_BASE_URL", "PREDIBASE_GATEWAY"):
        monkeypatch.delenv(env, raising=False)
    values = {}
    for backend, env in KEY_ENVS.items():
        prefix = "pb_" if backend == "predibase" else "tk"  # Predibase's SDK warns about tokens without pb_
        values[backend] = prefix + "".join(random.choice(KEY_ALPHABET) for _ in range(28))
        monkeypatch.setenv(env, values[backend])
    return values


@pytest.fixture(scope="session")
def tiny_adapter(tiny_model_dir, tmp_path_factory) -> Path:
    """A real PEFT LoRA adapter of the tiny model (q/v, r4), with random B weights so that it changes the logits."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, weight in peft_model.named_parameters():
            if "lora_B" in name:
                weight.copy_(torch.randn(weight.shape, generator=generator) * 0.5)
    folder = tmp_path_factory.mktemp("served-adapter")
    peft_model.save_pretrained(str(folder), safe_serialization=True)
    assert (folder / "adapter_model.safetensors").is_file()
    return folder


@pytest.fixture
def make_fake(keys, tiny_adapter) -> Iterator[Callable[..., FakeService]]:
    """``make_fake(backend, script=None)``: a started fake of that service (stopped after the test)."""
    started: list[FakeService] = []

    def make(backend: str, script: Script | None = None) -> FakeService:
        fake: FakeService
        if backend == "openai":
            fake = FakeOpenAIFineTuning(keys["openai"], script)
        elif backend == "together":
            fake = FakeTogether(keys["together"], tiny_adapter, script)
        else:
            fake = FakePredibase(keys["predibase"], tiny_adapter, script)
        started.append(fake.start())
        return fake

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def hosted_sets(tiny_model_dir) -> Callable[..., list[str]]:
    """``hosted_sets(backend, fake, *more)``: the --set overrides of a small hosted run against ``fake``."""

    def build(backend: str, fake: FakeService | None, *more: str) -> list[str]:
        sets = [
            f"model={tiny_model_dir}",
            "name=hosted-test",
            "seed=7",
            f"train.backend={backend}",
            f"train.hosted.base_model={BASE_MODELS[backend]}",
            "train.hosted.poll_s=0.02",
            "train.hosted.timeout_s=60",
            "train.lora.r=4",
            "train.lora.alpha=8",
            "train.lora.target_modules=[q_proj,v_proj]",
            "train.epochs=1",
            "train.batch_size=2",
            "train.grad_accum=2",
        ]
        if fake is not None:
            sets.append(f"train.hosted.base_url={fake.base_url}")  # type: ignore[attr-defined]
        return [*sets, *more]

    return build


@pytest.fixture
def cli(sectune_cli) -> Callable[..., tuple[int, str, str]]:
    """``cli(*args)``: (exit code, stdout, stderr) of ``sectune ARGS`` run in this process."""
    return sectune_cli
