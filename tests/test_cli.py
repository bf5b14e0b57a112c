"""The CLI as a user meets it: help, the registry table, doctor, and bad input → one line, exit 2."""

import json
import subprocess
import sys

from sectune.registry.models import REGISTRY

SEED_MODELS = [
    "mistral-7b",
    "mistral-7b-instruct-v0.3",
    "llama-3-8b-instruct",
    "llama-3.1-8b-instruct",
    "gemma-2b",
    "gemma-2-2b-it",
    "phi-3-mini-4k-instruct",
    "zephyr-7b-beta",
]


def run_cli(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "sectune", *args], capture_output=True, text=True, timeout=120, **kwargs
    )


STAGE_COMMANDS = {
    "topics",
    "generate",
    "prep",
    "inspect",
    "plan",
    "train",
    "eval",
    "study",
    "demo",
    "models",
    "doctor",
    "check",
    "chat",
    "export",
    "ui",
    "bench",
}


def help_commands(text: str) -> dict[str, str]:
    """The ``Commands:`` section of click's help: command name → its one-line help."""
    lines = text.splitlines()
    assert "Commands:" in lines, text
    commands = {}
    for line in lines[lines.index("Commands:") + 1 :]:
        if not line.strip():
            break
        name, _, summary = line.strip().partition(" ")
        commands[name] = summary.strip()
    return commands


def test_help_lists_the_stage_commands():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    commands = help_commands(result.stdout)
    missing = STAGE_COMMANDS - set(commands)
    assert not missing, f"missing from --help: {sorted(missing)}\n{result.stdout}"
    assert all(commands[name] for name in STAGE_COMMANDS)  # each with its one-line help


def test_models_lists_the_registry_including_the_seed_models():
    result = run_cli("models")
    assert result.returncode == 0
    assert len(REGISTRY) >= 10
    for key in [*SEED_MODELS, "smollm2-135m"]:
        assert key in REGISTRY
    # rich may wrap long keys; the hub ids' first segment is always visible
    for spec in REGISTRY.values():
        assert spec.family in result.stdout
    assert "…" not in result.stdout  # narrow terminals wrap the cells instead of cutting them


def test_doctor_json_reports_machine_and_methods():
    result = run_cli("doctor", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["cpu_count"] >= 1
    assert set(report["methods"]) == {"full", "lora", "qlora", "qlora-8bit"}
    assert report["extras"]["train"] is True


def test_bad_config_is_one_line_exit_2(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text("train:\n  methd: lora\n")
    result = run_cli("demo", "--config", str(config), "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "train.methd" in lines[0] and "train.method" in lines[0]
    assert not (tmp_path / "out").exists()


def test_bad_override_value_is_exit_2(tmp_path):
    result = run_cli("demo", "--set", "train.lora.r=many", "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert "train.lora.r" in result.stderr


def test_the_cli_method_choices_are_the_configs():
    from typing import get_args

    from sectune.cli import train as cli_train
    from sectune.config import train as config_train

    assert get_args(cli_train.Method) == get_args(config_train.Method)


def test_help_imports_no_config_models_nor_torch():
    heavy = "('pydantic', 'torch')"
    probe = f"import sys; from sectune.cli.main import app; print(sorted(m for m in {heavy} if m in sys.modules))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stderr
