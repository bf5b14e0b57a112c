"""Run folders: every output folder describes itself (config, fingerprint, versions, summary).

One contract for every stage's output folder, in one of three ways of getting there:

- **hidden sibling** (prep, eval, the study's report): :func:`atomic_output_dir` builds ``.OUT.tmp-PID``
  and renames it to ``OUT`` only when the block succeeds, so a failed or rejected run leaves no ``OUT``;
- **partial sibling** (train): the run is built, checkpoints included, in ``OUT.partial/`` (its resume
  state) and renamed to ``OUT`` once training, saving and the checks succeeded;
- **marker in place** (generate): the folder is its own resume state; an ``INCOMPLETE`` file is written
  first and removed when the run ends (a budget or auth stop keeps it).

In each, ``summary.json`` is the last file written (:func:`write_run_metadata`; generate then removes its
marker). :func:`is_finished` is the one "is it done?" test: summary.json present and no ``INCOMPLETE``
marker; a kind may require more (a train run also needs adapter/ or model/: ``needs_one_of``, used by
``sectune.models.load.is_train_run`` and ``sectune.train.api.is_finished``). Every stage, the study and the
demo decide "reuse or (re)run" with it.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Sequence
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


SUMMARY_FILE = "summary.json"  # written last: a folder holding it (and no marker) is finished
INCOMPLETE_MARKER = "INCOMPLETE"  # in a folder written in place (generate) until the run has ended


def is_finished(folder: str | Path, *, needs_one_of: Sequence[str] = ()) -> bool:
    """True when ``folder`` holds a finished run of any stage: summary.json present, no INCOMPLETE marker.

    ``needs_one_of`` names sub-folders of which at least one must exist too (a train run: adapter or model).
    """
    folder = Path(folder)
    return (
        (folder / SUMMARY_FILE).is_file()
        and not (folder / INCOMPLETE_MARKER).exists()
        and (not needs_one_of or any((folder / name).is_dir() for name in needs_one_of))
    )


TMP_TAG, OLD_TAG = ".tmp-", ".old-"  # hidden siblings: ``.OUT.tmp-PID`` (being built), ``.OUT.old-PID`` (replaced)


@contextlib.contextmanager
def atomic_output_dir(out: str | Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder that becomes ``out`` only if the block succeeds.

    Hidden siblings that a killed run left behind are removed first; a failure (also while replacing an
    existing ``out`` under ``overwrite``) removes the temporary folder and keeps the old ``out``.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise UserError("output folder already exists", file=out, fix="choose another --out or pass --overwrite")
    with user_path(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_siblings(out)
        tmp = hidden_sibling(out, TMP_TAG)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    try:
        yield tmp
        with user_path(out):
            _replace(out, tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def hidden_sibling(out: Path, tag: str, pid: int | None = None) -> Path:
    return out.parent / f".{out.name}{tag}{pid or os.getpid()}"


def _replace(out: Path, tmp: Path) -> None:
    """tmp → out; an existing out is moved aside first and put back if the rename fails."""
    old = hidden_sibling(out, OLD_TAG) if out.exists() else None
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def remove_stale_siblings(out: Path) -> list[Path]:
    """Remove the hidden siblings of ``out`` whose process is gone (a killed run); return what was removed."""
    removed = []
    for tag in (TMP_TAG, OLD_TAG):
        for sibling in out.parent.glob(f".{glob.escape(out.name)}{tag}*"):
            pid = sibling.name.rsplit(tag, 1)[-1]
            if not pid.isdigit() or _process_alive(int(pid)):
                continue
            if tag == OLD_TAG and not out.exists():
                sibling.rename(out)  # killed between moving the old folder aside and publishing: put it back
                continue
            if sibling.is_dir():
                shutil.rmtree(sibling, ignore_errors=True)
            else:
                sibling.unlink(missing_ok=True)
            removed.append(sibling)
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers from an earlier attempt in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's live process
    return True


@contextlib.contextmanager
def user_path(path: str | Path, *, action: str = "write") -> Iterator[None]:
    """Turn an OS error on a user's path (a file where a folder should be, no permission, read-only disk,
    a full disk) into a one-line UserError naming the path and the fix."""
    try:
        yield
    except OSError as exc:
        raise os_error(exc, path, action=action) from exc


OS_FIXES = {
    errno.EACCES: "check its permissions or choose another path",
    errno.EPERM: "check its permissions or choose another path",
    errno.EROFS: "the disk is read-only: choose a writable path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
    errno.EISDIR: "it is a folder: pass a file",
    errno.ENOENT: "check the path",
    errno.ENOSPC: "the disk is full: free space or choose another path",
    errno.EEXIST: "a file of that name is in the way: choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


def os_error(exc: OSError, path: str | Path | None = None, *, action: str = "use") -> UserError:
    """The UserError for an OSError on a user's path (its own filename when it has one)."""
    where = exc.filename or path
    reason = exc.strerror or type(exc).__name__
    return UserError(
        f"cannot {action} this path: {reason.lower()}",
        file=where,
        fix=OS_FIXES.get(exc.errno or 0, "check the path and its permissions"),
    )


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
    """Write config.yaml, versions.json and, last, summary.json into a run folder."""
    folder = Path(folder)
    write_config(folder, config)
    write_json(folder / "versions.json", versions())
    write_json(folder / SUMMARY_FILE, summary)
