"""Check every model a config names while it is loaded: a registry key or a local model folder.

A misspelt key or a missing folder then fails in well under a second, naming the file and the dotted key,
instead of after the stage has read its data and started loading weights. Nothing here opens a model:
a registry key is looked up, a folder is looked at (``config.json``; a train run's ``summary.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sectune.config import source_of
from sectune.errors import UserError, closest, closest_sibling
from sectune.registry.models import REGISTRY

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

RUN_SUMMARY = "summary.json"  # a sectune train run: summary.json beside adapter/ or model/
RUN_WEIGHTS = ("adapter", "model")


def check_model_ref(ref: str, *, file: str | Path | None, field: str, runs_ok: bool = False) -> None:
    """Raise a UserError naming ``file`` and ``field`` unless ``ref`` is a registry key or a model folder.

    ``runs_ok``: a finished sectune train run also counts (where the model is only used for inference).
    """
    if ref in REGISTRY:
        return
    hub = next((spec.key for spec in REGISTRY.values() if spec.hub_id == ref), None)
    if hub:
        raise UserError(
            f"'{ref}' is a hub id, not a registry key", file=file, field=field, fix=f"write model key '{hub}'"
        )
    path = Path(ref).expanduser()
    looks_like_path = any(sep in ref for sep in ("/", "\\")) or ref.startswith((".", "~"))
    if not path.exists():
        if looks_like_path:
            sibling = closest_sibling(path)
            raise UserError(
                f"model folder '{ref}' not found",
                file=file,
                field=field,
                fix=f"did you mean '{sibling}'?"
                if sibling
                else "check the path (relative to the working directory), or use a registry key (sectune models)",
            )
        suggestion = closest(ref, REGISTRY)
        fix = f"did you mean '{suggestion}'?" if suggestion else "`sectune models` lists the keys"
        raise UserError(f"unknown model '{ref}' (not a registry key or a folder)", file=file, field=field, fix=fix)
    if not path.is_dir():
        raise UserError(
            f"model '{ref}' is a file, not a folder", file=file, field=field, fix="pass the HF model folder itself"
        )
    if (path / "config.json").is_file():
        return
    if runs_ok and (path / RUN_SUMMARY).is_file() and any((path / name).is_dir() for name in RUN_WEIGHTS):
        return
    raise UserError(
        f"'{ref}' is not a model folder (no config.json)",
        file=file,
        field=field,
        fix="pass a registry key (sectune models), an HF model folder or the folder of a finished train run"
        if runs_ok
        else "pass a registry key (sectune models) or an HF model folder (with config.json)",
    )


def check_model_refs(
    cfg: ExperimentConfig, *, source: str | Path, overrides: list[str] | tuple[str, ...] = ()
) -> ExperimentConfig:
    """Check ``model``, ``train.model``, ``prep.model``, ``study.models`` (and a local generator's model).

    ``source`` is the YAML file the config came from; a key set by one of ``overrides`` is reported as
    ``--set``. Returns ``cfg`` so that a loader can end with ``return check_model_refs(...)``.
    """
    refs: list[tuple[str, str, bool]] = [("model", cfg.model, True)]
    refs += [("train.model", cfg.train.model, False)] if cfg.train.model else []
    refs += [("prep.model", cfg.prep.model, False)] if cfg.prep.model else []
    refs += [(f"study.models.{i}", ref, False) for i, ref in enumerate(cfg.study.models)]
    if cfg.generate.provider == "local" and cfg.generate.model:
        refs.append(("generate.model", cfg.generate.model, True))
    for field, ref, runs_ok in refs:
        check_model_ref(ref, file=source_of(field, source, overrides), field=field, runs_ok=runs_ok)
    return cfg
