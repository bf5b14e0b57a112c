"""The Python API: one function per stage. The CLI and the UI only call these.

    from sectune.config import load_config
    from sectune.api import prepare, train
    cfg = load_config("configs/train-smollm2-lora.yaml")
    dataset = prepare(cfg, "samples.jsonl", "runs/dataset")
    run = train(cfg, dataset, "runs/lora")

Each name is imported from its stage on first use, so ``import sectune.api`` stays cheap; type checkers and
editors see the real functions and their signatures through the ``TYPE_CHECKING`` imports below.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sectune.data.api import inspect_dataset, prepare
    from sectune.evaluate.api import evaluate
    from sectune.generate.api import generate, topics
    from sectune.serve.chat import chat
    from sectune.serve.export import export
    from sectune.serve.server import serve
    from sectune.study.api import study
    from sectune.train.api import train
    from sectune.train.plan import plan

_FUNCTIONS = {
    "topics": "sectune.generate.api",
    "generate": "sectune.generate.api",
    "prepare": "sectune.data.api",
    "inspect_dataset": "sectune.data.api",
    "train": "sectune.train.api",
    "plan": "sectune.train.plan",
    "evaluate": "sectune.evaluate.api",
    "study": "sectune.study.api",
    "chat": "sectune.serve.chat",
    "export": "sectune.serve.export",
    "serve": "sectune.serve.server",
}

__all__ = [
    "chat",
    "evaluate",
    "export",
    "generate",
    "inspect_dataset",
    "plan",
    "prepare",
    "serve",
    "study",
    "topics",
    "train",
]


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        return getattr(import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'sectune.api' has no attribute {name!r}")
