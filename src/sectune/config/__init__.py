"""The lowest floor above errors: every stage's typed config, and the experiment that holds them.

One experiment = one YAML with a section per stage; dotted ``--set`` overrides on top. Every section is a
strict pydantic model (``config/<stage>.py``): unknown keys fail with the closest valid key, every count, rate
and size has its bounds and every name its list of valid values; a key written twice in the YAML is refused.
Stages import their section from here; nothing here imports a stage. The models a config names are checked
one floor up, by ``sectune.registry.refs.check_model_refs`` (the registry is not on this floor); the CLI and
the demo call both, so a wrong config fails before any data or model is opened.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, ValidationError

from sectune.config.base import StrictModel  # first: every section builds on it
from sectune.config.evaluate import EvalConfig
from sectune.config.generate import GenerateConfig
from sectune.config.prep import PrepConfig
from sectune.config.serve import ServeConfig
from sectune.config.study import StudyConfig
from sectune.config.train import TrainConfig
from sectune.errors import UserError

EMBEDDED_MODEL = "smollm2-135m"


class ExperimentConfig(StrictModel):
    name: str = Field("experiment", min_length=1)
    seed: int = Field(42, ge=0, le=2**32 - 1)  # numpy's seed range
    model: str = Field(EMBEDDED_MODEL, min_length=1)  # a registry key or a local HF model folder
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    prep: PrepConfig = Field(default_factory=PrepConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    study: StudyConfig = Field(default_factory=StudyConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read a YAML experiment (or the defaults), apply ``key.sub=value`` overrides, validate.

    Model names are not looked up here: ``sectune.registry.refs.check_model_refs(cfg, source=path)`` does that.
    """
    data: dict[str, Any] = read_yaml(path) if path else {}
    for item in overrides:
        apply_override(data, item)
    return validate_config(data, source=path or "--set", overrides=overrides)


class DuplicateKeyError(yaml.YAMLError):
    """A key written twice in one mapping of a YAML file."""

    def __init__(self, key: str, line: int, first_line: int) -> None:
        super().__init__(f"duplicate key {key!r} at line {line}")
        self.key, self.line, self.first_line = key, line, first_line


class UniqueKeyLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses a key repeated in one mapping (plain YAML silently keeps the last)."""

    def construct_document(self, node: yaml.Node) -> Any:
        _refuse_repeated_keys(node, [], set())
        return super().construct_document(node)


def _refuse_repeated_keys(node: yaml.Node, path: list[str], seen_nodes: set[int]) -> None:
    if id(node) in seen_nodes:  # an alias of a node already checked
        return
    seen_nodes.add(id(node))
    if isinstance(node, yaml.MappingNode):
        first_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *defaults` may be overridden key by key
                _refuse_repeated_keys(value_node, path, seen_nodes)
                continue
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            line = key_node.start_mark.line + 1
            if key in first_lines:
                raise DuplicateKeyError(".".join([*path, key]), line, first_lines[key])
            first_lines[key] = line
            _refuse_repeated_keys(value_node, [*path, key], seen_nodes)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _refuse_repeated_keys(item, [*path, str(index)], seen_nodes)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise UserError("config file not found", file=path, fix="pass an existing YAML file to --config")
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=UniqueKeyLoader)  # a SafeLoader
    except DuplicateKeyError as exc:
        raise UserError(
            f"key written twice (line {exc.line}; first at line {exc.first_line})",
            file=path,
            field=exc.key,
            fix="keep one of the two: YAML would silently use the last",
        ) from None
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


def validate_config(
    data: dict[str, Any],
    *,
    source: str | Path,
    model: type[StrictModel] = ExperimentConfig,
    overrides: list[str] | tuple[str, ...] = (),
) -> Any:
    """Validate ``data`` into ``model``; turn the first pydantic error into a one-line UserError.

    The error names ``source`` (the YAML file), or ``--set`` when one of ``overrides`` set the bad key.
    """
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, source, model, overrides) from None


def source_of(dotted: str, source: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> str | Path:
    """Where the value at ``dotted`` came from: ``--set`` when an override set it (or a section above it)."""
    for item in overrides:
        key = item.partition("=")[0].strip()
        if dotted == key or dotted.startswith(key + "."):
            return "--set"
    return source


# pydantic names the branch of a union in an error's location (``batch_size.constrained-int``): not a key
_UNION_BRANCH = re.compile(r"^(int|str|float|bool|constrained-\w+|[\w-]+\[.*\])$")


def config_error(
    exc: ValidationError,
    source: str | Path,
    model: type[StrictModel],
    overrides: list[str] | tuple[str, ...] = (),
) -> UserError:
    errors = exc.errors()
    error = errors[0]
    loc = _key_path(error["loc"])
    dotted = ".".join(loc)
    where = source_of(dotted, source, overrides)
    if error["type"] == "extra_forbidden":
        valid = valid_keys(model, loc[:-1])
        match = difflib.get_close_matches(loc[-1], valid, n=1, cutoff=0.4)
        hint = f"did you mean '{'.'.join([*loc[:-1], match[0]])}'?" if match else f"valid keys: {', '.join(valid)}"
        return UserError("unknown key", file=where, field=dotted, fix=hint)
    if error["type"] == "value_error":  # a validator's own sentence
        return UserError(str(error["ctx"]["error"]), file=where, field=dotted)
    branches = [e for e in errors if _key_path(e["loc"]) == loc]  # X | Literal[...]: one error per branch
    wanted = " or ".join(dict.fromkeys(_wanted(e) for e in branches))
    value = error.get("input")
    got = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    fix = None
    choices = [v for e in branches if e["type"] == "literal_error" for v in _literal_values(e)]
    if choices and isinstance(value, str):
        guess = _closest_choice(value, choices)
        fix = f"did you mean '{guess}'?" if guess else f"valid: {', '.join(choices)}"
        if len(choices) > 6:
            wanted = " or ".join(dict.fromkeys(_wanted(e) for e in branches if e["type"] != "literal_error"))
            wanted = " or ".join(part for part in (wanted, "a known name") if part)
    return UserError(f"must be {wanted}, got {got}", file=where, field=dotted, fix=fix)


def _closest_choice(value: str, choices: list[str]) -> str | None:
    """The valid name the user most likely meant: the first one it starts, else the closest spelling."""
    started = next((c for c in choices if c.startswith(value.lower())), None)
    if started:
        return started
    match = difflib.get_close_matches(value, choices, n=1, cutoff=0.5)
    return match[0] if match else None


def _key_path(loc: tuple[int | str, ...]) -> list[str]:
    return [str(part) for part in loc if not (isinstance(part, str) and _UNION_BRANCH.match(part))]


def _literal_values(error: Any) -> list[str]:
    return re.findall(r"'([^']*)'", error.get("ctx", {}).get("expected", ""))


def _wanted(error: Any) -> str:
    """What the value should have been, in a few words (``>= 1``, ``one of 'a', 'b'``, ``a number``)."""
    ctx = error.get("ctx") or {}
    kind = error["type"]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=", "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()))
        return f"{bounds[kind]} {limit}"
    if kind == "literal_error":
        values = _literal_values(error)
        return f"'{values[0]}'" if len(values) == 1 else "one of " + ", ".join(f"'{v}'" for v in values)
    if kind == "too_short":
        return "a non-empty list" if ctx.get("min_length") == 1 else f"a list of at least {ctx.get('min_length')}"
    if kind == "string_too_short":
        return "a non-empty text"
    if kind == "too_long":
        return f"at most {ctx.get('max_length')} long"
    words = {
        "int_parsing": "a whole number",
        "int_type": "a whole number",
        "int_from_float": "a whole number",
        "float_parsing": "a number",
        "float_type": "a number",
        "bool_parsing": "true or false",
        "bool_type": "true or false",
        "string_type": "a string",
        "list_type": "a list",
        "dict_type": "a mapping",
        "model_type": "a mapping of keys",
        "model_attributes_type": "a mapping of keys",
        "tuple_type": "a list",
    }
    if kind in words:
        return words[kind]
    message = str(error["msg"])
    return message[:1].lower() + message[1:].removeprefix("input should be ")


def valid_keys(model: type[StrictModel], path: list[str]) -> list[str]:
    """The field names of the (nested) section at ``path`` of ``model``."""
    current: Any = model
    for part in path:
        field = current.model_fields.get(part) if hasattr(current, "model_fields") else None
        if field is None or not isinstance(field.annotation, type) or not issubclass(field.annotation, StrictModel):
            return []
        current = field.annotation
    return sorted(current.model_fields)
