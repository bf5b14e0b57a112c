"""The DeepSpeed accelerate configs, turned into the DeepSpeed config accelerate would hand DeepSpeed, are accepted
by DeepSpeed's own parser (`deepspeed.runtime.config.DeepSpeedConfig`) with the seed recipe's batch filled in.

DeepSpeed is not part of `make setup` (a source-only package whose build imports torch); `.ci/run` installs it
pinned with --no-build-isolation before running this file, elsewhere the tests skip saying so."""

from __future__ import annotations

from pathlib import Path

import pytest

from sectune.config import load_config

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "configs" / "seed-mistral-7b-instruct-v0.3-qlora.yaml"


def deepspeed_dict(path: Path) -> dict:
    """What accelerate builds from the yml's deepspeed_config (its DeepSpeedPlugin), "auto" values included."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    options = load_config_from_file(str(path)).deepspeed_config
    plugin = DeepSpeedPlugin(
        zero_stage=options["zero_stage"],
        offload_optimizer_device=options.get("offload_optimizer_device"),
        offload_param_device=options.get("offload_param_device"),
        zero3_init_flag=options.get("zero3_init_flag", False),
        zero3_save_16bit_model=options.get("zero3_save_16bit_model", False),
    )
    return dict(plugin.deepspeed_config)


def fill_autos(config: dict, *, micro_batch: int, grad_accum: int, max_grad_norm: float) -> dict:
    """The "auto" values the trainer fills from its arguments (one process: world size 1)."""
    values = {"train_micro_batch_size_per_gpu": micro_batch, "gradient_accumulation_steps": grad_accum,
              "train_batch_size": micro_batch * grad_accum, "gradient_clipping": max_grad_norm}  # fmt: skip
    return {key: values.get(key, value) if value == "auto" else value for key, value in config.items()}


@pytest.mark.parametrize("stage", [2, 3])
def test_deepspeed_parses_the_zero_config(stage):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (.ci/run installs it for this test)")
    from deepspeed.runtime.config import DeepSpeedConfig

    seed = load_config(SEED).train
    config = deepspeed_dict(ROOT / "configs" / "accelerate" / f"deepspeed-zero{stage}.yml")
    assert "auto" in config.values()  # the trainer's to fill: batch sizes and clipping come from sectune's config
    filled = fill_autos(
        config, micro_batch=seed.batch_size, grad_accum=seed.grad_accum, max_grad_norm=seed.max_grad_norm
    )
    parsed = DeepSpeedConfig(filled)
    assert parsed.zero_optimization_stage == stage
    assert parsed.train_batch_size == seed.batch_size * seed.grad_accum
    assert parsed.gradient_accumulation_steps == seed.grad_accum


def test_deepspeed_refuses_a_broken_batch():
    """The parser is a real check: an inconsistent batch is refused."""
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (.ci/run installs it for this test)")
    from deepspeed.runtime.config import DeepSpeedConfig

    config = fill_autos(deepspeed_dict(ROOT / "configs" / "accelerate" / "deepspeed-zero2.yml"), micro_batch=1,
                        grad_accum=8, max_grad_norm=1.0)  # fmt: skip
    with pytest.raises(AssertionError, match="train_batch_size"):
        DeepSpeedConfig({**config, "train_batch_size": 3})
