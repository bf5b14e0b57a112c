"""API keys: read from the environment or a ``.env`` file, never logged or written anywhere."""

from __future__ import annotations

import os
from pathlib import Path

_loaded = False


def load_dotenv_once(path: str | Path | None = None) -> None:
    """Load ``.env`` from the working directory (or ``path``) without overriding variables already set."""
    global _loaded
    if _loaded and path is None:
        return
    from dotenv import load_dotenv

    load_dotenv(dotenv_path=path or Path.cwd() / ".env", override=False)
    _loaded = True


def api_key_from_env(var: str) -> str | None:
    """The key stored in environment variable ``var`` (after loading ``.env``), or None."""
    load_dotenv_once()
    value = os.environ.get(var)
    return value or None


def redact(text: str, *secrets: str | None) -> str:
    """Replace every secret in ``text`` (error messages may echo headers)."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
