"""Guards around a run: bad input fails before training (one line, exit 2, no output), the stop check reports."""

from __future__ import annotations

import json
import shutil

import pytest
from typer.testing import CliRunner

from sectune.cli.main import app
from sectune.errors import UserError
from sectune.models.generation import Generation
from sectune.train.api import partial_dir, train


def test_template_without_generation_markers_stops_before_training(tiny_config, tiny_model_dir, tiny_dataset, tmp_path):
    model = tmp_path / "no-markers"
    shutil.copytree(tiny_model_dir, model)
    settings = json.loads((model / "tokenizer_config.json").read_text())
    stock = "{% for m in messages %}<|im_start|>{{ m['role'] }}\\n{{ m['content'] }}<|im_end|>\\n{% endfor %}"
    (model / "chat_template.jinja").write_text(stock.replace("\\n", "\n"))
    settings.pop("chat_template", None)
    (model / "tokenizer_config.json").write_text(json.dumps(settings))
    out = tmp_path / "run"
    with pytest.raises(UserError, match="generation") as err:
        train(tiny_config(f"model={model}"), tiny_dataset, out)
    assert "fix:" in str(err.value) and "\n" not in str(err.value)
    assert not out.exists() and not partial_dir(out).exists()


def test_cli_missing_dataset_is_one_line_exit_2(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "sectune", "train", str(tmp_path / "nope"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "train.jsonl" in done.stderr and "fix:" in done.stderr
    assert not out.exists() and not partial_dir(out).exists()


def test_existing_output_and_interrupted_run_are_refused(tiny_config, train_only_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    with pytest.raises(UserError, match="already exists"):
        train(tiny_config(), train_only_dataset, out)
    out.rmdir()
    partial_dir(out).mkdir()
    with pytest.raises(UserError, match="--resume"):
        train(tiny_config(), train_only_dataset, out)


def test_padding_free_with_a_truncation_length_is_refused(tiny_config, tiny_dataset, tmp_path):
    with pytest.raises(UserError, match=r"train\.max_length"):
        train(tiny_config("train.max_length=512"), tiny_dataset, tmp_path / "run")
    assert not partial_dir(tmp_path / "run").exists()


def test_stop_rate_is_reported_and_warns_when_low(tiny_config, tiny_dataset, tmp_path, monkeypatch):
    import sectune.models.generation as generation

    answers = iter(["stop", "length"])

    def fake_generate(model, tokenizer, conversations, **kwargs):
        assert all(c[-1]["role"] == "user" for c in conversations)  # prompts end before the answer
        return [Generation("x", next(answers), 5, 1) for _ in conversations]

    monkeypatch.setattr(generation, "generate_chat", fake_generate)
    cfg = tiny_config("train.stop_check.enabled=true", "train.stop_check.prompts=2", "train.stop_check.warn_below=0.6")
    summary = json.loads((train(cfg, tiny_dataset, tmp_path / "run") / "summary.json").read_text())
    assert summary["stop_check"]["stop_rate"] == 0.5 and summary["stop_check"]["stopped"] == 1
    assert "warning" in summary["stop_check"]


def test_cli_train_prints_a_summary_line(tiny_model_dir, train_only_dataset, tmp_path):
    out = tmp_path / "run"
    sets = [f"model={tiny_model_dir}", "train.max_steps=2", "train.precision=fp32", "train.stop_check.enabled=false"]
    args = ["train", str(train_only_dataset), "--out", str(out)]
    for item in sets:
        args += ["--set", item]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "lora" in done.output and "tok/s" in done.output and (out / "adapter").is_dir()
