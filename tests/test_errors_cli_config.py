"""Errors that help (issue 17, classes 1 and 2): a corpus of malformed command lines and configs.

Every case runs the real entry point in process (``sectune.cli.main.main``) and must give: exit code 2, one
line on stderr naming the option, file or dotted key at fault, no traceback, and nothing written (the
``--out`` folder absent). A wrong config fails on every stage before any model or data is opened.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def assert_one_line_error(code: int, err: str, *words: str) -> str:
    assert code == 2, err
    line = err.strip()
    assert len(line.splitlines()) == 1, err
    assert line.startswith("error: "), err
    assert "Traceback" not in err and "Error:" not in err, err  # no traceback, no class name
    for word in words:
        assert word in line, f"{word!r} not in {line!r}"
    return line


# --- class 1: the command line -------------------------------------------------------------------------


def test_sectune_alone_prints_the_help_and_exits_0(sectune_cli):
    code, out, err = sectune_cli()
    assert code == 0 and err == ""
    assert out.startswith("Usage: sectune ") and "Commands:" in out and "check" in out


def test_version(sectune_cli):
    from importlib.metadata import version

    code, out, err = sectune_cli("--version")
    assert code == 0 and err == ""
    assert out.strip() == f"sectune {version('sectune')}"


# (argv after `sectune`, words the error line must hold); OUT stands for the --out folder
USAGE_CASES: dict[str, tuple[list[str], list[str]]] = {
    "unknown command": (["trian", "data", "--out", "OUT"], ["No such command 'trian'", "usage: sectune [OPTIONS]"]),
    "missing argument": (["prep", "--out", "OUT"], ["Missing argument 'INPUT'", "usage: sectune prep"]),
    "missing option": (["train", "data"], ["Missing option '--out'", "usage: sectune train"]),
    "unknown option": (["prep", "in.jsonl", "--out", "OUT", "--bogus"], ["No such option: --bogus", "sectune prep"]),
    "root option after the command": (
        ["generate", "--out", "OUT", "--progress", "plain"],
        ["No such option: --progress", "sectune generate --help"],
    ),
    "bad root option value": (["--progress", "loud", "prep", "in.jsonl", "--out", "OUT"], ["'--progress'", "loud"]),
    "flag given a value": (["train", "data", "--out", "OUT", "--resume=yes"], ["--resume", "does not take a value"]),
    "bad choice": (["inspect", "data", "--split", "tran"], ["'--split'", "'tran'", "usage: sectune inspect"]),
    "missing eval target": (["eval", "--out", "OUT"], ["Missing argument 'TARGET'", "usage: sectune eval"]),
    "option without its value": (["prep", "in.jsonl", "--out"], ["'--out' requires an argument"]),
}


@pytest.mark.parametrize("case", sorted(USAGE_CASES))
def test_usage_errors_are_one_line_with_the_usage_and_exit_2(case, tmp_path, sectune_cli):
    args, words = USAGE_CASES[case]
    out = tmp_path / "out"
    code, _, err = sectune_cli(*[str(out) if a == "OUT" else a for a in args])
    assert_one_line_error(code, err, *words)
    assert "usage: sectune" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


PLAN_CASES: dict[str, tuple[list[str], list[str]]] = {
    "batch size 0": (["--batch-size", "0"], ["'--batch-size'", "greater than or equal to 1"]),
    "negative max length": (["--max-length", "-5"], ["'--max-length'", "greater than or equal to 1"]),
    "not a number": (["--batch-size", "two"], ["'--batch-size'", "integer"]),
    "unknown method": (["--method", "lorra"], ["'--method'", "'lorra'", "qlora-8bit"]),
    "bad batch through --set": (["--set", "train.batch_size=0"], ["--set", "train.batch_size", ">= 1 or 'auto'"]),
}


@pytest.mark.parametrize("case", sorted(PLAN_CASES))
def test_bad_plan_options_are_refused(case, sectune_cli):
    args, words = PLAN_CASES[case]
    code, out, err = sectune_cli("plan", *args)
    assert_one_line_error(code, err, *words)
    assert out == ""  # no plan printed


def test_inspect_model_option_is_checked_like_the_config(tmp_path, sectune_cli):
    code, out, err = sectune_cli("inspect", tmp_path / "dataset", "--model", "mistrall-7b")
    assert_one_line_error(code, err, "--model", "unknown model 'mistrall-7b'", "did you mean 'mistral-7b'")
    assert out == "" and list(tmp_path.iterdir()) == []


# --- class 2: config values ------------------------------------------------------------------------------

# YAML text → words the error line must hold, besides the file name
CONFIG_CASES: dict[str, tuple[str, list[str]]] = {
    # duplicate keys: the last one would silently win
    "dup_value.yaml": ("train:\n  max_steps: 5\n  lora:\n    r: 8\n  max_steps: 10\n", ["train.max_steps", "line 5"]),
    "dup_section.yaml": (
        "train:\n  method: lora\neval:\n  batch_size: 2\ntrain:\n  method: full\n",
        ["train", "line 5"],
    ),
    "dup_nested.yaml": (
        "eval:\n  judge:\n    model: a\n    model: b\n",
        ["eval.judge.model", "line 4", "first at line 3"],
    ),
    # bounds
    "max_steps_0.yaml": ("train:\n  max_steps: 0\n", ["train.max_steps", "-1", "at least 1"]),
    "weight_decay.yaml": ("train:\n  weight_decay: -0.1\n", ["train.weight_decay", ">= 0", "-0.1"]),
    "grad_norm.yaml": ("train:\n  max_grad_norm: -1\n", ["train.max_grad_norm", ">= 0"]),
    "lora_r.yaml": ("train:\n  lora:\n    r: 0\n", ["train.lora.r", ">= 1"]),
    "eval_batch.yaml": ("eval:\n  batch_size: 0\n", ["eval.batch_size", ">= 1"]),
    "temperature.yaml": ("generate:\n  temperature: 3\n", ["generate.temperature", "<= 2"]),
    "splits.yaml": ("prep:\n  validation_size: 0.5\n  test_size: 0.5\n", ["prep", "nothing left to train on"]),
    "bootstrap.yaml": ("eval:\n  bootstrap_samples: 0\n", ["eval.bootstrap_samples", ">= 1"]),
    # enums
    "scheduler.yaml": ("train:\n  lr_scheduler: cosin\n", ["train.lr_scheduler", "'cosin'", "did you mean 'cosine'"]),
    "optimizer.yaml": ("train:\n  optimizer: adamw_torh\n", ["train.optimizer", "did you mean 'adamw_torch'"]),
    "precision.yaml": ("train:\n  precision: bf32\n", ["train.precision", "'auto', 'bf16', 'fp16', 'fp32'"]),
    "variant.yaml": ("study:\n  variants: [base, lroa]\n", ["study.variants.1", "did you mean 'lora'"]),
    # models: registry keys and local folders, resolved at load time
    "model_key.yaml": ("model: mistrall-7b\n", ["model", "unknown model 'mistrall-7b'", "did you mean 'mistral-7b'"]),
    "train_model.yaml": ("train:\n  model: qwen2.5-05b\n", ["train.model", "unknown model", "qwen2.5-0.5b-instruct"]),
    "prep_model.yaml": ("prep:\n  model: lama-3-8b\n", ["prep.model", "unknown model 'lama-3-8b'"]),
    "study_models.yaml": ("study:\n  models: [smollm2-135m, gemma2b]\n", ["study.models.1", "'gemma2b'"]),
    "hub_id.yaml": ("model: Qwen/Qwen2.5-0.5B-Instruct\n", ["model", "hub id", "'qwen2.5-0.5b-instruct'"]),
    "missing_folder.yaml": (
        "model: ./models/no-such-model\n",
        ["model", "model folder './models/no-such-model' not found"],
    ),
    "missing_train_folder.yaml": ("train:\n  model: /nonexistent/base\n", ["train.model", "not found"]),
    "not_a_model_folder.yaml": ("model: EMPTY\n", ["model", "no config.json"]),
    "study_twice.yaml": ("study:\n  models: [smollm2-135m, smollm2-135m]\n", ["study.models", "more than once"]),
}


def write_config(tmp_path: Path, name: str) -> Path:
    text = CONFIG_CASES[name][0]
    if "EMPTY" in text:
        empty = tmp_path / "configs" / "empty-model"
        empty.mkdir(parents=True)
        text = text.replace("EMPTY", str(empty))
    path = tmp_path / "configs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_config_corpus_covers_each_kind():
    kinds = {"dup": 0, "bounds": 0, "enum": 0, "model": 0}
    for name in CONFIG_CASES:
        if name.startswith("dup"):
            kinds["dup"] += 1
        elif any(word in name for word in ("model", "folder", "hub", "study")):
            kinds["model"] += 1
        elif name.split(".")[0] in {"scheduler", "optimizer", "precision", "variant"}:
            kinds["enum"] += 1
        else:
            kinds["bounds"] += 1
    assert min(kinds.values()) >= 3, kinds


@pytest.mark.parametrize("name", sorted(CONFIG_CASES))
def test_bad_config_is_one_line_naming_file_and_key(name, tmp_path, sectune_cli):
    config = write_config(tmp_path, name)
    out = tmp_path / "run"
    code, _, err = sectune_cli("train", tmp_path / "dataset", "--out", out, "--config", config)
    assert_one_line_error(code, err, str(config), *CONFIG_CASES[name][1])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


def test_a_bad_value_from_set_names_set_not_the_file(tmp_path, sectune_cli):
    config = tmp_path / "ok.yaml"
    config.write_text("train:\n  method: lora\n")
    code, _, err = sectune_cli("check", "--config", config, "--set", "train.max_steps=0")
    line = assert_one_line_error(code, err, "--set: train.max_steps")
    assert str(config) not in line
    code, _, err = sectune_cli("check", "--config", config, "--set", "study.models=[smollm2-135m,x-1b]")
    assert_one_line_error(code, err, "--set: study.models.1", "unknown model 'x-1b'")


def test_a_key_overriding_a_yaml_merge_is_no_duplicate():
    from sectune.config import UniqueKeyLoader

    text = "defaults: &d\n  r: 8\n  alpha: 16\nlora:\n  <<: *d\n  r: 16\n"
    assert yaml.load(text, Loader=UniqueKeyLoader) == {
        "defaults": {"r": 8, "alpha": 16},
        "lora": {"r": 16, "alpha": 16},
    }


# --- a wrong config fails on every stage before any model or data is opened -------------------------------


def import_every_module() -> None:
    """Import every sectune module but the UI (Streamlit) and ``__main__`` (it runs the CLI)."""
    import importlib
    import pkgutil

    import sectune

    for info in pkgutil.walk_packages(sectune.__path__, "sectune."):
        if info.name != "sectune.__main__" and not info.name.startswith("sectune.ui"):
            importlib.import_module(info.name)


@pytest.fixture
def nothing_may_be_opened(monkeypatch):
    """Every stage function, model loader and data reader raises if reached."""
    import transformers

    import_every_module()  # before patching: a `from x import name` run under the patch would keep it for good

    import sectune.data.api
    import sectune.data.io
    import sectune.data.jsonl
    import sectune.demo
    import sectune.evaluate.api
    import sectune.evaluate.heldout
    import sectune.evaluate.mcq
    import sectune.generate.api
    import sectune.models.load
    import sectune.registry.embedded
    import sectune.study.api
    import sectune.train.api
    import sectune.train.data
    import sectune.train.plan

    def forbidden(*args, **kwargs):
        raise AssertionError("opened a model or data set (or started a stage) for a config that is wrong")

    for module, names in {
        sectune.models.load: ["load_model", "load_tokenizer", "load_for_inference", "resolve_model"],
        sectune.registry.embedded: ["ensure_embedded_model"],
        sectune.data.io: ["read_input"],
        sectune.data.jsonl: ["read_jsonl", "iter_jsonl"],
        sectune.train.data: ["read_dataset", "read_rows"],
        sectune.evaluate.heldout: ["load_examples"],
        sectune.evaluate.mcq: ["load_benchmark"],
        sectune.data.api: ["prepare", "inspect_dataset"],
        sectune.train.api: ["train"],
        sectune.train.plan: ["plan"],
        sectune.evaluate.api: ["evaluate"],
        sectune.study.api: ["study"],
        sectune.generate.api: ["generate", "topics"],
        sectune.demo: ["run_demo"],
    }.items():
        for name in names:
            monkeypatch.setattr(module, name, forbidden)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", forbidden)
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", forbidden)


def stage_args(stage: str, tmp_path: Path, out: Path) -> list[str | Path]:
    dataset = tmp_path / "dataset"
    return {
        "generate": ["generate", "--out", out],
        "topics": ["topics", "--out", out],
        "prep": ["prep", tmp_path / "samples.jsonl", "--out", out],
        "inspect": ["inspect", dataset],
        "train": ["train", dataset, "--out", out],
        "plan": ["plan"],
        "eval": ["eval", "smollm2-135m", "--dataset", dataset, "--out", out],
        "study": ["study", dataset, "--out", out],
        "demo": ["demo", "--out", out],
    }[stage]


STAGES = ["generate", "topics", "prep", "inspect", "train", "plan", "eval", "study", "demo"]
BAD_FOR_EVERY_STAGE = ["model_key.yaml", "dup_value.yaml", "max_steps_0.yaml", "missing_folder.yaml"]


@pytest.mark.parametrize("bad", BAD_FOR_EVERY_STAGE)
@pytest.mark.parametrize("stage", STAGES)
def test_a_wrong_config_fails_at_once_on_every_stage(stage, bad, tmp_path, nothing_may_be_opened, sectune_cli):
    config = write_config(tmp_path, bad)
    out = tmp_path / "out"
    code, _, err = sectune_cli(*stage_args(stage, tmp_path, out), "--config", config)
    assert_one_line_error(code, err, str(config), *CONFIG_CASES[bad][1])
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["configs"]


@pytest.mark.parametrize("stage", STAGES)
def test_the_guard_is_real_a_valid_config_reaches_the_stage(stage, tmp_path, nothing_may_be_opened, sectune_cli):
    code, _, err = sectune_cli(*stage_args(stage, tmp_path, tmp_path / "out"))
    assert code == 1 and "opened a model or data set (or started a stage)" in err, err


# --- sectune check -----------------------------------------------------------------------------------------


def test_check_prints_the_resolved_config_and_does_no_work(tmp_path, nothing_may_be_opened, sectune_cli):
    from sectune.config import load_config

    config = REPO / "configs" / "train-smollm2-lora.yaml"
    code, out, err = sectune_cli("check", "--config", config, "--set", "train.max_steps=7")
    assert code == 0 and err == ""
    printed = yaml.safe_load(out)
    assert printed["train"]["max_steps"] == 7 and printed["model"] == "smollm2-135m"
    assert "lr_scheduler" in printed["train"] and "judge" in printed["eval"]  # defaults filled in
    assert printed == load_config(config, ["train.max_steps=7"]).model_dump(mode="json")


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_passes_check(path, sectune_cli):
    code, out, err = sectune_cli("check", "--config", path)
    assert code == 0, err
    assert yaml.safe_load(out)["name"] == yaml.safe_load(path.read_text())["name"]


def test_check_a_local_model_folder_and_a_train_run(tmp_path, sectune_cli):
    model = tmp_path / "my-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    run_dir = tmp_path / "run"
    (run_dir / "adapter").mkdir(parents=True)
    (run_dir / "summary.json").write_text("{}")
    code, _, err = sectune_cli("check", "--set", f"model={model}", "--set", f"train.model={model}")
    assert code == 0, err
    code, _, err = sectune_cli("check", "--set", f"model={run_dir}")  # inference may use a run
    assert code == 0, err
    code, _, err = sectune_cli("check", "--set", f"train.model={run_dir}")  # training may not
    assert_one_line_error(code, err, "train.model", "no config.json")


def test_loading_and_checking_a_config_imports_neither_torch_nor_transformers():
    code = (
        "import sys; from sectune.config import load_config; from sectune.registry.refs import check_model_refs; "
        "check_model_refs(load_config('configs/study-smollm2.yaml'), source='x'); "
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.stdout.strip() == "[]", done.stderr


# --- class 8: the help and the README say what the code does ----------------------------------------------


def commands() -> dict:
    import typer.main

    from sectune.cli.main import app

    return dict(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def option(command, name: str):
    return next((p for p in command.params if name in getattr(p, "opts", [])), None)


def test_only_generate_and_train_resume_and_the_readme_says_so():
    resumable = sorted(name for name, command in commands().items() if option(command, "--resume"))
    assert resumable == ["generate", "train"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    usage = next(line for line in readme.splitlines() if line.startswith("sectune STAGE"))
    assert "--resume" not in usage
    assert "`generate` and `train` also take `--resume`" in readme


def test_each_set_option_shows_an_example_from_its_own_command_and_a_readable_metavar(sectune_cli):
    examples = {}
    for name, command in commands().items():
        found = option(command, "--set")
        if found is None:
            continue
        assert found.metavar == "KEY=VALUE", name
        examples[name] = found.help.rsplit("--set ", 1)[1]
        code, out, _ = sectune_cli(name, "--help")
        options = out[out.index("Options:") :]
        assert code == 0 and "--set KEY=VALUE" in options and "list[" not in options, out
    assert set(examples) >= {"generate", "topics", "prep", "inspect", "train", "plan", "eval", "study", "demo", "check"}
    assert len(set(examples.values())) == len(examples), examples  # not the same example everywhere
    for name in ("generate", "topics", "prep", "train", "eval", "study"):
        section = {"topics": "generate", "inspect": "prep"}.get(name, name)
        assert examples[name].startswith(f"{section}."), (name, examples[name])
