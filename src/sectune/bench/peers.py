"""Peer tools in venvs of their own: created once under the bench cache, reused while the pin is the same.

    env = peer_env(ctx.cache, Peer("deepfabric", "4.13.0"), say=ctx.say)   # PeerUnavailable: why not
    result = env.run([script, "--flag", "value"], timeout=300)

A peer never shares sectune's venv (their pins clash: deepfabric pins transformers, curator pins litellm), and
a peer's venv never sees sectune. ``installed_version`` asks the venv itself, so a venv left half-installed by
an interrupted run is rebuilt rather than trusted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

INSTALL_TIMEOUT_S = 1200  # a cold install of a peer with its dependencies: a few minutes on 2 cores
VERSION_PROBE = "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))"
# What every peer run gets: no telemetry, no hub, no update checks (the bench machine may have no network).
QUIET_ENV = {
    "TELEMETRY_ENABLED": "false",  # bespokelabs-curator's PostHog client
    "ANONYMIZED_TELEMETRY": "False",  # deepfabric's PostHog client
    "DEEPFABRIC_TESTING": "True",  # deepfabric: no telemetry either
    "DO_NOT_TRACK": "1",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # litellm (under curator) fetches its price map at import otherwise
    "PYTHONUNBUFFERED": "1",
}


class PeerUnavailable(Exception):
    """A peer that cannot be installed or run here; the message is the one-line reason for the table."""


@dataclass(frozen=True)
class Peer:
    """A PyPI distribution at an exact version (the bench compares against that version, recorded)."""

    dist: str  # the PyPI name, e.g. "bespokelabs-curator"
    version: str  # exact: a peer's figure means nothing without it

    @property
    def pin(self) -> str:
        return f"{self.dist}=={self.version}"

    @property
    def label(self) -> str:
        return f"{self.dist} {self.version}"


@dataclass(frozen=True)
class PeerEnv:
    """An installed peer venv."""

    peer: Peer
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def run(
        self,
        args: Sequence[str | Path],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``python args…`` in the peer's venv with QUIET_ENV (plus ``env``); output captured, no check."""
        full_env = {**_clean_environ(), **QUIET_ENV, **(env or {})}
        return subprocess.run(
            [str(self.python), *map(str, args)],
            env=full_env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


def venv_dir(cache: Path, peer: Peer) -> Path:
    return cache / "venvs" / f"{peer.dist}-{peer.version}"


def installed_version(root: Path, dist: str) -> str | None:
    """The version of ``dist`` that the venv at ``root`` has installed, or None (no venv, not installed)."""
    python = root / "bin" / "python"
    if not python.is_file():
        return None
    probe = subprocess.run(
        [str(python), "-c", VERSION_PROBE, dist], capture_output=True, text=True, timeout=60, check=False
    )
    if probe.returncode != 0:
        return None
    return probe.stdout.strip() or None


def peer_env(
    cache: Path,
    peer: Peer,
    *,
    install: bool = True,
    say: Callable[[str], None] = print,
    timeout_s: float = INSTALL_TIMEOUT_S,
) -> PeerEnv:
    """The venv of ``peer`` under ``cache``: reused when it has exactly ``peer.version``, else (re)built.

    ``install=False`` (quick runs) never builds one: a missing venv is a PeerUnavailable saying so.
    """
    root = venv_dir(cache, peer)
    found = installed_version(root, peer.dist)
    if found == peer.version:
        return PeerEnv(peer, root)
    if not install:
        state = f"has {found}" if found else "is not installed"
        raise PeerUnavailable(f"skipped: {peer.pin} {state} in {root} (quick runs install nothing)")
    say(f"installing {peer.pin} into {root} (once; minutes) …")
    _build(root, peer, timeout_s)
    found = installed_version(root, peer.dist)
    if found != peer.version:
        raise PeerUnavailable(f"{peer.pin}: the venv reports version {found} after installing")
    return PeerEnv(peer, root)


def _build(root: Path, peer: Peer, timeout_s: float) -> None:
    if root.exists():
        shutil.rmtree(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    log = root.parent / f"{root.name}.install.log"
    steps = [
        [sys.executable, "-m", "venv", str(root)],
        [str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", peer.pin],
    ]
    with log.open("w", encoding="utf-8") as out:
        for step in steps:
            try:
                done = subprocess.run(step, stdout=out, stderr=subprocess.STDOUT, timeout=timeout_s, check=False)
            except subprocess.TimeoutExpired:
                raise PeerUnavailable(f"installing {peer.pin} took over {timeout_s:.0f} s (log: {log})") from None
            if done.returncode != 0:
                raise PeerUnavailable(f"{' '.join(step[-3:])} failed (exit {done.returncode}; log: {log})")


def _clean_environ() -> dict[str, str]:
    """This process's environment without what ties a child to sectune's venv (a peer has its own)."""
    drop = {"VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP"}
    return {key: value for key, value in os.environ.items() if key not in drop}
