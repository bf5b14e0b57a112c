"""One hosted training run: check → plan → upload → create → follow → collect → publish.

The run folder has the local run's contract (``OUT.partial/`` renamed to ``OUT`` when everything worked,
``summary.json`` written last), plus ``hosted_job.json`` from the moment the job exists (see records.py).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.llm.keys import api_key_from_env, redact
from sectune.progress import Tracker, track
from sectune.runs import fingerprint_files, write_json, write_run_metadata
from sectune.train.data import dataset_files, read_dataset
from sectune.train.hosted.backend import FINAL_PHASES, Backend, HostedJobError, JobState, Outcome, Plan
from sectune.train.hosted.common import require_sdk
from sectune.train.hosted.records import ENDPOINT_FILE, JOB_FILE, UPLOAD_FILE, read_record, write_record

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.train.run import Session

log = logging.getLogger(__name__)
Ask = Callable[[str], bool]


def make_backend(cfg: ExperimentConfig) -> Backend:
    """The backend ``train.backend`` names (its SDK is imported only when it connects)."""
    from sectune.train.hosted.openai_jobs import OpenAIBackend
    from sectune.train.hosted.predibase_jobs import PredibaseBackend
    from sectune.train.hosted.together_jobs import TogetherBackend

    backends: dict[str, Callable[[ExperimentConfig], Backend]] = {
        "openai": OpenAIBackend,
        "predibase": PredibaseBackend,
        "together": TogetherBackend,
    }
    return backends[cfg.train.backend](cfg)


def ask_on_terminal(question: str) -> bool:
    """y/N on a terminal; off a terminal (a script, CI) nobody can answer: no."""
    if not sys.stdin.isatty():
        return False
    try:
        return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
    except (EOFError, KeyboardInterrupt):
        return False


# ---------------------------------------------------------------- dry run


@dataclass
class DryRun:
    """What a hosted run would upload and send, and what it would cost where sectune knows the price."""

    plan: Plan
    key_env: str
    key_set: bool
    model_ref: str
    samples: dict[str, str]  # path name → its first line, as it would be uploaded

    def as_dict(self) -> dict[str, Any]:
        plan = self.plan
        return {
            "backend": plan.backend,
            "model": self.model_ref,
            "provider_base_model": plan.base_model,
            "files": [
                {"file": f.path.name, "split": f.split, "rows": f.rows, "estimated_tokens": f.tokens}
                for f in plan.files
            ],
            "request": plan.payload,
            "epochs": plan.epochs,
            "estimated_trained_tokens": plan.trained_tokens,
            "price_usd_per_mtok": plan.price_per_mtok,
            "estimated_cost_usd": plan.estimated_cost_usd,
            "notes": plan.notes,
            "key": {"env": self.key_env, "set": self.key_set},
        }

    def text(self) -> str:
        plan = self.plan
        lines = [
            f"dry run: train.backend={plan.backend}, nothing is uploaded or sent",
            f"base model: {self.model_ref} -> {plan.backend} '{plan.base_model}'",
            f"key: {self.key_env} is {'set' if self.key_set else 'NOT set'} (read from the environment or .env, "
            "never printed or stored)",
            "would upload:",
        ]
        for file in plan.files:
            lines.append(f"  {file.path.name}  {file.split}: {file.rows} rows, ~{file.tokens:,} tokens")
        for name, sample in self.samples.items():
            lines.append(f"  first line of {name}: {sample}")
        lines.append("would send (job creation request):")
        lines += ["  " + line for line in json.dumps(plan.payload, indent=2).splitlines()]
        per_epoch = plan.trained_tokens // max(1, plan.epochs)
        lines.append(
            f"estimated trained tokens: {per_epoch:,} x {plan.epochs} epochs = {plan.trained_tokens:,} "
            "(~4 characters a token; the provider counts with its tokenizer)"
        )
        if plan.estimated_cost_usd is None:
            lines.append(f"estimated cost: unknown ({plan.backend}'s training price is not in sectune's price table)")
        else:
            lines.append(
                f"estimated cost: ${plan.estimated_cost_usd:.2f} (${plan.price_per_mtok:.2f} per million "
                "training tokens, sectune's price table: check the provider's page)"
            )
        lines += ["notes:"] + [f"  - {note}" for note in plan.notes] if plan.notes else []
        return "\n".join(lines)


def dry_run(cfg: ExperimentConfig, dataset: str | Path) -> DryRun:
    """Check and map the config, build the upload files in a temporary folder, send nothing."""
    backend = _hosted_backend(cfg)
    train, validation, _ = read_dataset(dataset)
    with tempfile.TemporaryDirectory(prefix="sectune-dry-run-") as tmp:
        plan = backend.plan(cfg, {"train": train, "validation": validation}, Path(tmp))
        samples = {f.path.name: _first_line(f.path) for f in plan.files}
    key_set = api_key_from_env(backend.key_env) is not None
    return DryRun(plan, backend.key_env, key_set, cfg.train.model or cfg.model, samples)


def _first_line(path: Path, limit: int = 240) -> str:
    with path.open(encoding="utf-8") as handle:
        line = handle.readline().rstrip("\n")
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _hosted_backend(cfg: ExperimentConfig) -> Backend:
    if cfg.train.backend == "local":
        raise UserError(
            "--dry-run shows what a hosted backend would upload and send; train.backend is local",
            field="train.backend",
            fix="set train.backend=predibase|openai|together, or see the local memory estimate with sectune plan",
        )
    return make_backend(cfg)


# ---------------------------------------------------------------- the run


def run_hosted(
    cfg: ExperimentConfig,
    dataset: str | Path,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cancel_on_interrupt: bool = False,
    ask: Ask = ask_on_terminal,
) -> Path:
    """Train on the hosted service ``cfg.train.backend`` and publish the run folder ``out``."""
    from sectune.train.run import is_finished, open_session, start_work_dir

    out = Path(out)
    if resume and is_finished(out):
        log.info("%s is already a finished run: nothing to do", out)
        return out
    backend = _hosted_backend(cfg)
    session = open_session(cfg, dataset, out, resume=resume, overwrite=overwrite)
    train, validation, test = read_dataset(session.dataset)
    with tempfile.TemporaryDirectory(prefix="sectune-upload-") as tmp:
        plan = backend.plan(cfg, {"train": train, "validation": validation}, Path(tmp))  # refusals: nothing sent
        key = _require_key(backend)
        require_sdk(backend.sdk, backend.name)
        with track("train", unit="steps") as progress:
            _guarded(lambda: backend.connect(key), backend, "connection", key)
            _guarded(lambda: backend.check(plan), backend, "check", key)  # a refusal (exit 2): nothing uploaded
            start_work_dir(session)
            job = _attach_or_create(backend, plan, session.work, progress, resume=resume, key=key)
            state = _follow(backend, job, cfg, progress, cancel_on_interrupt=cancel_on_interrupt, ask=ask, key=key)
            progress.update(note="downloading the result")
            outcome = _guarded(lambda: backend.collect(job["job_id"], state, session.work), backend, "download", key)
    rows = {"train": len(train), "validation": len(validation), "test": len(test)}
    _write_results(Finished(session, cfg, plan, job, state, outcome, rows))
    return _publish(session)


def _require_key(backend: Backend) -> str:
    key = api_key_from_env(backend.key_env)
    if not key:
        raise UserError(
            f"no API key for {backend.name}",
            field=backend.key_env,
            fix=f"export {backend.key_env}=... or put it in .env (it is never written to the run folder)",
        )
    return key


def _attach_or_create(
    backend: Backend, plan: Plan, work: Path, progress: Tracker, *, resume: bool, key: str
) -> dict[str, Any]:
    """The job of this run: the one recorded in the run folder (``--resume``), else a new one."""
    recorded = read_record(work, JOB_FILE) if resume else None
    if recorded is not None:
        progress.write(f"train: re-attaching to {backend.name} job {recorded['job_id']} (no new job)")
        return recorded
    uploaded = read_record(work, UPLOAD_FILE) if resume else None
    fingerprint = fingerprint_files(sorted({f.path for f in plan.files}))
    if uploaded is None or uploaded.get("fingerprint") != fingerprint:
        progress.update(note=f"uploading {sum(f.rows for f in plan.files)} rows to {backend.name}")
        file_ids = _guarded(lambda: backend.upload(plan), backend, "upload", key)
        write_record(work, UPLOAD_FILE, {"fingerprint": fingerprint, "file_ids": file_ids})
    else:
        file_ids = uploaded["file_ids"]
    progress.update(note=f"creating the {backend.name} job")
    job_id = _guarded(lambda: backend.create(plan, file_ids), backend, "job creation", key)
    job = {
        "backend": backend.name,
        "job_id": job_id,
        "created_at": _now(),
        "created_unix": time.time(),
        "provider_base_model": plan.base_model,
        "file_ids": file_ids,
        "endpoint": backend.endpoint(),
    }
    write_record(work, JOB_FILE, job)  # at once: a kill from here on re-attaches instead of paying twice
    estimate = getattr(backend, "estimated_cost", None)
    if estimate is not None:
        job["provider_estimated_cost_usd"] = _guarded(lambda: estimate(plan, file_ids), backend, "estimate", key)
        write_record(work, JOB_FILE, job)
    progress.write(f"train: {backend.name} job {job_id} created (recorded in {JOB_FILE})")
    return job


def _guarded(call: Callable[[], Any], backend: Backend, what: str, key: str) -> Any:
    """Run one provider call; its failure becomes one line with the provider's own words (key removed)."""
    try:
        return call()
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise HostedJobError(
            f"{backend.name} {what} failed: {redact(str(exc), key)}",
            field=f"train.backend={backend.name}",
            fix="see the provider's message above; sectune train --resume re-attaches to a job that exists",
        ) from None


