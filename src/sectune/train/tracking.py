"""Experiment tracking, all of it local: TensorBoard, MLflow (file store), W&B (offline). No telemetry.

transformers' callbacks read their settings from environment variables; ``tracking_env`` sets them to
folders inside the run for the duration of training and restores the previous values afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

# Where each backend writes inside the run folder (documented in docs/train.md).
TRACKING_DIRS = {"tensorboard": "tensorboard", "mlflow": "mlruns", "wandb": "wandb"}

# Always set while training: nothing reaches the network, no usage telemetry.
PRIVACY_ENV = {
    "WANDB_MODE": "offline",
    "WANDB_SILENT": "true",
    "WANDB_DISABLE_GIT": "true",
    "WANDB_DISABLE_CODE": "true",
    "WANDB_LOG_MODEL": "false",
    "WANDB_WATCH": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DISABLE_MLFLOW_INTEGRATION": "FALSE",
}


def tracking_vars(run_dir: Path, backends: Sequence[str], experiment: str) -> dict[str, str]:
    """The environment the chosen backends need to log under ``run_dir``."""
    env = dict(PRIVACY_ENV)
    if "tensorboard" in backends:
        env["TENSORBOARD_LOGGING_DIR"] = str(run_dir / TRACKING_DIRS["tensorboard"])
    if "mlflow" in backends:
        store = (run_dir / TRACKING_DIRS["mlflow"]).resolve()
        store.mkdir(parents=True, exist_ok=True)
        env["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"  # the file store is deprecated in MLflow 3
        env["MLFLOW_EXPERIMENT_NAME"] = experiment
        env["HF_MLFLOW_LOG_ARTIFACTS"] = "FALSE"
    if "wandb" in backends:
        (run_dir / TRACKING_DIRS["wandb"]).mkdir(parents=True, exist_ok=True)
        env["WANDB_DIR"] = str(run_dir / TRACKING_DIRS["wandb"])
        env["WANDB_PROJECT"] = experiment
    return env


@contextlib.contextmanager
def tracking_env(run_dir: Path, backends: Sequence[str], experiment: str) -> Iterator[None]:
    """Set the tracking variables while the block runs; restore the caller's environment afterwards."""
    wanted = tracking_vars(run_dir, backends, experiment)
    saved = {key: os.environ.get(key) for key in wanted}
    os.environ.update(wanted)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
