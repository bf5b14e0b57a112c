"""The shipped train configs validate and plan; the accelerate configs parse with accelerate's own loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from sectune.config import load_config
from sectune.train.plan import plan

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
TRAIN_CONFIGS = sorted([*CONFIGS.glob("train-*.yaml"), *CONFIGS.glob("seed-*.yaml")])
ACCELERATE = sorted((CONFIGS / "accelerate").glob("*.yml"))


def test_there_are_configs_for_every_method_and_the_seed_models():
    methods = {load_config(path).train.method for path in TRAIN_CONFIGS}
    assert methods == {"full", "lora", "qlora", "qlora-8bit"}
    seeds = [load_config(path) for path in CONFIGS.glob("seed-*.yaml")]
    assert len(seeds) >= 4
    for cfg in seeds:  # the seed recipe
        assert (cfg.train.lora.r, cfg.train.lora.alpha, cfg.train.batch_size, cfg.train.grad_accum) == (16, 32, 1, 8)


@pytest.mark.parametrize("path", TRAIN_CONFIGS, ids=lambda p: p.name)
def test_train_config_validates_and_plans(path):
    cfg = load_config(path)
    estimate = plan(cfg)
    assert estimate.model == cfg.model and estimate.total_gb > estimate.weights_gb > 0


@pytest.mark.parametrize("path", ACCELERATE, ids=lambda p: p.name)
def test_accelerate_config_parses(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    assert config.num_processes >= 2 and config.distributed_type.value in {"MULTI_GPU", "FSDP", "DEEPSPEED"}


def test_accelerate_configs_cover_ddp_fsdp_and_both_zero_stages():
    assert {p.stem for p in ACCELERATE} >= {"ddp", "fsdp", "fsdp-qlora", "deepspeed-zero2", "deepspeed-zero3"}


def test_the_config_literals_match_transformers_enums():
    """train.lr_scheduler and train.optimizer are written out in sectune.config.train (config load never imports
    transformers); these lists are transformers' own, so an upgrade that adds or drops a name fails here."""
    from typing import get_args

    from transformers import SchedulerType
    from transformers.training_args import OptimizerNames

    from sectune.config.train import LrScheduler, Optimizer

    assert list(get_args(LrScheduler)) == [s.value for s in SchedulerType]
    assert list(get_args(Optimizer)) == [o.value for o in OptimizerNames]