# ---------------------------------------------------------------- following


def _follow(
    backend: Backend,
    job: dict[str, Any],
    cfg: ExperimentConfig,
    progress: Tracker,
    *,
    cancel_on_interrupt: bool,
    ask: Ask,
    key: str,
) -> JobState:
    """Poll until the job ends; one line per change; a failure, cancel or timeout is a HostedJobError."""
    job_id, hosted = job["job_id"], cfg.train.hosted
    started = time.monotonic()
    last_line = ""
    try:
        while True:
            state = _guarded(lambda: backend.poll(job_id), backend, "status check", key)
            if state.cost_usd is None:
                state.estimated_cost_usd = job.get("provider_estimated_cost_usd")
            line = status_line(backend.name, job_id, state, time.time() - job["created_unix"])
            if line != last_line:
                progress.write(line)
                last_line = line
            if state.total_steps:
                progress.update(state.step or 0, total=int(state.total_steps), note=state.status)
            else:
                progress.update(note=state.status)
            if state.phase in FINAL_PHASES:
                return _ended(backend, job_id, state, key)
            if hosted.timeout_s is not None and time.monotonic() - started > hosted.timeout_s:
                raise HostedJobError(
                    f"{backend.name} job {job_id} still '{state.status}' after {hosted.timeout_s:g} s; "
                    "it keeps running at the provider",
                    field="train.hosted.timeout_s",
                    fix="re-attach with sectune train --resume (same --out), or raise train.hosted.timeout_s",
                )
            time.sleep(hosted.poll_s)
    except KeyboardInterrupt:
        _interrupted(backend, job_id, progress, cancel_on_interrupt=cancel_on_interrupt, ask=ask, key=key)
        raise


