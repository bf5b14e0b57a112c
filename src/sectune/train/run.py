"""One training run: setup → train → save → check → publish, through transformers + peft + trl.

Layout while the run is being built (renamed to OUT only when everything succeeded)::

    OUT.partial/
      config.yaml            the resolved experiment config (a resume must match it)
      checkpoints/checkpoint-N/   trainer checkpoints every train.save_steps (model, optimizer, rng, state)
      metrics.jsonl          one line per trainer log (step, loss, eval_loss): the UI's live loss curve
      tensorboard/ mlruns/ wandb/ tracking backends chosen in train.report_to
      adapter/ or model/     the final weights (PEFT or HF format, safetensors)
      chat_template.jinja    the template used in training (and by every later load)
      summary.json versions.json

``OUT/summary.json`` exists only in a finished run: that is the cheap "is it done?" test (``is_finished``,
the run-folder contract of ``sectune.runs`` with the weights required too).
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.config.train import TrainConfig
from sectune.errors import UserError
from sectune.models.load import RUN_ADAPTER, RUN_MODEL, RUN_SUMMARY, RUN_TEMPLATE, is_train_run
from sectune.progress import Tracker, track
from sectune.runs import fingerprint_files, read_json, write_config, write_json, write_run_metadata
from sectune.train.data import dataset_files, held_out_prompts, read_dataset
from sectune.train.summary import TrainSummary

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

log = logging.getLogger(__name__)

PARTIAL_SUFFIX = ".partial"
CHECKPOINTS = "checkpoints"


def partial_dir(out: Path) -> Path:
    """Where an unfinished run lives (beside OUT), so that --resume finds its checkpoints."""
    return out.with_name(out.name + PARTIAL_SUFFIX)


def is_finished(out: str | Path) -> bool:
    """True when ``out`` holds a finished train run: ``sectune.runs.is_finished`` plus adapter/ or model/
    (or, for a hosted run whose weights stay with the provider, endpoint.json)."""
    from sectune.train.hosted.records import is_hosted_run

    return is_train_run(out) or is_hosted_run(out)


@dataclass
class Session:
    """Everything one call to ``run_training`` works with."""

    cfg: ExperimentConfig
    dataset: Path
    out: Path
    work: Path
    model_ref: str

    @property
    def train(self) -> TrainConfig:
        return self.cfg.train


# ---------------------------------------------------------------- setup


def open_session(
    cfg: ExperimentConfig, dataset: str | Path, out: str | Path, *, resume: bool, overwrite: bool
) -> Session:
    """Check the output folder and prepare the partial folder (fresh, or the one to resume)."""
    from sectune.train.distributed import is_main_process, wait_for_everyone

    out, dataset = Path(out), Path(dataset)
    work = partial_dir(out)
    # one process checks and clears the folders, the others wait: no rank may see another's fresh OUT.partial
    if is_main_process():
        _prepare_output(cfg, out, work, resume=resume, overwrite=overwrite)
    wait_for_everyone()
    return Session(cfg, dataset, out, work, cfg.train.model or cfg.model)


def _prepare_output(cfg: ExperimentConfig, out: Path, work: Path, *, resume: bool, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise UserError(
            "output folder already exists" + (" (a finished run)" if is_finished(out) else ""),
            file=out,
            fix="choose another --out, pass --resume to reuse a finished run, or --overwrite",
        )
    if work.exists() and not resume:
        if not overwrite:
            raise UserError(
                "an interrupted run of this --out exists",
                file=work,
                fix="pass --resume to continue it, --overwrite to start over, or delete the folder",
            )
        shutil.rmtree(work)
    if resume and work.exists():
        _check_same_config(work, cfg)


def start_work_dir(session: Session) -> None:
    """Create (or reuse, on resume) OUT.partial/ with the resolved config, once the input passed its checks."""
    from sectune.train.distributed import is_main_process, wait_for_everyone

    if is_main_process():  # the other processes of a launch write only their RNG state into checkpoints
        session.work.mkdir(parents=True, exist_ok=True)
        write_config(session.work, session.cfg)
    wait_for_everyone()


TRAINING_KEYS = ("model", "seed", "train")  # what shapes the weights; other sections may change between attempts


def _check_same_config(work: Path, cfg: ExperimentConfig) -> None:
    """A resume continues the same training: model, seed and train section must match the saved config."""
    import yaml

    saved_file = work / "config.yaml"
    if not saved_file.is_file():
        return
    saved = yaml.safe_load(saved_file.read_text(encoding="utf-8")) or {}
    current = cfg.model_dump(mode="json")
    changed = [key for key in TRAINING_KEYS if saved.get(key) != current.get(key)]
    if changed:
        raise UserError(
            "the config differs from the interrupted run's config",
            file=saved_file,
            field=changed[0],
            fix="resume with the same --config/--set, or pass --overwrite to start over",
        )


def latest_checkpoint(work: Path) -> str | None:
    """The newest complete checkpoint (trainer_state.json is the last file a save writes)."""
    folder = work / CHECKPOINTS
    if not folder.is_dir():
        return None
    done = [p for p in folder.glob("checkpoint-*") if (p / "trainer_state.json").is_file()]
    if not done:
        return None
    return str(max(done, key=lambda p: int(p.name.split("-")[-1])))


def data_checks(session: Session, tokenizer: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The dataset checks of issue 11 on the training split; a failed check stops the run before training.

    Trainable-token fraction per row, rows training 0 % or 100 % (an error unless train.allow_untrained_rows),
    every end-of-turn token trained, exactly one BOS, lengths against max length. With a truncation length set
    (train.max_length), rows longer than it are an error: trl would cut their answers.
    """
    if not session.train.assistant_only_loss:
        return {"ok": True, "status": "skipped: train.assistant_only_loss is off (loss on every token)"}
    from sectune.data.checks import run_checks
    from sectune.models.load import resolve_model

    spec = resolve_model(session.model_ref).spec
    checks = run_checks(
        tokenizer,
        rows,
        max_length=session.train.max_length or session.cfg.prep.max_length,
        length_policy="error" if session.train.max_length else "drop",
        family=spec.family if spec else None,
        allow_untrained=session.train.allow_untrained_rows,
    )
    checks.raise_if_failed(file=str(session.dataset / "train.jsonl"))
    figures = checks.to_dict()
    for key in ("rows_zero_trained", "rows_all_trained"):  # row lists can be long: keep counts in the summary
        figures["masks"][key] = len(figures["masks"][key])
    return figures


