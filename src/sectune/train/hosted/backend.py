"""What every hosted backend is: a Protocol with the same life cycle, and the records it passes around.

plan (check + map, no network) → connect → check (what only the service knows, e.g. its limits for the model) →
upload → create → poll … → collect. ``plan`` is pure so that ``--dry-run`` shows exactly what the real run would
upload and send; the real run sends that same plan. Every refusal (a UserError, exit 2) comes before the upload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from sectune.errors import UserError

Phase = Literal["waiting", "running", "succeeded", "failed", "cancelled"]
FINAL_PHASES = ("succeeded", "failed", "cancelled")
EXIT_JOB_FAILED = 1


class HostedJobError(UserError):
    """The remote job failed, was cancelled or could not be followed to its end: exit 1, the provider's words."""

    exit_code = EXIT_JOB_FAILED


@dataclass(frozen=True)
class UploadFile:
    """One split as it is uploaded: the JSONL written for the provider, its rows and estimated tokens."""

    split: str  # train or validation
    path: Path
    rows: int
    tokens: int  # estimated: characters / CHARS_PER_TOKEN


@dataclass
class Plan:
    """Everything a hosted run will upload and send, computed without touching the network."""

    backend: str
    base_model: str  # the provider's name of the base model
    payload: dict[str, Any]  # the create request; file ids appear as "<train file id>" until uploaded
    files: list[UploadFile]
    epochs: int
    notes: list[str] = field(default_factory=list)  # mapping decisions the user should know about
    price_per_mtok: float | None = None  # training price, USD per million tokens (None: not in sectune's table)

    @property
    def trained_tokens(self) -> int:
        """Estimated tokens the provider bills: the training split once per epoch."""
        return sum(f.tokens for f in self.files if f.split == "train") * self.epochs

    @property
    def estimated_cost_usd(self) -> float | None:
        if self.price_per_mtok is None:
            return None
        return round(self.trained_tokens * self.price_per_mtok / 1_000_000, 4)


@dataclass
class JobState:
    """One look at the remote job, in sectune's words (``phase``) and the provider's (``status``)."""

    status: str
    phase: Phase
    step: int | None = None
    total_steps: int | None = None
    loss: float | None = None
    cost_usd: float | None = None  # what the provider says the job cost (so far)
    estimated_cost_usd: float | None = None  # the provider's estimate before the job, while no cost is reported
    error: str | None = None  # the provider's own error text, for a failed job
    model_id: str | None = None  # the result's name at the provider, once known
    losses: list[tuple[int, float]] = field(default_factory=list)  # (step, train loss) reported so far


@dataclass
class Outcome:
    """What a finished job left: an adapter downloaded into the run, and/or a model that stays hosted."""

    adapter: Path | None = None
    model_id: str | None = None
    endpoint: str | None = None  # OpenAI-compatible base URL that serves model_id (weights not downloadable)
    details: dict[str, Any] = field(default_factory=dict)


class Backend(Protocol):
    """A hosted fine-tuning service. Only ``plan`` runs for ``--dry-run``; nothing else runs before it passed."""

    name: str
    key_env: str  # the environment variable (or .env entry) that holds the key
    sdk: str  # the module of the service's official SDK (imported only by ``connect``)

    def plan(self, cfg: Any, splits: dict[str, list[dict[str, Any]]], upload_dir: Path) -> Plan: ...

    def connect(self, key: str) -> None: ...

    def check(self, plan: Plan) -> None: ...

    def upload(self, plan: Plan) -> dict[str, str]: ...

    def create(self, plan: Plan, file_ids: dict[str, str]) -> str: ...

    def poll(self, job_id: str) -> JobState: ...

    def cancel(self, job_id: str) -> None: ...

    def collect(self, job_id: str, state: JobState, work: Path) -> Outcome: ...

    def endpoint(self) -> str: ...
