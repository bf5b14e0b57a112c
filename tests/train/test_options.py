"""Config options reach peft and trl as documented (no training: cheap)."""

from __future__ import annotations

import pytest

from sectune.errors import UserError
from sectune.train.model import build_model
from sectune.train.run import make_trainer, open_session, sft_arguments


def test_dora_and_rslora_reach_peft(tiny_config, tiny_model_dir):
    cfg = tiny_config("train.lora.use_dora=true", "train.lora.use_rslora=true", "train.lora.target_modules=[q_proj]")
    built = build_model(str(tiny_model_dir), cfg.train, precision="fp32", gradient_checkpointing=False)
    peft_cfg = built.model.peft_config["default"]
    assert peft_cfg.use_dora and peft_cfg.use_rslora and peft_cfg.target_modules == {"q_proj"}
    names = [n for n, p in built.model.named_parameters() if p.requires_grad]
    assert any("lora_magnitude_vector" in n for n in names) and all("q_proj" in n for n in names)


def test_unknown_lora_target_is_a_user_error(tiny_config, tiny_model_dir):
    cfg = tiny_config("train.lora.target_modules=[qq_proj]")
    with pytest.raises(UserError, match="target_modules"):
        build_model(str(tiny_model_dir), cfg.train, precision="fp32", gradient_checkpointing=False)


def test_early_stopping_is_wired_to_validation_loss(tiny_config, tiny_dataset, tmp_path, tiny_model_dir):
    from transformers import EarlyStoppingCallback

    from sectune.models.load import load_tokenizer
    from sectune.train.data import read_dataset

    cfg = tiny_config("train.early_stopping_patience=2", "train.eval_steps=3", "train.save_steps=6")
    session = open_session(cfg, tiny_dataset, tmp_path / "run", resume=False, overwrite=False)
    args = sft_arguments(session, precision="fp32", gradient_checkpointing=False, has_validation=True)
    assert args.load_best_model_at_end and args.metric_for_best_model == "eval_loss" and not args.greater_is_better
    assert args.eval_steps == 3 and args.save_steps == 6
    train_rows, validation_rows, _ = read_dataset(tiny_dataset)
    built = build_model(str(tiny_model_dir), cfg.train, precision="fp32", gradient_checkpointing=False)
    trainer = make_trainer(session, built.model, load_tokenizer(tiny_model_dir), args, train_rows, validation_rows)
    stoppers = [c for c in trainer.callback_handler.callbacks if isinstance(c, EarlyStoppingCallback)]
    assert len(stoppers) == 1 and stoppers[0].early_stopping_patience == 2


def test_early_stopping_needs_save_steps_a_multiple_of_eval_steps(tiny_config, tiny_dataset, tmp_path):
    session = open_session(
        tiny_config("train.eval_steps=4", "train.save_steps=6"),
        tiny_dataset,
        tmp_path / "r",
        resume=False,
        overwrite=False,
    )
    with pytest.raises(UserError, match="multiple"):
        sft_arguments(session, precision="fp32", gradient_checkpointing=False, has_validation=True)


def test_packing_and_padding_free_settings(tiny_config, tiny_dataset, tmp_path):
    packed = open_session(
        tiny_config("train.packing=true", "train.max_length=256"),
        tiny_dataset,
        tmp_path / "p",
        resume=False,
        overwrite=False,
    )
    args = sft_arguments(packed, precision="fp32", gradient_checkpointing=False, has_validation=False)
    assert args.packing and args.max_length == 256 and not args.padding_free
    default = open_session(tiny_config(), tiny_dataset, tmp_path / "d", resume=False, overwrite=False)
    args = sft_arguments(default, precision="fp32", gradient_checkpointing=False, has_validation=False)
    assert args.padding_free and args.max_length is None and args.assistant_only_loss
    assert not args.activation_checkpointing  # trl's default (on) is not sectune's
    with pytest.raises(UserError, match="packing"):
        sft_arguments(
            open_session(
                tiny_config("train.packing=true"), tiny_dataset, tmp_path / "x", resume=False, overwrite=False
            ),
            precision="fp32",
            gradient_checkpointing=False,
            has_validation=False,
        )


def test_log_lines_are_short_and_skip_what_is_not_a_number():
    from sectune.train.run import format_log_line

    logs = {"loss": 1.66123, "learning_rate": 0.00019, "epoch": "1.43", "total_flos": 5e12, "note": "x"}
    assert format_log_line(logs, 10, 30) == "step 10/30 · loss 1.661 · lr 1.9e-04 · epoch 1.43"
    assert format_log_line({"eval_loss": 1.7691}, 30, 30) == "step 30/30 · eval_loss 1.769"


def test_batch_auto_is_one_row_per_step_on_cpu_four_on_gpu_and_eight_rows_per_update(monkeypatch):
    from sectune.train import model

    monkeypatch.setattr(model, "has_cuda", lambda: False)
    assert model.resolve_batch("auto", "auto") == (1, 8)
    assert model.resolve_batch(2, "auto") == (2, 4) and model.resolve_batch(16, "auto") == (16, 1)
    assert model.resolve_batch("auto", 3) == (1, 3) and model.resolve_batch(4, 2) == (4, 2)
    monkeypatch.setattr(model, "has_cuda", lambda: True)
    assert model.resolve_batch("auto", "auto") == (4, 2)


def test_batch_settings_refuse_zero_and_words_other_than_auto():
    from sectune.config import load_config

    assert load_config(None, ["train.batch_size=2"]).train.batch_size == 2
    for bad in ("train.batch_size=0", "train.grad_accum=many"):
        with pytest.raises(UserError):
            load_config(None, [bad])
