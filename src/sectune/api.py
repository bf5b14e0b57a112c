"""The Python API: one function per stage. The CLI and the UI only call these.

    from sectune.config import load_config
    from sectune.api import prepare, train
    cfg = load_config("configs/demo.yaml")
    dataset = prepare(cfg, "samples.jsonl", "runs/dataset")
    run = train(cfg, dataset, "runs/lora")

Each name is imported from its stage on first use, so ``import sectune.api`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_FUNCTIONS = {
    "topics": "sectune.generate.api",
    "generate": "sectune.generate.api",
    "prepare": "sectune.data.api",
    "inspect_dataset": "sectune.data.api",
    "train": "sectune.train.api",
    "plan": "sectune.train.api",
    "evaluate": "sectune.evaluate.api",
    "study": "sectune.evaluate.api",
}

__all__ = sorted(_FUNCTIONS)


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'sectune.api' has no attribute {name!r}")
