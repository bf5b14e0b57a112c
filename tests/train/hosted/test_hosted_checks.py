"""What a hosted run checks before it sends anything: --dry-run sends nothing, and a config asking a service for
what it cannot do is refused (one line, exit 2, the key and the fix) before any upload."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hosted_helpers import BACKENDS, KEY_ENVS, error_line, train_args

REPO = Path(__file__).resolve().parents[3]
SEED_MISTRAL = REPO / "configs" / "seed-mistral-7b-instruct-v0.3-qlora.yaml"


def request_of(stdout: str) -> dict:
    """The job creation request a dry run prints (the JSON block after 'would send')."""
    lines = stdout.splitlines()
    start = lines.index("would send (job creation request):") + 1
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("  "))
    return json.loads("\n".join(lines[start:end]))


@pytest.mark.parametrize("backend", BACKENDS)
def test_dry_run_prints_the_plan_and_sends_nothing(backend, make_fake, hosted_sets, tiny_dataset, cli, keys, tmp_path):
    fake = make_fake(backend)
    out = tmp_path / "run"
    code, stdout, err = cli(*train_args(tiny_dataset, out, hosted_sets(backend, fake), "--dry-run"))
    assert code == 0, err
    assert fake.requests == [] and fake.creations == [] and fake.uploads == []
    assert not out.exists() and not (tmp_path / "run.partial").exists()
    assert keys[backend] not in stdout + err and f"key: {KEY_ENVS[backend]} is set" in stdout
    if backend == "predibase":
        assert re.search(r"dataset\.jsonl +train: 24 rows, ~[\d,]+ tokens", stdout), stdout
        assert re.search(r"dataset\.jsonl +validation: 6 rows", stdout), stdout
        assert request_of(stdout)["config"]["rank"] == 4
        assert "estimated cost: unknown" in stdout
    else:
        assert re.search(r"train\.jsonl +train: 24 rows", stdout) and re.search(
            r"validation\.jsonl +validation: 6", stdout
        )
        assert re.search(r"estimated cost: \$\d+\.\d\d \(\$[\d.]+ per million", stdout), stdout
    tokens = int(re.search(r"train: 24 rows, ~([\d,]+) tokens", stdout).group(1).replace(",", ""))
    trained = int(re.search(r"= ([\d,]+) \(~4 characters", stdout).group(1).replace(",", ""))
    assert tokens > 0 and trained == tokens  # one epoch


def test_dry_run_of_the_seed_mistral_qlora_config_on_predibase(tiny_dataset, cli, keys, tmp_path):
    sets = ["train.backend=predibase"]
    code, stdout, err = cli(
        "train", tiny_dataset, "--out", tmp_path / "run", "--config", SEED_MISTRAL, "--set", sets[0], "--dry-run"
    )
    assert code == 0, err
    request = request_of(stdout)
    assert request["repo"] == "seed-mistral-7b-instruct-v0-3-qlora"
    assert request["config"] == {
        "base_model": "mistral-7b-instruct-v0-3",
        "adapter": "lora",
        "task": "sft",
        "learning_rate": 0.0002,
        "rank": 16,
        "lora_alpha": 32,
        "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "apply_chat_template": True,
        "enable_early_stopping": True,
        "epochs": 3,
        "lora_dropout": 0.05,
        "warmup_ratio": 0.03,
        "effective_batch_size": 8,
    }
    assert "train.method=qlora: adapter 'lora'" in stdout and "x 3 epochs" in stdout


def refused(cli, args, fake) -> str:
    code, stdout, err = cli(*args)
    line = error_line(err)
    assert code == 2 and stdout == "", err
    assert fake is None or (fake.uploads == [] and fake.creations == [])
    return line


# (backend, extra --set, words of the error line, requests allowed before the refusal)
REFUSALS = {
    "full fine-tuning on predibase": ("predibase", ["train.method=full"], ["train.method", "adapters only"], 0),
    "dora on openai": ("openai", ["train.lora.use_dora=true"], ["train.lora.use_dora", "use_dora=false"], 0),
    "dora on together": ("together", ["train.lora.use_dora=true"], ["train.lora.use_dora"], 0),
    "rslora on predibase": ("predibase", ["train.lora.use_rslora=true"], ["train.lora.use_rslora"], 0),
    "a model openai does not fine-tune": (
        "openai",
        ["train.hosted.base_model=mistral-7b"],
        ["train.hosted.base_model", "OpenAI fine-tunes only its own models", "gpt-4o-mini"],
        0,
    ),
    "a local folder together has no name for": (
        "together",
        ["train.hosted.base_model=null"],
        ["model", "Together offers no model for", "train.hosted.base_model=NAME"],
        0,
    ),
    "a model together does not offer (its limits say so)": (
        "together",
        ["train.hosted.base_model=acme/NoSuchModel-7B"],
        ["train.hosted.base_model", "does not fine-tune 'acme/NoSuchModel-7B'", "not available for fine-tuning"],
        1,
    ),
    "a rank above together's limit": ("together", ["train.lora.r=128"], ["train.lora.r", "at most 64"], 1),
    "fractional epochs": ("predibase", ["train.epochs=1.5"], ["train.epochs", "whole epochs"], 0),
    "steps instead of epochs on openai": ("openai", ["train.max_steps=10"], ["train.max_steps", "epochs"], 0),
    "all-linear on predibase": (
        "predibase",
        ["train.lora.target_modules=all-linear"],
        ["train.lora.target_modules", "list"],
        0,
    ),
    "a scheduler together lacks": ("together", ["train.lr_scheduler=constant"], ["train.lr_scheduler"], 0),
}


@pytest.mark.parametrize("case", sorted(REFUSALS))
def test_what_a_service_cannot_do_is_refused_before_any_upload(
    case, make_fake, hosted_sets, tiny_dataset, cli, tmp_path
):
    backend, more, words, allowed = REFUSALS[case]
    fake = make_fake(backend)
    out = tmp_path / "run"
    line = refused(cli, train_args(tiny_dataset, out, hosted_sets(backend, fake, *more)), fake)
    for word in words:
        assert word in line, (word, line)
    assert "fix:" in line
    assert len(fake.requests) == allowed, fake.requests
    assert not out.exists() and not (tmp_path / "run.partial").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_missing_key_is_refused_naming_the_variable(
    backend, make_fake, hosted_sets, tiny_dataset, cli, monkeypatch, tmp_path
):
    fake = make_fake(backend)
    monkeypatch.delenv(KEY_ENVS[backend])
    line = refused(cli, train_args(tiny_dataset, tmp_path / "run", hosted_sets(backend, fake)), fake)
    assert KEY_ENVS[backend] in line and ".env" in line
    assert fake.requests == [] and not (tmp_path / "run.partial").exists()


def test_a_missing_sdk_is_refused_with_the_extra_to_install(
    make_fake, hosted_sets, tiny_dataset, cli, monkeypatch, tmp_path
):
    import importlib.util

    fake = make_fake("predibase")
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "predibase" else find_spec(name, *a)
    )
    line = refused(cli, train_args(tiny_dataset, tmp_path / "run", hosted_sets("predibase", fake)), fake)
    assert "pip install 'sectune[predibase]'" in line
    assert fake.requests == [] and not (tmp_path / "run.partial").exists()


def test_dry_run_needs_a_hosted_backend(tiny_dataset, cli, hosted_sets, tmp_path):
    line = refused(
        cli,
        train_args(tiny_dataset, tmp_path / "run", hosted_sets("openai", None, "train.backend=local"), "--dry-run"),
        None,
    )
    assert "train.backend" in line and "sectune plan" in line