def choose_gradient_checkpointing(session: Session, precision: str) -> tuple[bool, str]:
    """(on/off, why): the user's choice, or on only when the memory plan does not fit the machine."""
    setting = session.train.gradient_checkpointing
    if setting != "auto":
        return bool(setting), "set in the config"
    from sectune.train.plan import plan

    try:
        estimate = plan(session.cfg, gradient_checkpointing=False, precision=precision)
    except UserError:
        return False, "auto: no architecture numbers for this model, no memory plan"
    if estimate.fits:
        return False, f"auto: plan {estimate.total_gb:.1f} GB fits {estimate.available_gb:.1f} GB available"
    return True, f"auto: plan {estimate.total_gb:.1f} GB exceeds {estimate.available_gb:.1f} GB available"


# ---------------------------------------------------------------- trainer


def sft_arguments(session: Session, *, precision: str, gradient_checkpointing: bool, has_validation: bool):
    """trl's SFTConfig from sectune's TrainConfig (the measured defaults, not trl's)."""
    from trl import SFTConfig

    from sectune.train.model import has_cuda, resolve_batch

    train = session.train
    batch_size, grad_accum = resolve_batch(train.batch_size, train.grad_accum)
    evaluate_in_training = has_validation and train.method != "qlora"  # 4-bit guard: no eval forward
    if has_validation and train.method == "qlora" and train.early_stopping_patience is not None:
        log.warning(
            "qlora: no evaluation during training (see guard.py), so no early stopping; eval_loss is "
            "computed after training on a separately loaded model"
        )
    eval_steps = train.eval_steps or train.save_steps
    early_stopping = evaluate_in_training and train.early_stopping_patience is not None
    if early_stopping and train.save_steps % eval_steps:
        raise UserError(
            "early stopping needs train.save_steps to be a multiple of train.eval_steps",
            field="train.eval_steps",
            fix=f"set train.eval_steps to a divisor of {train.save_steps}",
        )
    padding_free = train.padding_free and not train.packing
    if padding_free and train.max_length is not None:
        raise UserError(
            "padding-free batches need train.max_length=null (trl does not truncate them)",
            field="train.max_length",
            fix="set train.max_length=null (prep already bounds lengths) or train.padding_free=false",
        )
    if train.packing and train.max_length is None:
        raise UserError("packing needs a block length", field="train.max_length", fix="set train.max_length=1024")
    return SFTConfig(
        output_dir=str(session.work / CHECKPOINTS),
        run_name=session.cfg.name,
        seed=session.cfg.seed,
        data_seed=session.cfg.seed,
        learning_rate=train.learning_rate,
        num_train_epochs=train.epochs,
        max_steps=train.max_steps,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size,
        gradient_accumulation_steps=grad_accum,
        warmup_steps=train.warmup_ratio,
        lr_scheduler_type=train.lr_scheduler,
        weight_decay=train.weight_decay,
        max_grad_norm=train.max_grad_norm,
        optim=train.optimizer,
        use_cpu=not has_cuda(),
        bf16=precision == "bf16",
        fp16=precision == "fp16",
        activation_checkpointing=gradient_checkpointing,  # trl defaults it to on; sectune measures first
        logging_steps=train.logging_steps,
        save_strategy="steps",
        save_steps=train.save_steps,
        save_total_limit=train.save_total_limit,
        eval_strategy="steps" if evaluate_in_training else "no",
        eval_steps=eval_steps if evaluate_in_training else None,
        load_best_model_at_end=early_stopping,
        metric_for_best_model="eval_loss" if early_stopping else None,
        greater_is_better=False if early_stopping else None,
        report_to=list(train.report_to) or "none",
        max_length=train.max_length,
        assistant_only_loss=train.assistant_only_loss,
        padding_free=padding_free,
        packing=train.packing,
        packing_strategy=train.packing_strategy,
        dataloader_num_workers=train.dataloader_workers,
        include_num_input_tokens_seen="all" if padding_free else "non_padding",
        disable_tqdm=True,  # sectune's own tracker reports the steps (use_progress_tracker)
    )


