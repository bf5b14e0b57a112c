"""Predibase through its official SDK (``predibase``, the ``sectune[predibase]`` extra).

datasets.from_file (one chat JSONL; a ``split`` column marks the evaluation rows) → repos.create →
finetuning.jobs.create (a LoRA adapter version) → jobs.get until it ends, the SDK's metrics stream for steps
and losses → adapters.download (a zip) → ``RUN/adapter/``, a standard PEFT folder.
``train.hosted.base_url`` (else PREDIBASE_GATEWAY, the SDK's own variable) points the SDK elsewhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.llm.prices import training_price_for
from sectune.train.hosted import common
from sectune.train.hosted.archive import extract_adapter
from sectune.train.hosted.backend import FINAL_PHASES, JobState, Outcome, Phase, Plan, UploadFile

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

GATEWAY_ENV = "PREDIBASE_GATEWAY"
# sectune's registry key → Predibase's base model name (docs.predibase.com/fine-tuning/models: dots become
# dashes). A name Predibase no longer offers fails at job creation with Predibase's own message.
MODELS = {
    "mistral-7b": "mistral-7b",
    "mistral-7b-instruct-v0.3": "mistral-7b-instruct-v0-3",
    "llama-3-8b-instruct": "llama-3-8b-instruct",
    "llama-3.1-8b-instruct": "llama-3-1-8b-instruct",
    "llama-3.2-1b-instruct": "llama-3-2-1b-instruct",
    "zephyr-7b-beta": "zephyr-7b-beta",
    "phi-3-mini-4k-instruct": "phi-3-mini-4k-instruct",
    "qwen2.5-1.5b-instruct": "qwen2-5-1-5b-instruct",
}
PHASES: dict[str, Phase] = {
    "queued": "waiting",
    "training": "running",
    "stopping": "running",
    "completed": "succeeded",
    "errored": "failed",
    "canceled": "cancelled",
    "stopped": "cancelled",
}
EVALUATION = "evaluation"  # Predibase's split name for held-out rows in the same dataset file
METRICS_WAIT_S = 10.0  # at the end of a job, how long to wait for the metrics stream's last messages


class PredibaseBackend:
    name = "predibase"
    key_env = "PREDIBASE_API_TOKEN"
    sdk = "predibase"

    def __init__(self, cfg: ExperimentConfig) -> None:
        self.cfg = cfg
        self._pb: Any = None
        self._metrics: dict[str, _MetricsStream] = {}

    # ------------------------------------------------------------ plan (no network)

    def plan(self, cfg: ExperimentConfig, splits: dict[str, list[dict[str, Any]]], upload_dir: Path) -> Plan:
        base = common.provider_model(cfg, "Predibase", MODELS)
        if cfg.train.method == "full":
            raise UserError(
                "Predibase trains adapters only, not full fine-tuning",
                field="train.method",
                fix="set train.method=lora (or qlora), or train.backend=local",
            )
        common.refuse_lora_variants(cfg, "Predibase")
        targets = common.lora_targets(cfg)
        if isinstance(targets, str):
            raise UserError(
                "Predibase takes a list of target modules, not 'all-linear'",
                field="train.lora.target_modules",
                fix="list them, e.g. [q_proj, k_proj, v_proj, o_proj], or use 'registry'",
            )
        files = _write_dataset(splits, upload_dir)
        config = self._finetuning_config(cfg, base, targets)
        repo = common.result_name(cfg)
        payload = {"repo": repo, "dataset": "<dataset name>", "config": config}
        notes = self._notes(cfg)
        epochs = config.get("epochs", 1)
        return Plan("predibase", base, payload, files, epochs, notes, training_price_for("predibase", base))

    @staticmethod
    def _finetuning_config(cfg: ExperimentConfig, base: str, targets: list[str]) -> dict[str, Any]:
        """Predibase's FinetuningConfig fields (SDK 2025.10.3) from sectune's train section."""
        train, lora = cfg.train, cfg.train.lora
        config: dict[str, Any] = {
            "base_model": base,
            "adapter": "lora",
            "task": "sft",
            "learning_rate": train.learning_rate,
            "rank": lora.r,
            "lora_alpha": lora.alpha,
            "target_modules": targets,
            "apply_chat_template": True,  # the base model's own template: sectune's renders byte-identically
            "enable_early_stopping": train.early_stopping_patience is not None,
        }
        if train.max_steps > 0:
            config["train_steps"] = train.max_steps
        else:
            config["epochs"] = common.whole_epochs(cfg, "Predibase")
        if lora.dropout > 0:  # the SDK's field is a positive float: 0 means "leave Predibase's default"
            config["lora_dropout"] = lora.dropout
        if train.warmup_ratio > 0:
            config["warmup_ratio"] = train.warmup_ratio
        batch = common.grad_steps_batch(cfg)
        if batch:
            config["effective_batch_size"] = batch
        return config

    @staticmethod
    def _notes(cfg: ExperimentConfig) -> list[str]:
        length = cfg.train.max_length or cfg.prep.max_length
        notes = [
            f"max length {length}: not sent (Predibase's FinetuningConfig has no length setting); "
            f"prep.max_length already bounds every row",
            "train.batch_size x train.grad_accum is sent as effective_batch_size (Predibase picks the split)",
        ]
        if cfg.train.method in ("qlora", "qlora-8bit"):
            notes.insert(0, f"train.method={cfg.train.method}: adapter 'lora' (Predibase chooses the base precision)")
        if cfg.train.lr_scheduler != "cosine":
            notes.append(f"train.lr_scheduler={cfg.train.lr_scheduler}: not sent (Predibase's default schedule)")
        return notes

    # ------------------------------------------------------------ the job

    def connect(self, key: str) -> None:
        with _gateway(self.cfg.train.hosted.base_url), _quiet():  # the SDK prints "Connected to Predibase as ..."
            from predibase import Predibase

            self._pb = Predibase(api_token=key)

    def check(self, plan: Plan) -> None:
        """Nothing to ask first: a base model Predibase does not offer fails at job creation, in its words."""

    def upload(self, plan: Plan) -> dict[str, str]:
        path = plan.files[0].path
        name = f"{plan.payload['repo']}-{hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        dataset = self._pb.datasets.from_file(str(path), name=name)
        return {"dataset": dataset.name}

    def create(self, plan: Plan, file_ids: dict[str, str]) -> str:
        repo = plan.payload["repo"]
        self._pb.repos.create(name=repo, description=f"sectune: {self.cfg.name}", exists_ok=True)
        with _quiet():  # the SDK prints the request and its own cost estimate
            job = self._pb.finetuning.jobs.create(
                config=plan.payload["config"], dataset=file_ids["dataset"], repo=repo, description=self.cfg.name
            )
        return str(job.uuid)

    def poll(self, job_id: str) -> JobState:
        job = self._pb.finetuning.jobs.get(job_id)
        status = str(job.status)
        state = JobState(status=status, phase=PHASES.get(status, "running"))
        state.model_id = f"{job.target_repo}/{job.target_version_tag}"
        stream = self._metrics_stream(job_id, status)
        if stream is not None:
            if state.phase in FINAL_PHASES:  # the stream ends with the job: wait for its last metrics
                stream.wait(METRICS_WAIT_S)
            stream.fill(state)
        if state.phase == "failed":
            state.error = self._job_error(job) or status
        return state

    def _metrics_stream(self, job_id: str, status: str) -> _MetricsStream | None:
        """The SDK's websocket of training metrics, read in the background once the job trains."""
        if job_id not in self._metrics and status in ("training", "completed", "stopping"):
            self._metrics[job_id] = _MetricsStream(self._pb, job_id)
        return self._metrics.get(job_id)

    def _job_error(self, job: Any) -> str | None:
        """Predibase's own words for a failed job: the adapter version's ``finetuningJob.error``."""
        try:
            version = self._pb.http_get(f"/v2/repos/{job.target_repo}/version/{job.target_version_tag}")
        except Exception:  # the status alone still says that it failed
            return None
        error = (version.get("finetuningJob") or {}).get("error")
        return str(error) if error else None

    def estimated_cost(self, plan: Plan, file_ids: dict[str, str]) -> float | None:
        """Predibase's own estimate for the uploaded dataset (what ``jobs.create`` prints), in USD."""
        config = plan.payload["config"]
        query = {
            "baseModel": config["base_model"],
            "datasetName": file_ids["dataset"],
            "taskType": config["task"],
            "adapterType": config["adapter"],
            "epochs": config.get("epochs"),
            "trainSteps": config.get("train_steps"),
        }
        try:
            answer = self._pb.http_get("/v2/finetuning/jobs/cost-estimate", json=query)
        except Exception:  # an estimate is optional: the SDK itself skips it when it fails
            return None
        cost = answer.get("estimatedCost")
        return float(cost) if isinstance(cost, (int, float)) and cost > 0 else None

    def cancel(self, job_id: str) -> None:
        self._pb.finetuning.jobs.cancel(job_id)

    def collect(self, job_id: str, state: JobState, work: Path) -> Outcome:
        download = work / "download"
        download.mkdir(parents=True, exist_ok=True)
        assert state.model_id is not None  # poll always names "repo/version"
        with _quiet():  # the SDK prints "Downloading adapter ..." / "Done!"
            self._pb.adapters.download(state.model_id, dest=str(download))
        archive = next(download.glob("*.zip"))
        stream = self._metrics.pop(job_id, None)
        if stream is not None:
            stream.stop()
        return Outcome(adapter=extract_adapter(archive, work), model_id=state.model_id)

    def endpoint(self) -> str:
        return str(self._pb.api_gateway) if self._pb is not None else os.environ.get(GATEWAY_ENV, "")


