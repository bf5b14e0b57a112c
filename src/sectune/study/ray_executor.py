"""The study's Ray executor (``study.executor: ray``): each cell of the matrix a Ray task.

A cell (train one variant, unless base, then evaluate it) depends on no other cell and writes only its own
run and evaluation folders, so the cells run as Ray tasks, as many at once as the cluster's CPUs and GPUs
allow (``study.ray_num_cpus`` / ``study.ray_num_gpus`` per task). The driver gathers them in matrix order;
what needs several cells (the pairwise judge, the loop, the report) stays on the driver, as with the local
executor. A killed study run again redoes only the cells whose folders are not finished.

Ray is imported only here, and only when the executor is ray (``pip install 'sectune[ray]'``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.study.cells import StudyCell, run_cell

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.config.study import StudyConfig, Variant
    from sectune.progress import Tracker

RAY_FIX = "pip install 'sectune[ray]', or set study.executor: local"
NO_TELEMETRY = {"RAY_USAGE_STATS_ENABLED": "0"}  # Ray's usage stats: off unless the user turned them on


def import_ray() -> ModuleType:
    """``ray``, with its usage stats off unless the environment says otherwise; a UserError when it is absent."""
    for key, value in NO_TELEMETRY.items():
        os.environ.setdefault(key, value)
    try:
        import ray
    except ImportError:
        raise UserError("the ray executor needs Ray, not installed", field="study.executor", fix=RAY_FIX) from None
    return ray


def run_cells_on_ray(
    cfg: ExperimentConfig, matrix: list[tuple[str, Variant]], dataset: Path, out: Path, progress: Tracker
) -> list[StudyCell]:
    """Every cell of ``matrix`` as a Ray task; the cells in matrix order once all have finished."""
    with ray_session(cfg.study) as ray:
        task = ray.remote(num_cpus=cfg.study.ray_num_cpus, num_gpus=cfg.study.ray_num_gpus)(cell_task)
        dataset, out = dataset.resolve(), out.resolve()  # the workers' working folder may differ
        refs = [task.remote(cfg, model, variant, dataset, out, cfg.study.ray_num_cpus) for model, variant in matrix]
        cells: list[StudyCell | None] = [None] * len(refs)
        pending = {ref: index for index, ref in enumerate(refs)}
        progress.update(0, note=f"{len(refs)} Ray tasks")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = _result(ray, ref)
                cells[pending.pop(ref)] = cell
                progress.update(len(refs) - len(pending), note=f"{cell.label} done")
    return [cell for cell in cells if cell is not None]


def cell_task(
    cfg: ExperimentConfig, model: str, variant: Variant, dataset: Path, out: Path, num_cpus: float
) -> StudyCell:
    """One cell inside a Ray worker, with as many torch threads as the CPUs Ray gave it (no oversubscription)."""
    threads = max(1, int(num_cpus))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    try:
        import torch
    except ImportError:  # run_cell says what to install
        pass
    else:
        torch.set_num_threads(threads)
    return run_cell(cfg, model, variant, dataset, out, executor="ray")


@contextmanager
def ray_session(study: StudyConfig) -> Iterator[ModuleType]:
    """Ray, initialised for the study: a Ray already running in this process is used as is; otherwise join
    ``study.ray_address`` or start a local instance, and shut it down (or disconnect) afterwards."""
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if study.ray_address is None:
        ray.init(**options)
        _check_fits(ray, study)
    else:
        try:
            ray.init(address=study.ray_address, **options)
        except ConnectionError as err:
            raise UserError(
                f"cannot join the Ray cluster at {study.ray_address!r}: {err}",
                field="study.ray_address",
                fix="start it (ray start --head) or leave study.ray_address unset for a local instance",
            ) from None
    try:
        yield ray
    finally:
        ray.shutdown()


def _check_fits(ray: ModuleType, study: StudyConfig) -> None:
    """On the local instance (nothing can scale up) a task asking more than the machine has would wait forever."""
    have = ray.cluster_resources()
    for key, field, wanted in (
        ("CPU", "ray_num_cpus", study.ray_num_cpus),
        ("GPU", "ray_num_gpus", study.ray_num_gpus),
    ):
        if wanted > have.get(key, 0):
            ray.shutdown()
            raise UserError(
                f"each task asks for {wanted:g} {key}, this machine's Ray instance has {have.get(key, 0):g}",
                field=f"study.{field}",
                fix=f"lower study.{field}, or join a cluster that has them (study.ray_address)",
            )


def _result(ray: ModuleType, ref: Any) -> StudyCell:
    """A task's cell; a UserError raised in the task is raised here as itself (one line, exit code 2)."""
    try:
        cell: StudyCell = ray.get(ref)
    except ray.exceptions.RayTaskError as err:
        if isinstance(err.cause, UserError):
            raise err.cause from None
        raise
    return cell