def _ended(backend: Backend, job_id: str, state: JobState, key: str) -> JobState:
    if state.phase == "succeeded":
        return state
    said = redact(state.error or f"status {state.status}", key)
    raise HostedJobError(
        f"{backend.name} job {job_id} {state.phase}: {said}",
        field=f"train.backend={backend.name}",
        fix="fix what the provider says, then sectune train --overwrite starts a new job",
    )


def _interrupted(
    backend: Backend, job_id: str, progress: Tracker, *, cancel_on_interrupt: bool, ask: Ask, key: str
) -> None:
    """Ctrl-C: cancel the remote job when asked to (--cancel-on-interrupt, or yes at the prompt)."""
    if cancel_on_interrupt or ask(f"cancel the remote {backend.name} job {job_id}?"):
        _guarded(lambda: backend.cancel(job_id), backend, "cancellation", key)
        raise HostedJobError(
            f"interrupted: {backend.name} job {job_id} cancelled",
            field="--cancel-on-interrupt" if cancel_on_interrupt else None,
            fix="sectune train --overwrite starts a new job",
        ) from None
    progress.write(f"train: {backend.name} job {job_id} keeps running; sectune train --resume (same --out) re-attaches")


def status_line(service: str, job_id: str, state: JobState, elapsed_s: float) -> str:
    """``predibase job 4f2… · training · step 30/90 · loss 1.234 · 2m05s · $0.42``: what is reported, no more."""
    parts = [f"{service} job {job_id}", state.status]
    if state.step is not None:
        parts.append(f"step {state.step}" + (f"/{state.total_steps}" if state.total_steps else ""))
    if state.loss is not None:
        parts.append(f"loss {state.loss:.4g}")
    parts.append(_duration(elapsed_s))
    if state.cost_usd is not None:
        parts.append(f"${state.cost_usd:.2f}")
    elif state.estimated_cost_usd is not None:
        parts.append(f"~${state.estimated_cost_usd:.2f} estimated")
    return " · ".join(parts)


