"""Which process of a multi-process launch (``accelerate launch``, ``torchrun``, ``srun``) this one is.

Only the main process writes the run folder (``OUT.partial/``, config, summary, publish); the others train and
save their own RNG state into the trainer's checkpoints. One process alone (no launcher) is rank 0 of 1.
"""

from __future__ import annotations

import os


def world_size() -> int:
    """Number of training processes, from the launcher's environment (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    """Global rank of this process (0 without a launcher)."""
    return int(os.environ.get("RANK", "0"))


def is_main_process() -> bool:
    return rank() == 0


def wait_for_everyone() -> None:
    """A barrier across the launch; a no-op for one process (no process group is started for it)."""
    if world_size() <= 1:
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        return
    from accelerate import PartialState

    # starts the process group the Trainer then reuses (gloo on CPU, nccl on GPUs)
    PartialState().wait_for_everyone()
