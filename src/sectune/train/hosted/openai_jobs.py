"""OpenAI's fine-tuning API through the official ``openai`` client: files → fine_tuning.jobs → events.

OpenAI fine-tunes only its own models and keeps the weights: the run folder records the resulting model id
and the endpoint that serves it, and ``sectune eval`` / ``chat`` talk to that endpoint (OPENAI_API_KEY).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.llm.prices import training_price_for
from sectune.train.hosted import common
from sectune.train.hosted.backend import JobState, Outcome, Phase, Plan

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# The model families OpenAI fine-tunes (a dated snapshot such as gpt-4.1-mini-2025-04-14 belongs to its family);
# "ft:..." continues from an earlier fine-tuned model.
FINE_TUNABLE = ("gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini", "gpt-3.5-turbo")
PHASES: dict[str, Phase] = {
    "validating_files": "waiting",
    "queued": "waiting",
    "running": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "cancelled": "cancelled",
}


def is_fine_tunable(model: str) -> bool:
    return model.startswith("ft:") or any(model == f or model.startswith(f + "-20") for f in FINE_TUNABLE)


class OpenAIBackend:
    name = "openai"
    key_env = "OPENAI_API_KEY"
    sdk = "openai"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self.base_url = cfg.train.hosted.base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL
        self._client: Any = None

    # ------------------------------------------------------------ plan (no network)

    def plan(self, cfg: ExperimentConfig, splits: dict[str, list[dict[str, Any]]], upload_dir: Path) -> Plan:
        base = self._base_model(cfg)
        common.refuse_lora_variants(cfg, "OpenAI")
        common.refuse_max_steps(cfg, "OpenAI")
        epochs = common.whole_epochs(cfg, "OpenAI")
        files = common.write_chat_files(splits, upload_dir)
        multiplier = cfg.train.hosted.learning_rate_multiplier
        payload: dict[str, Any] = {
            "model": base,
            "training_file": "<train file id>",
            "suffix": common.result_name(cfg, limit=64),
            "seed": cfg.seed,
            "method": {
                "type": "supervised",
                "supervised": {
                    "hyperparameters": {
                        "n_epochs": epochs,
                        "batch_size": common.grad_steps_batch(cfg) or "auto",
                        "learning_rate_multiplier": multiplier,
                    }
                },
            },
        }
        if any(f.split == "validation" for f in files):
            payload["validation_file"] = "<validation file id>"
        notes = [
            f"train.method={cfg.train.method}: OpenAI decides how it trains; train.lora.* are not sent",
            f"train.learning_rate ({cfg.train.learning_rate:g}) is not sent: OpenAI takes a multiplier "
            f"(train.hosted.learning_rate_multiplier={multiplier})",
            "OpenAI keeps the weights: the run folder points eval/chat at the hosted model (endpoint.json)",
        ]
        if not cfg.train.assistant_only_loss:
            notes.append("train.assistant_only_loss=false: OpenAI trains on assistant messages only")
        return Plan("openai", base, payload, files, epochs, notes, price_per_mtok=training_price_for("openai", base))

    def _base_model(self, cfg: ExperimentConfig) -> str:
        base = cfg.train.hosted.base_model
        if base is None or not is_fine_tunable(base):
            got = f"'{base}'" if base else f"'{common.model_key(cfg)}' (from model)"
            raise UserError(
                f"OpenAI fine-tunes only its own models, not {got}",
                field="train.hosted.base_model",
                fix="set train.hosted.base_model to one of " + ", ".join(FINE_TUNABLE) + " (or a dated snapshot)",
            )
        return base

    # ------------------------------------------------------------ the job

    def connect(self, key: str) -> None:
        from openai import OpenAI

        self._client = OpenAI(api_key=key, base_url=self.base_url, max_retries=3)

    def check(self, plan: Plan) -> None:
        """Nothing to ask first: ``plan`` already refused what OpenAI cannot do (its models are a fixed list)."""

    def upload(self, plan: Plan) -> dict[str, str]:
        ids = {}
        for file in plan.files:
            with file.path.open("rb") as handle:
                ids[file.split] = self._client.files.create(file=handle, purpose="fine-tune").id
        return ids

    def create(self, plan: Plan, file_ids: dict[str, str]) -> str:
        payload = dict(plan.payload, training_file=file_ids["train"])
        if "validation" in file_ids:
            payload["validation_file"] = file_ids["validation"]
        return str(self._client.fine_tuning.jobs.create(**payload).id)

    def poll(self, job_id: str) -> JobState:
        job = self._client.fine_tuning.jobs.retrieve(job_id)
        state = JobState(status=job.status, phase=PHASES.get(job.status, "running"), model_id=job.fine_tuned_model)
        if job.error is not None and job.error.message:
            state.error = job.error.message
        self._read_metrics(job_id, state)
        if job.trained_tokens:
            price = training_price_for("openai", job.model)
            state.cost_usd = round(job.trained_tokens * price / 1e6, 4) if price is not None else None
        return state

    def _read_metrics(self, job_id: str, state: JobState) -> None:
        """Steps and losses from the job's metrics events (the API lists the newest first)."""
        events = self._client.fine_tuning.jobs.list_events(job_id, limit=100).data
        for event in reversed(events):
            data = getattr(event, "data", None) or {}
            if event.type == "metrics" and "step" in data:
                state.step, state.total_steps = int(data["step"]), data.get("total_steps")
                if data.get("train_loss") is not None:
                    state.loss = float(data["train_loss"])
                    state.losses.append((state.step, state.loss))
            elif event.level == "error" and not state.error:
                state.error = event.message

    def cancel(self, job_id: str) -> None:
        self._client.fine_tuning.jobs.cancel(job_id)

    def collect(self, job_id: str, state: JobState, work: Path) -> Outcome:
        if not state.model_id:
            raise UserError("the job succeeded but names no fine-tuned model", field=job_id, fix="check the job")
        return Outcome(model_id=state.model_id, endpoint=self.base_url)

    def endpoint(self) -> str:
        return self.base_url
