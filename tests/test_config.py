from pathlib import Path

import pytest
import yaml

from sectune.config import EMBEDDED_MODEL, ExperimentConfig, apply_override, load_config
from sectune.errors import UserError
from sectune.registry.models import REGISTRY

REPO = Path(__file__).resolve().parents[1]


def test_defaults_use_the_embedded_model():
    cfg = load_config()
    assert cfg.model == EMBEDDED_MODEL == "smollm2-135m"
    assert REGISTRY[cfg.model].embedded  # the registry's embedded model, not merely some key
    assert cfg == ExperimentConfig()  # no path and no overrides: exactly the model defaults


def test_dotted_override_sets_nested_value_with_yaml_types():
    cfg = load_config(None, ["train.lora.r=32", "train.learning_rate=1e-4", "seed=7"])
    assert cfg.train.lora.r == 32
    assert cfg.train.learning_rate == pytest.approx(1e-4)
    assert cfg.seed == 7


def test_override_values_are_parsed_as_yaml_into_nested_sections():
    data = {"train": {"method": "lora"}}
    for item in ("train.lora.r=32", "eval.metrics=[rouge_l, bleu]", "train.stop_check.enabled=false", "name=x"):
        apply_override(data, item)
    assert data == {
        "train": {"method": "lora", "lora": {"r": 32}, "stop_check": {"enabled": False}},
        "eval": {"metrics": ["rouge_l", "bleu"]},
        "name": "x",
    }
    assert type(data["train"]["lora"]["r"]) is int  # YAML's int, not the string "32"


def test_unknown_key_names_the_closest_valid_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  lora:\n    rr: 8\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    text = str(err.value)
    assert "train.lora.rr" in text and "train.lora.r'" in text and str(path) in text
    assert "\n" not in text


def test_wrong_type_names_key_and_value(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  learning_rate: fast\n")
    with pytest.raises(UserError) as err:
        load_config(path)
    assert "train.learning_rate" in str(err.value) and "'fast'" in str(err.value)


def test_missing_config_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")


def test_override_without_equals_is_rejected():
    with pytest.raises(UserError, match="key=value"):
        apply_override({}, "train.lora.r")


# configs/*.yaml are experiment configs; configs/accelerate/*.yml are accelerate's (tests/train checks them).
EXPECTED_EXPERIMENT_CONFIGS = 17


def test_every_shipped_config_loads():
    paths = sorted((REPO / "configs").glob("*.yaml"))
    loaded = {path.name: load_config(path) for path in paths}
    assert len(loaded) == EXPECTED_EXPERIMENT_CONFIGS, sorted(loaded)
    # each config's own name reached the loaded experiment, and no two shipped experiments share one
    assert {name: cfg.name for name, cfg in loaded.items()} == {
        p.name: yaml.safe_load(p.read_text())["name"] for p in paths
    }
    assert len({cfg.name for cfg in loaded.values()}) == len(loaded)
    assert ExperimentConfig().name not in {cfg.name for cfg in loaded.values()}


def test_the_packaged_demo_experiment_loads():
    from sectune.demo import DEMO_CONFIG, DEMO_TOPICS, demo_config

    cfg = demo_config()
    assert DEMO_CONFIG.is_file() and DEMO_TOPICS.is_file()
    assert cfg.model == "smollm2-135m" and cfg.generate.provider == "local"
    # values that differ from the defaults: the packaged demo.yaml was read, not just the defaults
    assert (cfg.name, cfg.train.max_steps, cfg.generate.num_samples, cfg.study.variants) == (
        "demo",
        30,
        40,
        ["base", "lora"],
    )


@pytest.mark.parametrize(
    ("sets", "key"),
    [
        (["train.max_length=512"], "train.padding_free"),
        (["train.packing=true"], "train.packing"),
        (["train.packing=true", "train.padding_free=false"], "train.packing"),
    ],
)
def test_batching_that_cannot_work_is_refused_when_the_config_loads(sets, key):
    from sectune.config import load_config
    from sectune.errors import UserError

    with pytest.raises(UserError, match=key):
        load_config(None, sets)
    load_config(None, [*sets, "train.max_length=256", "train.packing=true"])  # the fix works
