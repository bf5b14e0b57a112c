"""Fixtures of the UI tests: a workspace with a base config on the tiny model, a fake provider, a topic sheet,
a prepared dataset and a 2-step train run (built once per session), and AppTest on one page of the app."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "generate"))  # generate_helpers: the fake's answers
sys.path.insert(0, str(Path(__file__).resolve().parent))  # ui_helpers

from ui_helpers import FAKE_KEY, base_config


@pytest.fixture
def workspace(tmp_path, monkeypatch, tiny_model_dir):
    """An empty UI workspace (SECTUNE_UI_WORKSPACE) with a base config (SECTUNE_UI_CONFIG) on the tiny model."""
    from sectune.ui.workspace import CONFIG_ENV, WORKSPACE_ENV, Workspace

    root = tmp_path / "ws"
    config = base_config(tmp_path / "ui.yaml", tiny_model_dir)
    monkeypatch.setenv(WORKSPACE_ENV, str(root))
    monkeypatch.setenv(CONFIG_ENV, str(config))
    return Workspace(root, config)


@pytest.fixture
def fake_provider():
    """The fake OpenAI-compatible server answering valid, distinct samples; it accepts FAKE_KEY only."""
    from generate_helpers import sample_responder

    from sectune.testing.fake_openai import FakeOpenAI

    with FakeOpenAI(responder=sample_responder, latency=0.01, require_key=FAKE_KEY) as fake:
        yield fake


@pytest.fixture(scope="session")
def samples_file(tmp_path_factory) -> Path:
    """12 distinct accepted samples in generate's canonical shape (what prep reads)."""
    import json

    from generate_helpers import distinct_words

    folder = tmp_path_factory.mktemp("samples")
    lines = []
    for index in range(12):
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": f"How do I handle {distinct_words(f'q{index}', 8)}?"},
            {"role": "assistant", "content": f"Do this: {distinct_words(f'a{index}', 20)}."},
        ]
        lines.append(json.dumps({"messages": messages, "meta": {"slot": f"0:{index}", "topic": "Phishing"}}))
    path = folder / "samples.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def prepared_dataset(tmp_path_factory, tiny_model_dir, samples_file) -> Path:
    """A dataset folder prepared (in process) for the tiny model."""
    from sectune.api import prepare
    from sectune.config import load_config

    folder = tmp_path_factory.mktemp("prepared")
    cfg = load_config(base_config(folder / "ui.yaml", tiny_model_dir))
    return prepare(cfg, samples_file, folder / "dataset")


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_model_dir, prepared_dataset) -> Path:
    """A finished 2-step LoRA run on the tiny model (trained in process, once)."""
    from sectune.api import train
    from sectune.config import load_config

    folder = tmp_path_factory.mktemp("trained")
    cfg = load_config(base_config(folder / "ui.yaml", tiny_model_dir), ["train.max_steps=2"])
    return train(cfg, prepared_dataset, folder / "run")
