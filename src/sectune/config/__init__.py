"""The lowest floor above errors: every stage's typed config, and the experiment that holds them.

One experiment = one YAML with a section per stage; dotted ``--set`` overrides on top. Every section is a
strict pydantic model (``config/<stage>.py``): unknown keys fail with the closest valid key. Stages import
their section from here; nothing here imports a stage.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from sectune.config.base import StrictModel  # first: every section builds on it
from sectune.config.evaluate import EvalConfig
from sectune.config.generate import GenerateConfig
from sectune.config.prep import PrepConfig
from sectune.config.study import StudyConfig
from sectune.config.train import TrainConfig
from sectune.errors import UserError

EMBEDDED_MODEL = "smollm2-135m"


class ExperimentConfig(StrictModel):
    name: str = "experiment"
    seed: int = 42
    model: str = EMBEDDED_MODEL  # a registry key or a local HF model folder
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    prep: PrepConfig = Field(default_factory=PrepConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment (or the defaults), apply ``key.sub=value`` overrides, validate."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    for item in overrides:
        apply_override(data, item)
    return validate_config(data, source=path or "--set")


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", file=path, fix="pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"not valid YAML: {exc}", file=path, fix="fix the YAML syntax") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("a config must be a mapping of sections", file=path, fix="start with e.g. 'train:'")
    return data


def apply_override(data: dict[str, Any], item: str) -> None:
    """Apply one ``a.b.c=value`` override; the value is parsed as YAML (numbers, lists, bools)."""
    key, sep, raw = item.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override '{item}' is not key=value", field=item, fix="write e.g. --set train.lora.r=32")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise UserError(f"'{part}' is a value, not a section", field=key, fix="override the value itself")
        node = child
    node[parts[-1]] = value


def validate_config(data: dict[str, Any], *, source: str | Path, model: type[StrictModel] = ExperimentConfig) -> Any:
    """Validate ``data`` into ``model``; turn the first pydantic error into a one-line UserError."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source, model) from None


def config_error(exc: ValidationError, source: str | Path, model: type[StrictModel]) -> UserError:
    error = exc.errors()[0]
    loc = [str(part) for part in error["loc"]]
    dotted = ".".join(loc)
    if error["type"] == "extra_forbidden":
        valid = valid_keys(model, loc[:-1])
        match = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.4)
        fix = f"did you mean '{'.'.join([*loc[:-1], match[0]])}'?" if match else f"valid keys: {', '.join(valid)}"
        return UserError("unknown key", file=source, field=dotted, fix=fix)
    return UserError(error["msg"], file=source, field=dotted, fix=f"got {error.get('input')!r}")


def valid_keys(model: type[StrictModel], path: list[str]) -> list[str]:
    """The field names of the (nested) section at ``path`` of ``model``."""
    current: Any = model
    for part in path:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, StrictModel):
            return []
        current = field.annotation
    return sorted(current.model_fields)
