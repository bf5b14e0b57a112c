"""Push an exported model folder to the Hugging Face Hub (``sectune export --push-to-hub REPO``).

The token comes only from the environment or ``.env`` (``HF_TOKEN``) and is never printed; ``--dry-run``
lists what would be uploaded and sends nothing. Uploads go through ``huggingface_hub`` (``upload_folder``:
chunked, resumable, LFS for the weights).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sectune.errors import UserError

TOKEN_ENV = "HF_TOKEN"
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Upload:
    repo: str
    files: list[tuple[str, int]]  # (path in the repo, bytes)
    url: str | None = None  # the commit's URL once pushed

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


def planned_files(folder: str | Path) -> list[tuple[str, int]]:
    """Every file under ``folder`` but hidden ones (editor or OS leftovers), as the Hub will hold them."""
    root = Path(folder)
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append((relative.as_posix(), path.stat().st_size))
    return files


def check_push(repo: str, *, dry_run: bool = False) -> None:
    """Fail before any work when the push would fail: a bad repo id, or (really pushing) no token or offline."""
    if not REPO_ID.match(repo):
        raise UserError(f"'{repo}' is not a Hub repo id", field="--push-to-hub", fix="write it as OWNER/NAME")
    if not dry_run:
        _token()


def push_to_hub(
    folder: str | Path, repo: str, *, private: bool = True, dry_run: bool = False, api: Any = None
) -> Upload:
    """Upload ``folder`` to model repo ``repo`` (created private when it does not exist)."""
    check_push(repo, dry_run=True)
    files = planned_files(folder)
    if dry_run:
        return Upload(repo, files)
    token = _token()
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    try:
        api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        commit = api.upload_folder(
            repo_id=repo,
            folder_path=str(folder),
            repo_type="model",
            ignore_patterns=[".*", "**/.*"],
            commit_message="Upload a model exported by sectune",
        )
    except Exception as exc:
        from sectune.llm.keys import redact

        message = redact(f"{type(exc).__name__}: {exc}", token).splitlines()[0]
        raise UserError(
            f"upload failed: {message}", field="--push-to-hub", fix="check the repo name and the token's rights"
        ) from None
    return Upload(repo, files, getattr(commit, "commit_url", None) or str(commit))


def _token() -> str:
    from sectune.llm.keys import api_key_from_env

    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes"}:
        raise UserError(
            "HF_HUB_OFFLINE is set", field="--push-to-hub", fix="unset it to upload, or use --dry-run to list the files"
        )
    token = api_key_from_env(TOKEN_ENV)
    if token is None:
        raise UserError(
            f"no Hub token: {TOKEN_ENV} is not set",
            field="--push-to-hub",
            fix=f"export {TOKEN_ENV}=hf_... (a token with write access) or put it in .env",
        )
    return token
