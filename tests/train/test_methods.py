"""Each method trains a few steps on the tiny model: loss finite and falling, LoRA changed, base unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from sectune.train.data import read_dataset
from sectune.train.model import build_model
from sectune.train.run import make_trainer, open_session, sft_arguments, start_work_dir

METHODS = ["full", "lora", "qlora", "qlora-8bit"]


def _snapshot(model) -> dict[str, torch.Tensor]:
    """Every parameter (and 4-bit/8-bit storage) as a detached copy, LoRA ones included."""
    return {name: param.detach().clone() for name, param in model.named_parameters()}


def _train_in_process(cfg, dataset, tmp_path):
    session = open_session(cfg, dataset, tmp_path / "run", resume=False, overwrite=False)
    start_work_dir(session)
    train_rows, _, _ = read_dataset(dataset)
    from sectune.models.load import load_tokenizer

    tokenizer = load_tokenizer(session.model_ref)
    built = build_model(session.model_ref, cfg.train, precision="fp32", gradient_checkpointing=False)
    before = _snapshot(built.model)
    args = sft_arguments(session, precision="fp32", gradient_checkpointing=False, has_validation=False)
    trainer = make_trainer(session, built.model, tokenizer, args, train_rows, [])
    trainer.train()
    return built, before, _snapshot(built.model), trainer.state.log_history


@pytest.mark.parametrize("method", METHODS)
def test_method_trains_and_changes_only_what_it_should(method, tiny_config, tiny_dataset, tmp_path):
    cfg = tiny_config(f"train.method={method}", "train.lora.dropout=0.0")
    built, before, after, history = _train_in_process(cfg, tiny_dataset, tmp_path)
    losses = [entry["loss"] for entry in history if "loss" in entry]
    assert len(losses) >= 5 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0], losses
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    lora = {name for name in before if "lora_" in name}
    if method == "full":
        assert not lora
        assert built.trainable_params == built.total_params
        assert len(changed) == len(before)  # every weight moved
    else:
        assert lora and changed == lora, sorted(changed ^ lora)[:5]  # LoRA changed, every base weight unchanged
        assert 0 < built.trainable_params < built.total_params
    if method == "qlora":
        from bitsandbytes.nn import Linear4bit

        assert any(isinstance(m, Linear4bit) for m in built.model.modules())
    if method == "qlora-8bit":
        from bitsandbytes.nn import Linear8bitLt

        assert any(isinstance(m, Linear8bitLt) for m in built.model.modules())


@pytest.mark.parametrize("method", ["full", "lora", "qlora"])  # 8-bit writes what lora writes
def test_train_writes_the_run_folder_contract(method, tiny_config, tiny_dataset, tmp_path, capsys):
    from sectune.runs import read_json
    from sectune.train.api import is_finished, partial_dir, train

    out = tmp_path / f"run-{method}"
    run = train(tiny_config(f"train.method={method}", "train.stop_check.enabled=true"), tiny_dataset, out)
    assert run == out and is_finished(out) and not partial_dir(out).exists()
    weights = out / ("model" if method == "full" else "adapter")
    assert any(weights.glob("*.safetensors")) and not any(weights.glob("*.bin"))
    assert (out / "chat_template.jinja").read_text().count("{% generation %}") == 1
    assert not (out / "checkpoints").exists()  # dropped once the run finished (train.keep_checkpoints=false)
    summary = read_json(out / "summary.json")
    for key in ("train_runtime_s", "tokens_per_s", "peak_memory_mb", "trainable_params", "total_params"):
        assert summary[key] > 0, key
    assert summary["base_model"].endswith("tiny-model0") or summary["base_model"] == str(tiny_config().model)
    assert summary["method"] == method
    assert (summary["batch_size"], summary["grad_accum"]) == (4, 1)  # what tiny_config set, as the trainer ran it
    assert math.isfinite(summary["final_train_loss"]) and math.isfinite(summary["eval_loss"])
    losses = [entry["loss"] for entry in summary["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0] and summary["final_train_loss"] == losses[-1]
    assert summary["tokens_seen"] == summary["data_checks"]["lengths"]["stats"]["total_tokens"]  # 6 steps = 1 epoch
    assert len(summary["data_fingerprint"]) == 64
    assert summary["data_checks"]["ok"] and summary["data_checks"]["end_of_turn"]["turns_ending_trained"] == 24
    if method == "qlora":
        assert summary["eval_loss_from"].startswith("separately loaded")
        assert not any("eval_loss" in entry for entry in summary["log_history"])  # never evaluated in training
    else:
        assert summary["eval_loss_from"] == "training instance"
    assert 0.0 <= summary["stop_check"]["stop_rate"] <= 1.0 and summary["stop_check"]["prompts"] == 2
    assert (out / "config.yaml").is_file() and (out / "versions.json").is_file()
    printed = capsys.readouterr()
    log_lines = [line for line in (printed.out + printed.err).splitlines() if line.startswith("step ")]
    assert log_lines and "loss" in log_lines[0] and "{'" not in printed.out + printed.err  # no raw log dicts
