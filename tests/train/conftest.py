"""Fixtures of the train tests: a tiny chat dataset folder and a config builder for the tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

QA = [
    ("What is a firewall?", "A firewall filters network traffic according to rules."),
    ("What is phishing?", "Phishing emails trick users into revealing passwords."),
    ("How do I reset my password?", "Open the account settings and choose reset."),
    ("What is a VPN?", "A VPN encrypts traffic between two endpoints."),
    ("What is ransomware?", "Ransomware encrypts files and demands payment."),
    ("Why keep backups?", "Backups let you restore data without paying."),
]


def chat_rows(count: int, offset: int = 0) -> list[dict]:
    rows = []
    for index in range(count):
        question, answer = QA[(index + offset) % len(QA)]
        messages = [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        rows.append({"messages": messages, "meta": {"index": index}})
    return rows


def write_dataset(folder: Path, *, train: int = 24, validation: int = 6, test: int = 4) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("validation", validation), ("test", test)):
        if count:
            lines = "".join(json.dumps(row) + "\n" for row in chat_rows(count, offset=count))
            (folder / f"{name}.jsonl").write_text(lines, encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def train_only_dataset(tmp_path_factory) -> Path:
    """Only a train split (24 rows): no evaluation cost."""
    return write_dataset(tmp_path_factory.mktemp("train-only"), validation=0, test=0)


@pytest.fixture(scope="session")
def short_dataset(tmp_path_factory) -> Path:
    """train (16 rows) and test (4): the real-model tests (the seed's GPT-4o rows are ~600 tokens, too slow)."""
    return write_dataset(tmp_path_factory.mktemp("short"), train=16, validation=0, test=4)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """train (24 rows), validation (6) and test (4) splits of short cybersecurity Q&A."""
    return write_dataset(tmp_path_factory.mktemp("dataset"))


@pytest.fixture
def tiny_config(tiny_model_dir):
    """An ExperimentConfig on the tiny model: few steps, fp32, no stop check; ``*sets`` are dotted overrides."""
    from sectune.config import load_config

    def build(*sets: str):
        base = [
            f"model={tiny_model_dir}",
            "seed=7",
            "train.max_steps=6",
            "train.batch_size=4",
            "train.grad_accum=1",
            "train.learning_rate=5e-3",
            "train.logging_steps=1",
            "train.save_steps=3",
            "train.precision=fp32",
            "train.stop_check.enabled=false",  # on only where a test checks it (it loads and generates)
            "train.stop_check.max_new_tokens=4",
            "train.stop_check.prompts=2",
        ]
        return load_config(None, [*base, *sets])

    return build
