"""Together's fine-tuning API through its official SDK (``together``, the ``sectune[together]`` extra).

files.upload (the SDK checks each chat JSONL, then ``POST /files`` → PUT to the presigned URL →
``/files/{id}/preprocess``) → fine_tuning.create (the SDK reads the model's limits and the price estimate first)
→ retrieve / list_events / list_metrics until it ends → ``content(checkpoint="adapter")`` (an archive) →
``RUN/adapter/``. A full fine-tune has no adapter: its model stays at Together, served at the endpoint.
``train.hosted.base_url`` (else TOGETHER_BASE_URL, the SDK's own variable) points the SDK elsewhere.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.llm.prices import training_price_for
from sectune.train.hosted import common
from sectune.train.hosted.archive import extract_adapter
from sectune.train.hosted.backend import JobState, Outcome, Phase, Plan

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

DEFAULT_BASE_URL = "https://api.together.ai/v1"  # the SDK's own default (2.36.0)
NANODOLLARS = 1_000_000_000  # Together reports a job's total_price in nanodollars
# sectune's registry key → Together's name of the base model (check Together's list of fine-tunable models)
MODELS = {
    "llama-3.1-8b-instruct": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
    "llama-3-8b-instruct": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama-3.2-1b-instruct": "meta-llama/Llama-3.2-1B-Instruct",
    "gemma-2-2b-it": "google/gemma-2-2b-it",
    "qwen2.5-0.5b-instruct": "Qwen/Qwen2.5-0.5B-Instruct",
    "qwen2.5-1.5b-instruct": "Qwen/Qwen2.5-1.5B-Instruct",
}
SCHEDULERS = ("cosine", "linear")
PHASES: dict[str, Phase] = {
    "pending": "waiting",
    "queued": "waiting",
    "running": "running",
    "compressing": "running",
    "uploading": "running",
    "cancel_requested": "running",
    "completed": "succeeded",
    "error": "failed",
    "user_error": "failed",
    "cancelled": "cancelled",
}
ERROR_EVENTS = ("JOB_ERROR", "JOB_USER_ERROR")
TIMEOUT_S = 120.0


class TogetherBackend:
    name = "together"
    key_env = "TOGETHER_API_KEY"
    sdk = "together"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.train.hosted.base_url or os.environ.get("TOGETHER_BASE_URL") or DEFAULT_BASE_URL
        self._client: Any = None
        self._limits: Any = None

    # ------------------------------------------------------------ plan (no network)

    def plan(self, cfg: ExperimentConfig, splits: dict[str, list[dict[str, Any]]], upload_dir: Path) -> Plan:
        base = common.provider_model(cfg, "Together", MODELS)
        common.refuse_lora_variants(cfg, "Together")
        common.refuse_max_steps(cfg, "Together")
        epochs = common.whole_epochs(cfg, "Together")
        train = cfg.train
        if train.lr_scheduler not in SCHEDULERS:
            raise UserError(
                f"Together schedules the learning rate with cosine or linear only, got {train.lr_scheduler}",
                field="train.lr_scheduler",
                fix="set train.lr_scheduler=cosine or linear",
            )
        files = common.write_chat_files(splits, upload_dir)
        has_validation = any(f.split == "validation" for f in files)
        # the keyword arguments of together's client.fine_tuning.create (SDK 2.36.0)
        payload: dict[str, Any] = {
            "training_file": "<train file id>",
            "model": base,
            "n_epochs": epochs,
            "learning_rate": train.learning_rate,
            "lr_scheduler_type": train.lr_scheduler,
            "warmup_ratio": train.warmup_ratio,
            "max_grad_norm": train.max_grad_norm,
            "weight_decay": train.weight_decay,
            "n_checkpoints": 1,
            "n_evals": 1 if has_validation else 0,
            "max_seq_length": train.max_length or cfg.prep.max_length,
            "batch_size": train.batch_size if train.batch_size != "auto" else "max",
            "packing": train.packing,
            "suffix": common.result_name(cfg),
            "random_seed": cfg.seed,
            "training_method": "sft",
            "train_on_inputs": not train.assistant_only_loss,
            **self._training_type(cfg),
        }
        if train.grad_accum != "auto":
            payload["gradient_accumulation_steps"] = train.grad_accum
        if has_validation:
            payload["validation_file"] = "<validation file id>"
        notes = []
        if train.method in ("qlora", "qlora-8bit"):
            notes.append(f"train.method={train.method}: Together trains a LoRA adapter at its own precision")
        if train.early_stopping_patience is not None:
            notes.append("train.early_stopping_patience: not sent (Together evaluates once, at the end)")
        return Plan("together", base, payload, files, epochs, notes, training_price_for("together", base))

    @staticmethod
    def _training_type(cfg: ExperimentConfig) -> dict[str, Any]:
        if cfg.train.method == "full":
            return {"lora": False}
        targets = common.lora_targets(cfg)
        lora = cfg.train.lora
        return {
            "lora": True,
            "lora_r": lora.r,
            "lora_alpha": lora.alpha,
            "lora_dropout": lora.dropout,
            "lora_trainable_modules": targets if isinstance(targets, str) else ",".join(targets),
        }

    # ------------------------------------------------------------ the job

    def connect(self, key: str) -> None:
        from together import Together

        self._client = Together(api_key=key, base_url=self.base_url, timeout=TIMEOUT_S, max_retries=3)

    def check(self, plan: Plan) -> None:
        """Together's limits for the base model, before anything is uploaded: offered, rank, length, full."""
        import together

        payload = plan.payload
        try:
            limits = self._client.fine_tuning.model_limits(model_name=payload["model"])
        except (together.NotFoundError, together.BadRequestError) as exc:
            raise UserError(
                f"Together does not fine-tune '{payload['model']}': {exc.message}",
                field="train.hosted.base_model" if self.cfg.train.hosted.base_model else "model",
                fix="pick a model from Together's list of fine-tunable models (train.hosted.base_model)",
            ) from None
        self._limits = limits
        if payload["lora"]:
            refuse_above(payload["lora_r"], limits.lora_training.max_rank, "train.lora.r", "LoRA rank")
        elif not limits.supports_full_training:
            raise UserError(
                f"Together trains only LoRA adapters of '{payload['model']}', not full fine-tuning",
                field="train.method",
                fix="set train.method=lora",
            )
        refuse_above(payload["max_seq_length"], limits.max_seq_length_sft, "prep.max_length", "max length")
        refuse_above(payload["n_epochs"], limits.max_num_epochs, "train.epochs", "epochs")

    def upload(self, plan: Plan) -> dict[str, str]:
        return {
            f.split: str(self._client.files.upload(file=f.path, purpose="fine-tune", check=True).id) for f in plan.files
        }

    def create(self, plan: Plan, file_ids: dict[str, str]) -> str:
        kwargs = dict(plan.payload, training_file=file_ids["train"])
        if "validation" in file_ids:
            kwargs["validation_file"] = file_ids["validation"]
        return str(self._client.fine_tuning.create(**kwargs, model_limits=self._limits).id)

    def estimated_cost(self, plan: Plan, file_ids: dict[str, str]) -> float | None:
        """Together's own estimate for the uploaded files (what its CLI prints before a job), in USD."""
        payload = plan.payload
        try:
            answer = self._client.fine_tuning.estimate_price(
                training_file=file_ids["train"],
                model=payload["model"],
                n_epochs=payload["n_epochs"],
                n_evals=payload["n_evals"],
                **({"validation_file": file_ids["validation"]} if "validation" in file_ids else {}),
            )
        except Exception:  # an estimate is optional: the SDK itself goes on without one
            return None
        price = getattr(answer, "estimated_total_price", None)
        return float(price) if getattr(answer, "estimation_available", False) and price else None

    def poll(self, job_id: str) -> JobState:
        job = self._client.fine_tuning.retrieve(job_id)
        status = str(getattr(job.status, "value", job.status) or "unknown")
        state = JobState(status=status, phase=PHASES.get(status, "running"), model_id=job.x_model_output_name)
        if job.total_price:
            state.cost_usd = round(float(job.total_price) / NANODOLLARS, 4)
        self._read_events(job_id, state)
        self._read_metrics(job_id, state)
        return state

    def _read_events(self, job_id: str, state: JobState) -> None:
        """Steps from the events (oldest first), and the provider's words for a failed job."""
        for event in self._client.fine_tuning.list_events(job_id).data:
            if event.step is not None:
                state.step = int(event.step)
            if event.total_steps:
                state.total_steps = int(event.total_steps)
            kind = str(getattr(event.type, "value", event.type))
            if event.level == "error" or kind in ERROR_EVENTS:
                state.error = event.message

    def _read_metrics(self, job_id: str, state: JobState) -> None:
        metrics = self._client.fine_tuning.list_metrics(job_id).metrics or []
        for entry in metrics:
            loss = next((entry[k] for k in ("train_loss", "loss", "train/loss") if k in entry), None)
            step = entry.get("global_step", entry.get("step"))
            if loss is not None and step is not None:
                state.losses.append((int(step), float(loss)))
        if state.losses:
            state.step = max(state.step or 0, state.losses[-1][0])
            state.loss = state.losses[-1][1]

    def cancel(self, job_id: str) -> None:
        self._client.fine_tuning.cancel(job_id)

    def collect(self, job_id: str, state: JobState, work: Path) -> Outcome:
        """Download the LoRA adapter (a full fine-tune has no adapter: its model stays hosted)."""
        outcome = Outcome(model_id=state.model_id, endpoint=self.base_url)
        if self.cfg.train.method == "full":
            return outcome
        archive = work / "download" / "adapter.archive"
        archive.parent.mkdir(parents=True, exist_ok=True)
        self._client.fine_tuning.content(ft_id=job_id, checkpoint="adapter").write_to_file(archive)
        outcome.adapter = extract_adapter(archive, work)
        return outcome

    def endpoint(self) -> str:
        return self.base_url


def refuse_above(value: int, limit: int, field: str, what: str) -> None:
    if value > limit:
        raise UserError(
            f"Together allows at most {limit} for the {what} of this model, got {value}",
            field=field,
            fix=f"set {field} to {limit} or less",
        )
