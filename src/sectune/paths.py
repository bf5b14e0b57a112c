"""Where sectune keeps its caches (overridable with SECTUNE_CACHE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The user cache folder, e.g. ~/.cache/sectune."""
    env = os.environ.get("SECTUNE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("sectune", appauthor=False))