def _write_dataset(splits: dict[str, list[dict[str, Any]]], folder: Path) -> list[UploadFile]:
    """One chat JSONL: train rows, then the validation rows marked ``"split": "evaluation"``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "dataset.jsonl"
    lines, files = [], []
    for split, marker in (("train", "train"), ("validation", EVALUATION)):
        rows = splits.get(split) or []
        lines += [json.dumps({"messages": r["messages"], "split": marker}, ensure_ascii=False) for r in rows]
        if rows:
            tokens = sum(common.estimate_tokens(r["messages"]) for r in rows)
            files.append(UploadFile(split=split, path=path, rows=len(rows), tokens=tokens))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return files


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """What the SDK prints (it talks to a notebook user) stays out of sectune's progress lines."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


@contextlib.contextmanager
def _gateway(url: str | None) -> Iterator[None]:
    """The SDK reads its address from PREDIBASE_GATEWAY only: set it while the client is built."""
    old = os.environ.get(GATEWAY_ENV)
    if url:
        os.environ[GATEWAY_ENV] = url
    try:
        yield
    finally:
        if url and old is None:
            os.environ.pop(GATEWAY_ENV, None)
        elif url and old is not None:
            os.environ[GATEWAY_ENV] = old


class _MetricsStream:
    """Reads ``/v2/finetuning/jobs/{id}/metrics/stream`` (the SDK's websocket) in a daemon thread."""

    def __init__(self, pb: Any, job_id: str) -> None:
        self._lock = threading.Lock()
        self._losses: dict[int, float] = {}
        self._step: int | None = None
        self._total: int | None = None
        self._stopped = threading.Event()
        self._ended = threading.Event()
        self._thread = threading.Thread(target=self._read, args=(pb, job_id), name="predibase-metrics", daemon=True)
        self._thread.start()

    def _read(self, pb: Any, job_id: str) -> None:
        try:
            for message in pb.listen_websocket(f"/v2/finetuning/jobs/{job_id}/metrics/stream", max_attempts=3):
                if self._take(json.loads(message)) or self._stopped.is_set():
                    return
        except Exception:  # metrics are a nicety: the job's status comes from jobs.get
            return
        finally:
            self._ended.set()

    def _take(self, metrics: dict[str, Any]) -> bool:
        """Keep one message's step and loss; True when it is the last one (``meta.is_completed``)."""
        data, meta = metrics.get("data") or {}, metrics.get("meta") or {}
        with self._lock:
            self._total = meta.get("total_steps", self._total)
            step = data.get("steps")
            if step is not None:
                self._step = int(step)
                if data.get("train_metrics_loss") is not None:
                    self._losses[int(step)] = float(data["train_metrics_loss"])
        return bool(meta.get("is_completed"))

    def wait(self, timeout: float) -> None:
        self._ended.wait(timeout)

    def fill(self, state: JobState) -> None:
        with self._lock:
            state.step, state.total_steps = self._step, self._total
            state.losses = sorted(self._losses.items())
        if state.losses:
            state.loss = state.losses[-1][1]

    def stop(self) -> None:
        self._stopped.set()
