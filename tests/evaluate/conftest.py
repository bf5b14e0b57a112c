"""Fixtures of the evaluate tests: a tiny held-out split and language models whose answers are forced."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

QA = [
    ("What is a firewall?", "A firewall filters network traffic according to rules."),
    ("What is phishing?", "Phishing emails trick users into revealing passwords."),
    ("How do I reset my password?", "Open the account settings and choose reset."),
    ("What does a VPN do?", "A VPN encrypts traffic between two endpoints."),
]


def write_rows(path: Path, pairs=QA) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}], "meta": {}}
        for q, a in pairs
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """A dataset folder with a 4-row test split."""
    folder = tmp_path / "dataset"
    folder.mkdir()
    write_rows(folder / "test.jsonl")
    return folder


class ForcedLM:
    """A causal LM stand-in: the same logits at every position, ``bonus`` added to chosen token ids.

    With no bonus the next-token distribution is uniform (perplexity = vocabulary size exactly).
    """

    def __init__(self, vocab_size: int, bonus: dict[int, float] | None = None) -> None:
        import torch

        self.device = torch.device("cpu")
        self.row = torch.zeros(vocab_size)
        for token, value in (bonus or {}).items():
            self.row[token] = value

    def __call__(self, input_ids, attention_mask=None, **_):
        logits = self.row.expand(input_ids.shape[0], input_ids.shape[1], -1).clone()
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from sectune.models.load import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def forced_lm():
    """The ForcedLM class (a fixture, since test folders are not packages)."""
    return ForcedLM
