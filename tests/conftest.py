"""Shared fixtures: everything offline, tiny models built here, never the network."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.pop("OPENAI_BASE_URL", None)
os.environ.pop("OPENAI_API_KEY", None)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random 2-layer Llama + BPE tokenizer with SmolLM2's ChatML tokens (pad == eos)."""
    from sectune.testing.tiny import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared beside the checkout; tests that need it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip("../shared is not present")
    return SHARED


@pytest.fixture
def sectune_cli(monkeypatch, capsys) -> Callable[..., tuple[int, str, str]]:
    """``sectune_cli(*args)``: (exit code, stdout, stderr) of ``sectune ARGS`` run in this process."""
    from sectune.cli.main import main

    def run(*args: str | Path) -> tuple[int, str, str]:
        capsys.readouterr()  # what the test printed before is not the command's
        monkeypatch.setattr(sys, "argv", ["sectune", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:  # sys.exit(None) is success; a message instead of a code is failure
            code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 1
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run
