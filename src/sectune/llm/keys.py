"""API keys: read from the environment or a ``.env`` file, never logged or written anywhere."""

from __future__ import annotations

import os
import re
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


# Tokens that look like credentials whoever they belong to: "Bearer <token>" and "sk-..." style API keys.
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{4,}")
_TOKEN = re.compile(r"\b(sk)-[A-Za-z0-9_-]{6,}")
FRAGMENT = 4  # any run of this many characters of a key (or more) is a part of it


def redact(text: str, *secrets: str | None) -> str:
    """``text`` without any part of a secret: fit to store or print (error messages may echo headers or keys).

    Every run of :data:`FRAGMENT` or more characters of a secret is replaced by ``***``, in any letter case (a
    server answering "key ending in ...abcd" or echoing it lower-cased), and so are bearer tokens and
    ``sk-...`` style keys, known or not.
    """
    text = _BEARER.sub(r"\1 ***", text)
    text = _TOKEN.sub(r"\1-***", text)
    for secret in secrets:
        if secret:
            text = _mask_fragments(text, secret)
    return text


def _mask_fragments(text: str, secret: str) -> str:
    if len(secret) < FRAGMENT:
        return text.replace(secret, "***")
    lowered, key = text.lower(), secret.lower()
    grams = {key[i : i + FRAGMENT] for i in range(len(key) - FRAGMENT + 1)}
    hidden = [False] * len(text)
    for i in range(len(text) - FRAGMENT + 1):
        if lowered[i : i + FRAGMENT] in grams:
            hidden[i : i + FRAGMENT] = [True] * FRAGMENT
    if not any(hidden):
        return text
    out: list[str] = []
    for i, char in enumerate(text):
        if not hidden[i]:
            out.append(char)
        elif i == 0 or not hidden[i - 1]:
            out.append("***")
    return "".join(out)
