"""Form values → the CLI's arguments (``--config FILE --set key=value ...``) and the experiment config.

Every value a page sends goes through :func:`setting`, written the way ``--set`` parses it (YAML), so a page
and the CLI build the very same config. A typed API key never becomes a ``--set`` value: it goes into the job's
environment under :data:`KEY_ENV`, and the config names only that variable.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, get_args

from sectune.config.train import Method
from sectune.errors import UserError

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.ui.workspace import Workspace

KEY_ENV = "SECTUNE_UI_API_KEY"  # the variable a job reads the typed key from (its name only is in config.yaml)
PROVIDERS = {"embedded model": "local", "OpenAI-compatible URL": "openai", "Anthropic": "anthropic"}
METHODS: tuple[str, ...] = get_args(Method)


def setting(key: str, value: Any) -> str:
    """One ``key=value`` override; strings are JSON-quoted so that YAML reads them back as the same string."""
    return f"{key}={json.dumps(value)}"


def extra_settings(text: str) -> list[str]:
    """The lines of an "extra settings" box (``key=value`` each; blank lines and ``#`` comments skipped)."""
    lines = [line.strip() for line in text.splitlines()]
    sets = [line for line in lines if line and not line.startswith("#")]
    for line in sets:
        if "=" not in line:
            raise UserError(f"'{line}' is not key=value", field="extra settings", fix="write e.g. train.lora.r=32")
    return sets


def provider_settings(label: str, model: str, base_url: str, api_key: str) -> tuple[list[str], dict[str, str]]:
    """(overrides, the job's secret environment) for the generation provider picked on a page."""
    if label not in PROVIDERS:
        raise UserError(f"unknown provider '{label}'", field="provider", fix=f"pick one of {', '.join(PROVIDERS)}")
    provider = PROVIDERS[label]
    sets = [setting("generate.provider", provider)]
    if model.strip():
        sets.append(setting("generate.model", model.strip()))
    elif provider != "local":
        raise UserError("a model name is needed", field="model", fix="type the model the provider serves")
    if provider == "openai":
        if not base_url.strip():
            raise UserError("the server's URL is needed", field="base URL", fix="type e.g. http://127.0.0.1:8000/v1")
        sets.append(setting("generate.base_url", base_url.strip()))
    secrets: dict[str, str] = {}
    if api_key and provider != "local":
        sets.append(setting("generate.api_key_env", KEY_ENV))
        secrets[KEY_ENV] = api_key
    return sets, secrets


def limit_settings(max_in_flight: int, rpm: int, budget_usd: float, max_tokens: int) -> list[str]:
    """Generate's limits; 0 means "no limit" for rpm and budget."""
    sets = [setting("generate.max_in_flight", int(max_in_flight)), setting("generate.max_tokens", int(max_tokens))]
    if rpm:
        sets.append(setting("generate.rpm", int(rpm)))
    if budget_usd:
        sets.append(setting("generate.budget_usd", float(budget_usd)))
    return sets


def train_settings(model: str, method: str, max_steps: int, epochs: float, learning_rate: float) -> list[str]:
    sets = [setting("train.method", method), setting("train.learning_rate", float(learning_rate))]
    if model.strip():
        sets.insert(0, setting("model", model.strip()))
    sets.append(setting("train.max_steps", int(max_steps)) if max_steps > 0 else setting("train.epochs", epochs))
    return sets


def job_args(ws: Workspace, sets: list[str]) -> list[str]:
    """``--config FILE`` (the UI's base config) and one ``--set`` per override."""
    args = ["--config", str(ws.config)] if ws.config else []
    for item in sets:
        args += ["--set", item]
    return args


def load_ui_config(ws: Workspace, sets: list[str]) -> ExperimentConfig:
    """The experiment config a job with ``sets`` would run with, its models checked (as the CLI loads it)."""
    from sectune.config import load_config
    from sectune.registry.refs import check_model_refs

    cfg = load_config(ws.config, sets)
    return check_model_refs(cfg, source=ws.config or "--set", overrides=sets)
