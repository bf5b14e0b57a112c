"""`sectune plan`: memory estimates from architecture numbers, against the seed's QLoRA table."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from sectune.cli.main import app
from sectune.config import load_config
from sectune.registry.models import ATTENTION, Architecture, get_model
from sectune.train.plan import estimate, llama_config, lora_params, plan

# Llama-2-13B's published architecture (not in the registry)
LLAMA2_13B = Architecture(
    params_b=13.0,
    hidden_size=5120,
    num_layers=40,
    intermediate_size=13824,
    vocab_size=32000,
    num_heads=40,
    num_kv_heads=40,
)
SEED = {"batch_size": 1, "max_length": 1024, "lora_r": 16, "lora_targets": ATTENTION, "precision": "bf16"}


@pytest.mark.parametrize(
    ("name", "arch", "seed_gb"),
    [("gemma-2b", None, 4), ("mistral-7b", None, 9), ("llama-2-13b", LLAMA2_13B, 16)],
)
def test_qlora_estimates_are_within_reason_of_the_seed_table(name, arch, seed_gb):
    """The seed's rule of thumb (2B → 4 GB, 7B → 9 GB, 13B → 16 GB) within a factor of two, with checkpointing."""
    spec = get_model(name) if arch is None else name
    result = estimate(spec, "qlora", arch=arch, gradient_checkpointing=True, device="cuda", **SEED)
    assert seed_gb / 2 <= result.total_gb <= seed_gb * 2, result
    parts = result.weights_gb + result.lora_gb + result.activations_gb + result.overhead_gb
    assert result.total_gb == pytest.approx(parts, abs=0.05)


def test_seven_and_thirteen_billion_grow_with_size():
    small = estimate(get_model("mistral-7b"), "qlora", device="cuda", **SEED)
    large = estimate("llama-2-13b", "qlora", arch=LLAMA2_13B, device="cuda", **SEED)
    assert small.total_gb < large.total_gb and small.weights_gb < large.weights_gb


def test_methods_rank_by_memory_and_checkpointing_saves_activations():
    spec = get_model("mistral-7b")
    totals = {m: estimate(spec, m, device="cuda", **SEED).total_gb for m in ("full", "lora", "qlora-8bit", "qlora")}
    assert totals["full"] > totals["lora"] > totals["qlora-8bit"] > totals["qlora"]
    full = estimate(spec, "full", device="cuda", **SEED)
    assert full.optimizer_gb == pytest.approx(7.24e9 * 8 / 2**30, rel=0.01) and full.gradients_gb > 0
    off = estimate(spec, "qlora", device="cuda", **SEED)
    on = estimate(spec, "qlora", device="cuda", gradient_checkpointing=True, **{**SEED})
    assert on.activations_gb < off.activations_gb / 4


@pytest.mark.parametrize("targets", [ATTENTION, "all-linear"])
def test_lora_parameter_count_matches_peft_on_smollm2_shape(targets):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    arch = get_model("smollm2-135m").arch
    config = llama_config(arch)
    assert config.tie_word_embeddings  # SmolLM2 ties its LM head to the embedding
    with torch.device("meta"):
        model = get_peft_model(LlamaForCausalLM(config), LoraConfig(r=16, target_modules=targets))
    trainable, total = model.get_nb_trainable_parameters()
    assert lora_params(arch, targets, 16) == trainable
    assert abs(total - trainable - arch.params_b * 1e9) / (arch.params_b * 1e9) < 0.01  # registry count agrees


def test_plan_reads_the_config_and_the_machine():
    result = plan(load_config(None, ["train.method=qlora", "train.batch_size=2"]))
    assert result.model == "smollm2-135m" and result.method == "qlora" and result.batch_size == 2
    assert result.available_gb is not None and result.available_gb > 0 and result.fits in (True, False)


def test_plan_command_prints_json_and_a_table():
    runner = CliRunner()
    done = runner.invoke(app, ["plan", "--set", "model=mistral-7b", "--method", "qlora", "--json"])
    assert done.exit_code == 0, done.output
    data = json.loads(done.output)
    assert data["model"] == "mistral-7b" and data["total_gb"] > data["weights_gb"] > 3
    table = runner.invoke(app, ["plan", "--max-length", "256"])
    assert table.exit_code == 0 and "total" in table.output and "256" in table.output


@pytest.mark.parametrize(("option", "value"), [("batch_size", 0), ("max_length", -5)])
def test_plan_from_python_refuses_sizes_below_one(option, value):
    from sectune.errors import UserError

    with pytest.raises(UserError, match=rf"{option}: must be at least 1, got {value}"):
        plan(load_config(), **{option: value})


def test_plan_for_a_named_target_device_uses_its_memory_batch_and_precision():
    cfg = load_config(None, ["model=mistral-7b", "train.method=qlora"])
    gpu = plan(cfg, device="cuda:24GB")
    assert (gpu.device, gpu.available_gb, gpu.batch_size, gpu.precision) == ("cuda", 24.0, 4, "bf16")
    assert gpu.fits is False and any("gradient checkpointing" in note for note in gpu.notes)
    laptop = plan(cfg, device="cpu:64GB")
    assert (laptop.device, laptop.available_gb, laptop.batch_size, laptop.precision) == ("cpu", 64.0, 1, "fp32")
    assert laptop.total_gb != gpu.total_gb  # a CPU plan counts fp32 weights and its own overhead
    big = plan(cfg, device="CUDA:80gb")
    assert big.available_gb == 80.0 and big.fits is True


@pytest.mark.parametrize("device", ["tpu", "cuda:", "cuda:lots", "gpu:24GB"])
def test_plan_refuses_a_device_it_cannot_read(device):
    from sectune.errors import UserError

    with pytest.raises(UserError, match=r"--device: not a device to plan for"):
        plan(load_config(), device=device)
