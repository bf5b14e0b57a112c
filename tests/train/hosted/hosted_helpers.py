"""Helpers of the hosted-training tests (a module, since test folders are not packages)."""

from __future__ import annotations

from pathlib import Path

BACKENDS = ("openai", "together", "predibase")
KEY_ENVS = {"openai": "OPENAI_API_KEY", "together": "TOGETHER_API_KEY", "predibase": "PREDIBASE_API_TOKEN"}
# the provider's name of the base model each fake offers (the tiny model is no registry key: named explicitly)
BASE_MODELS = {
    "openai": "gpt-4o-mini-2024-07-18",
    "together": "Qwen/Qwen2.5-0.5B-Instruct",
    "predibase": "qwen2-5-1-5b-instruct",
}


def train_args(dataset: Path, out: Path, sets: list[str], *flags: str) -> list[str]:
    args: list[str | Path] = ["train", dataset, "--out", out, *flags]
    for value in sets:
        args += ["--set", value]
    return [str(a) for a in args]


def error_line(err: str) -> str:
    """The CLI's one-line error (the last line on stderr; progress lines come before it)."""
    lines = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    return lines[0]


def assert_no_key(folder: Path, key: str) -> int:
    """No file under ``folder`` holds the key (nor its first half); returns how many files were read."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        assert key.encode() not in data and key[: len(key) // 2].encode() not in data, path
    return len(files)
