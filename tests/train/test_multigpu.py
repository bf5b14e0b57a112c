"""2-process LoRA training on 2 GPUs (``accelerate launch`` with configs/accelerate/ddp.yml) matches 1 GPU.

The same comparison as the CPU tests (test_multiprocess.py, test_fsdp_cpu.py), with their helpers: the same
global batch and seed give the 1-GPU per-step losses. fp32 throughout (``--mixed_precision no`` overrides the
config's bf16, whose rounding would swamp the comparison); opt-in with ``pytest -m gpu``.
"""

from __future__ import annotations

import sys

import pytest
from tests.train.test_fsdp_cpu import ACCELERATE_CONFIGS, launch_command, run, sectune_train
from tests.train.test_multiprocess import COMMON, _free_port, assert_two_processes_match_one


def _gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(_gpus() < 2, reason=f"needs 2 CUDA GPUs, this machine has {_gpus()}"),
]


def test_ddp_on_two_gpus_matches_one_gpu(tiny_model_dir, train_only_dataset, tmp_path):
    sets = [f"model={tiny_model_dir}", "seed=7", "train.method=lora", *COMMON]
    single, double = tmp_path / "one", tmp_path / "two"
    run([sys.executable, *sectune_train(train_only_dataset, single, [*sets, "train.batch_size=4"])],
        CUDA_VISIBLE_DEVICES="0")  # fmt: skip
    ddp = launch_command(ACCELERATE_CONFIGS / "ddp.yml", "--num_processes", "2", "--mixed_precision", "no",
                         "--main_process_port", str(_free_port()))  # fmt: skip
    run([*ddp, *sectune_train(train_only_dataset, double, [*sets, "train.batch_size=2"])], CUDA_VISIBLE_DEVICES="0,1")

    assert_two_processes_match_one(single, double)
