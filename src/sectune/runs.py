"""Run folders: every output folder describes itself (config, fingerprint, versions, summary).

Stages write into a temporary sibling and rename it into place only on success, so a failed
or rejected run never leaves a partial output folder behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from sectune.errors import UserError

TRACKED_PACKAGES = (
    "sectune",
    "torch",
    "transformers",
    "peft",
    "trl",
    "accelerate",
    "datasets",
    "bitsandbytes",
    "tokenizers",
    "openai",
)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block succeeds."""
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError("output folder already exists", file=out, fix="choose another --out or pass --overwrite")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)


def write_json(path: str | Path, data: Any) -> None:
    """Write JSON atomically (temp file + rename), sorted keys, UTF-8."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_config(folder: str | Path, config: Any) -> Path:
    """Write the resolved config (a pydantic model or a dict) as ``config.yaml``."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    path = Path(folder) / "config.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def versions() -> dict[str, str]:
    """Python, platform and installed versions of the packages that shape a result."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in TRACKED_PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    rev = git_revision()
    if rev:
        found["git_revision"] = rev
    return found


def git_revision() -> str | None:
    """The git revision of the sectune checkout, when running from one."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def fingerprint_files(paths: Iterable[str | Path]) -> str:
    """A sha256 over the names and bytes of files (folders are walked in sorted order)."""
    digest = hashlib.sha256()
    for path in sorted(Path(p) for p in paths):
        files = sorted(f for f in path.rglob("*") if f.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.name.encode())
            with file.open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def write_run_metadata(folder: str | Path, config: Any, summary: dict[str, Any]) -> None:
    """Write config.yaml, summary.json and versions.json into a run folder."""
    folder = Path(folder)
    write_config(folder, config)
    write_json(folder / "summary.json", summary)
    write_json(folder / "versions.json", versions())