def collator_check(session: Session, collator: Any, tokenizer: Any, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate a few real rows with the trainer's own collator: every end-of-turn token must stay trained.

    One row per batch (padding-free batches are flattened): a collator that masks by pad id still shows,
    because SmolLM2-like tokenizers use the end-of-turn token as padding.
    """
    if not session.train.assistant_only_loss:
        return {"ok": True, "status": "skipped: train.assistant_only_loss is off"}
    from dataclasses import asdict

    from sectune.data.checks import check_collator
    from sectune.models.load import resolve_model

    spec = resolve_model(session.model_ref).spec
    family = spec.family if spec else None
    results = [check_collator(collator, tokenizer, [row], family) for row in rows[:COLLATOR_CHECK_ROWS]]
    failed = next((r for r in results if not r.ok), None)
    if failed is not None:
        raise UserError(
            failed.problem or "the data collator breaks the labels",
            field="data collator",
            fix="mask padding by position and keep the assistant-only labels",
        )
    return asdict(results[0]) if results else {"ok": True, "status": "no rows"}


def make_trainer(
    session: Session,
    model: Any,
    tokenizer: Any,
    args: Any,
    train_rows: list,
    validation_rows: list,
    progress: Tracker | None = None,
):
    from datasets import Dataset
    from transformers import EarlyStoppingCallback
    from trl import SFTTrainer

    from sectune.train.lm_head import use_kept_gradient_head
    from sectune.train.metrics_log import metrics_callback

    callbacks: list[Any] = [log_last_step_callback(), metrics_callback(session.work)]
    if args.load_best_model_at_end:
        patience = session.train.early_stopping_patience or 1  # load_best_model_at_end implies a patience is set
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        eval_dataset=Dataset.from_list(validation_rows) if validation_rows else None,
        processing_class=tokenizer,
        callbacks=callbacks,
    )
    use_kept_gradient_head(trainer.model)  # CPU/MPS: trl's fused head runs as slow torch ops there (lm_head.py)
    use_progress_tracker(trainer, progress or track("train", unit="steps", mode="off"))
    return trainer


# What a log line shows, in order, under short names; everything else (flos, entropy, …) stays in the trackers.
LOG_FIELDS = {
    "loss": "loss", "eval_loss": "eval_loss", "grad_norm": "grad_norm", "learning_rate": "lr",
    "mean_token_accuracy": "token_acc", "eval_mean_token_accuracy": "eval_token_acc", "epoch": "epoch",
    "train_loss": "mean train loss", "train_runtime": "runtime_s",
}  # fmt: skip


def format_log_line(logs: dict[str, Any], step: int, max_steps: int) -> str:
    """One short line per trainer log, e.g. ``step 10/30 · loss 1.661 · lr 1.9e-04 · epoch 1.43``."""
    parts = [f"step {step}/{max_steps}"]
    for key, label in LOG_FIELDS.items():
        value = logs.get(key)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                continue
        if isinstance(value, (int, float)):
            parts.append(f"{label} {value:.1e}" if key == "learning_rate" else f"{label} {value:.4g}")
    return " · ".join(parts)


def use_progress_tracker(trainer: Any, progress: Tracker) -> None:
    """Replace transformers' bar and printed log dicts with sectune's tracker: steps, and one short line per log."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback, TrainerCallback

    class TrackSteps(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                progress.begin(state.max_steps, start=state.global_step, note="training")

        def on_step_end(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                progress.update(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if state.is_world_process_zero and logs:
                progress.write(format_log_line(logs, state.global_step, state.max_steps))

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(TrackSteps())


def log_last_step_callback():
    """A callback that always logs the final step, so the summary's final loss is the loss at the end."""
    from transformers import TrainerCallback

    class LogLastStep(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= state.max_steps:
                control.should_log = True
            return control

    return LogLastStep()


# ---------------------------------------------------------------- after training


def save_final(trainer: Any, session: Session, tokenizer: Any) -> Path:
    """Write adapter/ (PEFT) or model/ (HF + tokenizer) and the chat template into the run.

    ``trainer.save_model`` gathers sharded FSDP/DeepSpeed weights and writes on the main process only.
    """
    target = session.work / (RUN_MODEL if session.train.method == "full" else RUN_ADAPTER)
    trainer.save_model(str(target))
    if trainer.is_world_process_zero():
        (target / "training_args.bin").unlink(missing_ok=True)  # a pickle: run folders hold safetensors only
        (session.work / RUN_TEMPLATE).write_text(tokenizer.chat_template, encoding="utf-8")
    return target


def in_training_eval_loss(trainer: Any, session: Session, has_validation: bool) -> tuple[float | None, str]:
    """Validation loss with the training instance, for every method except 4-bit (see guard.py)."""
    if not has_validation:
        return None, "no validation split"
    if session.train.method == "qlora":
        return None, "pending"
    return float(trainer.evaluate()["eval_loss"]), "training instance"


def separate_instance_loss(session: Session, args: Any, rows: list, tokenizer: Any, precision: str) -> float:
    """Validation loss of the saved adapter on a freshly loaded 4-bit base: never the training instance."""
    from dataclasses import replace

    from datasets import Dataset
    from peft import PeftModel
    from trl import SFTTrainer

    from sectune.models.load import load_model
    from sectune.train.model import device_map_for, load_dtype

    base = load_model(
        session.model_ref,
        dtype=load_dtype("qlora", precision),
        quantization="4bit",
        device_map=device_map_for("qlora"),
    )
    model = PeftModel.from_pretrained(base, str(session.work / RUN_ADAPTER))
    eval_args = replace(args, report_to=[], eval_strategy="no", load_best_model_at_end=False)
    rows_dataset = Dataset.from_list(rows)
    evaluator = SFTTrainer(
        model=model, args=eval_args, train_dataset=rows_dataset, eval_dataset=rows_dataset, processing_class=tokenizer
    )
    use_progress_tracker(evaluator, track("train", unit="steps", mode="off"))
    return float(evaluator.evaluate()["eval_loss"])


def stop_check(session: Session, test_rows: list, validation_rows: list, precision: str) -> dict[str, Any]:
    """Does the trained model end its answers on its own? Generates on a few held-out prompts (issue 11)."""
    check = session.train.stop_check
    if not check.enabled:
        return {"status": "disabled"}
    prompts = held_out_prompts(test_rows, validation_rows, check.prompts)
    if not prompts:
        return {"status": "skipped: no held-out prompts (no test or validation split)"}
    from sectune.models.generation import generate_chat
    from sectune.models.load import load_for_inference
    from sectune.train.model import half_dtype, has_cuda

    half = half_dtype(precision) if has_cuda() else None
    # a separate instance, never the training one; 16-bit weights on GPU
    model, tokenizer = load_for_inference(session.work, dtype=half)
    if has_cuda():
        model.to("cuda")
    results = generate_chat(model, tokenizer, prompts, max_new_tokens=check.max_new_tokens, batch_size=len(prompts))
    stopped = sum(r.finish_reason == "stop" for r in results)
    rate = stopped / len(results)
    report = {"status": "ok", "prompts": len(results), "stopped": stopped, "stop_rate": rate}
    if rate < check.warn_below:
        report["warning"] = (
            f"only {stopped}/{len(results)} answers ended within {check.max_new_tokens} new tokens: the model may "
            "not have learned to stop (check that end-of-turn tokens are trained: sectune inspect)"
        )
        log.warning(report["warning"])
    return report


def publish(session: Session) -> Path:
    """Drop the checkpoints (unless kept) and rename the finished folder into place."""
    if not session.train.keep_checkpoints:
        shutil.rmtree(session.work / CHECKPOINTS, ignore_errors=True)
    if session.out.exists():
        shutil.rmtree(session.out)
    session.work.rename(session.out)
    return session.out


COLLATOR_CHECK_ROWS = 2

# ---------------------------------------------------------------- the run


def run_training(
    cfg: ExperimentConfig, dataset: str | Path, out: str | Path, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train, save, check and publish a run; see the module docstring for the folder layout."""
    out = Path(out)
    if resume and is_finished(out):
        log.info("%s is already a finished run: nothing to do", out)
        return out
    session = open_session(cfg, dataset, out, resume=resume, overwrite=overwrite)
    with track("train", unit="steps") as progress:
        progress.update(note="reading the dataset, loading the tokenizer")
        return _train_and_publish(cfg, session, progress, resume=resume)


def _train_and_publish(cfg: ExperimentConfig, session: Session, progress: Tracker, *, resume: bool) -> Path:
    train_rows, validation_rows, test_rows = read_dataset(session.dataset)

    from transformers import set_seed

    from sectune.models.load import load_tokenizer
    from sectune.train.memory import PeakMemory
    from sectune.train.model import build_model, resolve_precision
    from sectune.train.tracking import tracking_env

    tokenizer = load_tokenizer(session.model_ref)
    checks = data_checks(session, tokenizer, train_rows)
    precision = resolve_precision(session.train.precision)
    checkpointing, checkpointing_reason = choose_gradient_checkpointing(session, precision)
    args = sft_arguments(
        session, precision=precision, gradient_checkpointing=checkpointing, has_validation=bool(validation_rows)
    )
    start_work_dir(session)  # everything above may still refuse the input: nothing written until here
    set_seed(cfg.seed)
    progress.update(note=f"loading {session.model_ref} for {session.train.method}")
    built = build_model(session.model_ref, session.train, precision=precision, gradient_checkpointing=checkpointing)
    guarded = _guard_if_4bit(built.model)
    checkpoint = latest_checkpoint(session.work) if resume else None
    start_tokens = _tokens_in_checkpoint(checkpoint)
    if checkpoint:
        progress.write(f"train: resuming from {Path(checkpoint).name}")
    # the tracking callbacks read their settings when the trainer is built and log until the final evaluation
    with tracking_env(session.work, session.train.report_to, cfg.name):
        trainer = make_trainer(session, built.model, tokenizer, args, train_rows, validation_rows, progress)
        checks["collator"] = collator_check(session, trainer.data_collator, tokenizer, train_rows)
        started = time.perf_counter()
        with PeakMemory() as peak:
            trainer.train(resume_from_checkpoint=checkpoint)
        runtime = time.perf_counter() - started
        progress.update(note="saving the weights, final checks")
        for handle in guarded:
            handle.remove()
        save_final(trainer, session, tokenizer)
        eval_loss, eval_how = in_training_eval_loss(trainer, session, bool(validation_rows))
        _end_tracking_runs(session.train.report_to)
    if not trainer.is_world_process_zero():
        return session.out  # multi-GPU: the main process writes the summary, checks and publishes
    state, args = trainer.state, trainer.args
    summary = TrainSummary(
        base_model=session.model_ref,
        method=session.train.method,
        precision=precision,
        gradient_checkpointing=checkpointing,
        gradient_checkpointing_reason=checkpointing_reason,
        batch_size=args.per_device_train_batch_size,
        grad_accum=args.gradient_accumulation_steps,
        world_size=args.world_size,
        effective_batch_size=args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps,
        lora_targets=built.target_modules,
        trainable_params=built.trainable_params,
        total_params=built.total_params,
        train_runtime_s=round(runtime, 3),
        tokens_seen=int(state.num_input_tokens_seen),
        tokens_per_s=round((state.num_input_tokens_seen - start_tokens) / runtime, 2) if runtime > 0 else None,
        peak_memory_mb=round(peak.mb, 1),
        peak_memory_kind=peak.kind,
        memory_at_start_mb=round(peak.start_mb, 1),
        resumed_from=_name(checkpoint),
        global_step=state.global_step,
        epochs_done=state.epoch,
        final_train_loss=_last(state.log_history, "loss"),
        best_checkpoint=_name(state.best_model_checkpoint),
        log_history=state.log_history,
        rows={"train": len(train_rows), "validation": len(validation_rows), "test": len(test_rows)},
        dataset=str(session.dataset),
        data_fingerprint=fingerprint_files(dataset_files(session.dataset)),
        tracking=list(session.train.report_to),
        data_checks=checks,
    )
    del trainer, built
    _free_memory()
    if eval_how == "pending":
        eval_loss = separate_instance_loss(session, args, validation_rows, tokenizer, precision)
        eval_how = "separately loaded 4-bit model (the training instance is never evaluated)"
    summary.eval_loss, summary.eval_loss_from = eval_loss, eval_how
    write_run_metadata(session.work, cfg, summary.to_dict())  # load_for_inference needs summary.json
    summary.stop_check = stop_check(session, test_rows, validation_rows, precision)
    write_json(session.work / RUN_SUMMARY, summary.to_dict())
    return publish(session)


def _end_tracking_runs(backends: Sequence[str]) -> None:
    """Close the runs the callbacks opened (they stay open after train() so the final eval can log)."""
    if "wandb" in backends:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    if "mlflow" in backends:
        import mlflow

        if mlflow.active_run() is not None:
            mlflow.end_run()


def _free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _guard_if_4bit(model: Any) -> list[Any]:
    from sectune.train.guard import forbid_inference, is_4bit

    return forbid_inference(model) if is_4bit(model) else []


def _tokens_in_checkpoint(checkpoint: str | None) -> int:
    if not checkpoint:
        return 0
    return int(read_json(Path(checkpoint) / "trainer_state.json").get("num_input_tokens_seen", 0))


def _last(history: list[dict[str, Any]], key: str) -> float | None:
    values = [entry[key] for entry in history if key in entry]
    return float(values[-1]) if values else None


def _name(path: str | None) -> str | None:
    return Path(path).name if path else None