def _duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


# ---------------------------------------------------------------- the run folder


@dataclass(frozen=True)
class Finished:
    """Everything a finished hosted job leaves for the run folder."""

    session: Session
    cfg: ExperimentConfig
    plan: Plan
    job: dict[str, Any]
    state: JobState
    outcome: Outcome
    rows: dict[str, int]


def _write_results(done: Finished) -> None:
    session, plan, outcome, work = done.session, done.plan, done.outcome, done.session.work
    if outcome.adapter is None and outcome.endpoint and outcome.model_id:
        write_json(
            work / ENDPOINT_FILE,
            {
                "backend": plan.backend,
                "endpoint": outcome.endpoint,
                "model": outcome.model_id,
                "api_key_env": _key_env(plan.backend),
                "note": f"{plan.backend} keeps the weights: sectune eval/chat ask this endpoint for this model",
            },
        )
    _write_template(session, work)
    write_run_metadata(work, done.cfg, hosted_summary(done))


def _key_env(backend: str) -> str:
    return {"openai": "OPENAI_API_KEY", "together": "TOGETHER_API_KEY", "predibase": "PREDIBASE_API_TOKEN"}[backend]


def _write_template(session: Session, work: Path) -> None:
    """The family's template (what the provider applied: sectune's renders byte-identically) for later loads."""
    from sectune.models.load import RUN_TEMPLATE
    from sectune.registry.models import REGISTRY

    spec = REGISTRY.get(session.model_ref)
    if spec is not None:
        (work / RUN_TEMPLATE).write_text(spec.template_path.read_text(encoding="utf-8"), encoding="utf-8")


def hosted_summary(done: Finished) -> dict[str, Any]:
    """summary.json of a hosted run: the job, its timings, losses and cost, and where the result is."""
    session, cfg, plan, job, state, outcome = done.session, done.cfg, done.plan, done.job, done.state, done.outcome
    finished = time.time()
    history = [{"step": step, "loss": loss} for step, loss in state.losses]
    cost, cost_from = state.cost_usd, "provider" if state.cost_usd is not None else None
    if cost is None and job.get("provider_estimated_cost_usd") is not None:
        cost, cost_from = job["provider_estimated_cost_usd"], "provider's estimate before the job"
    if cost is None and plan.estimated_cost_usd is not None:
        cost, cost_from = plan.estimated_cost_usd, "sectune's estimate (price table x estimated tokens)"
    return {
        "backend": plan.backend,
        "job_id": job["job_id"],
        "job_status": state.status,
        "base_model": session.model_ref if outcome.adapter is not None else plan.base_model,
        "provider_base_model": plan.base_model,
        "method": cfg.train.method,
        "request": plan.payload,
        "notes": plan.notes,
        "created_at": job["created_at"],
        "finished_at": _now(),
        "job_runtime_s": round(finished - job["created_unix"], 1),
        "global_step": state.step,
        "total_steps": state.total_steps,
        "final_train_loss": state.losses[-1][1] if state.losses else state.loss,
        "eval_loss": None,
        "log_history": history,
        "cost_usd": cost,
        "cost_from": cost_from,
        "result": {
            "adapter": "adapter" if outcome.adapter is not None else None,
            "model_id": outcome.model_id,
            "endpoint": outcome.endpoint,
            "weights": "downloaded into adapter/" if outcome.adapter is not None else "hosted only (endpoint.json)",
        },
        "rows": done.rows,
        "dataset": str(session.dataset),
        "data_fingerprint": fingerprint_files(dataset_files(session.dataset)),
    }


def _publish(session: Session) -> Path:
    import shutil

    if session.out.exists():
        shutil.rmtree(session.out)
    session.work.rename(session.out)
    return session.out
