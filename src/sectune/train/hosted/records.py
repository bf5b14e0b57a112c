"""The files a hosted run keeps in its run folder (no key is ever written: only ids, names and URLs).

``hosted_job.json`` is written the moment the remote job exists, so a killed ``sectune train`` resumed with
``--resume`` re-attaches to that job instead of paying for another; ``hosted_upload.json`` keeps the uploaded
file ids so a resume before the job existed does not upload again. ``endpoint.json`` (a finished run whose
weights stay with the provider) tells ``sectune eval`` and ``chat`` which endpoint and model to ask.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.runs import is_finished, read_json, write_json

JOB_FILE = "hosted_job.json"
UPLOAD_FILE = "hosted_upload.json"
ENDPOINT_FILE = "endpoint.json"


def read_record(work: Path, name: str) -> dict[str, Any] | None:
    path = work / name
    return read_json(path) if path.is_file() else None


def write_record(work: Path, name: str, data: dict[str, Any]) -> None:
    write_json(work / name, data)  # atomic: a kill leaves the old file or the new one, never half of one


@dataclass(frozen=True)
class HostedEndpoint:
    """Where a finished hosted run's model answers: an OpenAI-compatible chat endpoint, the model id there, and
    the environment variable that holds the key to ask it (the key itself is never in the run folder)."""

    backend: str
    url: str
    model: str
    key_env: str


def is_hosted_run(folder: str | Path) -> bool:
    """A finished run whose model is served by a provider (endpoint.json) rather than stored here."""
    return is_finished(folder) and (Path(folder) / ENDPOINT_FILE).is_file()


def hosted_endpoint(folder: str | Path) -> HostedEndpoint | None:
    """The endpoint of a finished hosted run without weights (endpoint.json), else None."""
    folder = Path(folder).expanduser()
    if not is_hosted_run(folder):
        return None
    record = read_json(folder / ENDPOINT_FILE)
    return HostedEndpoint(
        str(record["backend"]), str(record["endpoint"]), str(record["model"]), str(record["api_key_env"])
    )
