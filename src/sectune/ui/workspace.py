"""The UI's workspace: one folder per stage, each run a sub-folder written by the CLI as usual.

    WORKSPACE/
      topics/     topic files: built trees (JSONL), uploaded sheets (.xlsx), edited tables (JSONL)
      uploads/    data files uploaded on the Data page
      generate/   generate run folders      datasets/  prep output folders
      runs/       train runs (NAME.partial/ while training)     studies/  study folders
      jobs/       one JSON record and one log per background job

The workspace comes from ``sectune ui --workspace`` (env ``SECTUNE_UI_WORKSPACE``), an optional base config
from ``--config`` (``SECTUNE_UI_CONFIG``): every job and every in-process call starts from that config.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from sectune.errors import UserError
from sectune.runs import is_finished

WORKSPACE_ENV = "SECTUNE_UI_WORKSPACE"
CONFIG_ENV = "SECTUNE_UI_CONFIG"
DEFAULT_WORKSPACE = "sectune-ui"
STAGE_FOLDERS = ("topics", "uploads", "generate", "datasets", "runs", "studies", "jobs")
PARTIAL = ".partial"


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: Path | None = None

    @classmethod
    def from_env(cls) -> Workspace:
        config = os.environ.get(CONFIG_ENV)
        return cls(Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE).resolve(), Path(config) if config else None)

    def folder(self, stage: str) -> Path:
        """The stage's folder (created on first use)."""
        if stage not in STAGE_FOLDERS:
            raise ValueError(f"no workspace folder for {stage!r}: one of {', '.join(STAGE_FOLDERS)}")
        path = self.root / stage
        path.mkdir(parents=True, exist_ok=True)
        return path

    def runs_of(self, stage: str) -> list[Path]:
        """The stage's run folders, newest first (a train run still in OUT.partial/ under its final name)."""
        found: dict[str, Path] = {}
        for path in self.folder(stage).iterdir():
            if path.is_dir() and not path.name.startswith("."):
                name = path.name.removesuffix(PARTIAL)
                found.setdefault(name, path.with_name(name))
        return sorted(found.values(), key=_mtime, reverse=True)

    def finished_runs(self, stage: str) -> list[Path]:
        return [path for path in self.runs_of(stage) if is_finished(path)]

    def topic_files(self) -> list[Path]:
        folder = self.folder("topics")
        files = [p for p in folder.iterdir() if p.suffix.lower() in (".jsonl", ".xlsx", ".xlsm") and p.is_file()]
        return sorted(files, key=_mtime, reverse=True)


def _mtime(path: Path) -> float:
    for candidate in (path, path.with_name(path.name + PARTIAL)):
        if candidate.exists():
            return candidate.stat().st_mtime
    return 0.0


def new_name(prefix: str) -> str:
    """A default run name: ``prefix-YYYYmmdd-HHMMSS``."""
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def safe_name(name: str) -> str:
    """A folder name from what a person typed: letters, digits, ``._-``; never a path."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "-", name.strip()).strip(".-")
    if not cleaned:
        raise UserError("the name is empty", field="name", fix="use letters, digits, '.', '_' or '-'")
    return cleaned
