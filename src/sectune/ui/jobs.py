"""Long work as a background ``sectune`` process: the same command line as the CLI, writing its run folder.

A job is ``python -m sectune --progress plain STAGE ARGS`` in its own session (closing the browser, reloading the
page or stopping the UI server leaves it running), its output in ``jobs/ID.log`` and a record in ``jobs/ID.json``
(command line, output folder, pid). The record never holds a secret: an API key typed into the UI reaches the
process only through its environment (``secret_env``), under a variable the command line names
(``--set generate.api_key_env=...``). Pages find a stage's latest job from the records and follow its folder, so
every tab and every reload shows the same live job.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import asdict, dataclass
from pathlib import Path

from sectune.progress import INTERRUPTIBLE
from sectune.runs import is_finished, write_json
from sectune.ui.workspace import Workspace

_CHILDREN: dict[int, subprocess.Popen] = {}  # jobs this UI process started: polled, so none stays a zombie


@dataclass
class Job:
    id: str
    stage: str
    args: list[str]  # after `sectune --progress plain STAGE`
    out: str
    pid: int
    started: float
    log: str
    stopped: bool = False

    @property
    def record(self) -> Path:
        return Path(self.log).with_suffix(".json")


def start_job(
    ws: Workspace, stage: str, args: list[str], out: str | Path, *, secret_env: dict[str, str] | None = None
) -> Job:
    """Start ``sectune STAGE ARGS`` in the background; its run folder is ``out``."""
    job_id = f"{stage}-{time.strftime('%Y%m%d-%H%M%S')}-{time.monotonic_ns() % 10**6:06d}"
    log = ws.folder("jobs") / f"{job_id}.log"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", INTERRUPTIBLE: "1", **(secret_env or {})}
    command = [sys.executable, "-m", "sectune", "--progress", "plain", stage, *args]
    with log.open("w", encoding="utf-8") as handle:
        process = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    _CHILDREN[process.pid] = process
    job = Job(job_id, stage, list(args), str(out), process.pid, time.time(), str(log))
    write_json(job.record, asdict(job))
    return job


def jobs_of(ws: Workspace, stage: str | None = None) -> list[Job]:
    """The recorded jobs (of one stage), newest first."""
    jobs = []
    for record in ws.folder("jobs").glob("*.json"):
        try:
            job = Job(**json.loads(record.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            continue  # a record being written, or not ours
        if stage is None or job.stage == stage:
            jobs.append(job)
    return sorted(jobs, key=lambda job: job.started, reverse=True)


def latest_job(ws: Workspace, stage: str, out: str | Path | None = None) -> Job | None:
    """The newest job of ``stage`` (writing ``out``, when given)."""
    for job in jobs_of(ws, stage):
        if out is None or Path(job.out) == Path(out):
            return job
    return None


def is_running(job: Job) -> bool:
    child = _CHILDREN.get(job.pid)
    if child is not None:
        return child.poll() is None
    try:  # started by an earlier UI process: alive, and the very process of the record (pids are reused)
        import psutil

        process = psutil.Process(job.pid)
        return process.status() != psutil.STATUS_ZOMBIE and process.create_time() <= job.started + 5
    except Exception:  # no such process, or no access to it
        return False


def state_of(job: Job) -> tuple[str, str]:
    """(state, one line): running, finished, stopped or failed (with the error line the command printed)."""
    if is_running(job):
        return "running", last_line(job) or "starting"
    out = Path(job.out)
    done = out.is_file() if job.stage == "topics" else is_finished(out)
    error = error_line(job)
    if done and error is None:
        return "finished", last_line(job)
    if job.stopped:
        return "stopped", "stopped from the UI" + (" (resume it to continue)" if job.stage != "topics" else "")
    return "failed", error or last_line(job) or "the process ended without a result"


def stop_job(job: Job) -> None:
    """Interrupt the job like Ctrl-C (the stage cleans up; generate and train keep what a resume needs)."""
    job.stopped = True
    write_json(job.record, asdict(job))
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(job.pid, signal.SIGINT)


def wait(job: Job, timeout_s: float) -> bool:
    """Wait until the job ends (tests and scripts); True when it did."""
    end = time.monotonic() + timeout_s
    while is_running(job):
        if time.monotonic() > end:
            return False
        time.sleep(0.1)
    return True


def log_tail(job: Job, lines: int = 15) -> list[str]:
    try:
        with open(job.log, encoding="utf-8", errors="replace") as handle:
            return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]
    except OSError:
        return []


def last_line(job: Job) -> str:
    tail = [line for line in log_tail(job, 5) if line.strip()]
    return tail[-1] if tail else ""


def error_line(job: Job) -> str | None:
    """The CLI's one-line error (``error: ...``), when the command printed one."""
    errors = [line for line in log_tail(job, 40) if line.startswith("error:")]
    return errors[-1] if errors else None
