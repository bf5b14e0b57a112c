"""Fixtures of the prep-stage tests: per-family offline tokenizers, small inputs, a seed-style xlsx."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from prep_samples import SYSTEM, qa_rows


@pytest.fixture(scope="session")
def family_tokenizer():
    """family → an offline tokenizer with that family's special tokens and sectune's template (cached)."""
    from sectune.testing.tiny import tiny_family_tokenizer

    cache: dict[str, object] = {}

    def get(family: str):
        if family not in cache:
            cache[family] = tiny_family_tokenizer(family)
        return cache[family]

    return get


@pytest.fixture
def chat_jsonl(tmp_path: Path) -> Path:
    """24 canonical rows with a system prompt and a domain_type meta field."""
    path = tmp_path / "chat.jsonl"
    lines = []
    for question, answer, domain in qa_rows():
        row = {
            "messages": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ],
            "meta": {"domain_type": domain},
        }
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def seed_xlsx(tmp_path: Path) -> Path:
    """A workbook shaped like the seed's dataset.xlsx: columns Question and Answer (+ Domain Type)."""
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.title = "Sheet1"
    sheet.append(["Question", "Answer", "Domain Type"])
    for question, answer, domain in qa_rows():
        sheet.append([question, answer, domain])
    path = tmp_path / "dataset.xlsx"
    book.save(path)
    return path


@pytest.fixture
def cfg():
    """A config factory: ``cfg("prep.max_length=64", ...)``."""
    from sectune.config import load_config

    def make(*overrides: str):
        return load_config(None, list(overrides))

    return make


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
