"""Each tracking backend writes its files under the run folder, with no network connection."""

from __future__ import annotations

import os
import socket

import pytest

from sectune.train.api import train
from sectune.train.tracking import tracking_env


@pytest.fixture
def no_network(monkeypatch):
    """Refuse every connection that is not to this machine (loopback or a unix socket)."""
    real_connect = socket.socket.connect
    attempts = []

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else "unix"
        if host not in ("unix", "127.0.0.1", "::1", "localhost"):
            attempts.append(address)
            raise OSError(f"network access in a test: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    return attempts


def test_every_backend_writes_locally(tiny_config, train_only_dataset, tmp_path, no_network, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # sectune must set offline mode itself
    monkeypatch.setenv("WANDB_API_KEY", "")
    cfg = tiny_config("train.report_to=[tensorboard, mlflow, wandb]", "train.max_steps=2")
    out = train(cfg, train_only_dataset, tmp_path / "tracked")
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    assert list((out / "mlruns").rglob("metrics/loss")) or list((out / "mlruns").rglob("*.db"))
    assert list((out / "wandb").rglob("offline-run-*"))
    assert no_network == []
    assert "WANDB_MODE" not in os.environ and "MLFLOW_TRACKING_URI" not in os.environ  # environment restored


def test_tracking_env_is_private_and_restored(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example")
    with tracking_env(tmp_path, ["mlflow", "wandb"], "exp"):
        assert os.environ["MLFLOW_TRACKING_URI"].startswith("sqlite:///" + str(tmp_path.resolve()))
        assert os.environ["WANDB_MODE"] == "offline"
        assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true" and os.environ["DO_NOT_TRACK"] == "true"
    assert os.environ["MLFLOW_TRACKING_URI"] == "http://tracking.example"
