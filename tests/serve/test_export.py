"""sectune export: a tiny LoRA run merged into a standalone folder, its card, its Modelfile, bad runs refused."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

QA = [
    ("What is a firewall?", "A firewall filters network traffic according to rules."),
    ("What is phishing?", "Phishing emails trick users into revealing passwords."),
    ("What is a VPN?", "A VPN encrypts traffic between two endpoints."),
]
PROMPTS = [
    [{"role": "user", "content": "What is a firewall?"}],
    [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why keep backups?"}],
]


def write_dataset(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", 8), ("test", 2)):
        rows = []
        for index in range(count):
            question, answer = QA[index % len(QA)]
            messages = [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": question},
                {"role": "assistant", "content": answer},
            ]
            rows.append(json.dumps({"messages": messages, "meta": {"index": index}}) + "\n")
        (folder / f"{name}.jsonl").write_text("".join(rows), encoding="utf-8")
    return folder


def train_tiny(model_dir: Path, work: Path, method: str) -> Path:
    from sectune.api import train
    from sectune.config import load_config

    cfg = load_config(
        None,
        [
            f"model={model_dir}",
            "seed=7",
            f"train.method={method}",
            "train.max_steps=2",
            "train.batch_size=2",
            "train.grad_accum=1",
            "train.learning_rate=5e-3",
            "train.logging_steps=1",
            "train.save_steps=2",
            "train.precision=fp32",
            "train.stop_check.enabled=false",
        ],
    )
    return train(cfg, write_dataset(work / "dataset"), work / "run")


@pytest.fixture(scope="module")
def lora_run(tiny_model_dir, tmp_path_factory) -> Path:
    return train_tiny(tiny_model_dir, tmp_path_factory.mktemp("export-run"), "lora")


@pytest.fixture(scope="module")
def eval_dir(tmp_path_factory) -> Path:
    """A finished eval folder as sectune eval writes it (its summary.json only)."""
    folder = tmp_path_factory.mktemp("eval")
    summary = {
        "targets": {
            "run": {
                "generation": {
                    "rouge_l": {"value": 0.4321, "ci_low": 0.3012, "ci_high": 0.5543, "n": 4},
                    "examples": 4,
                },
                "mcq": {
                    "secqa": {"methods": {"loglik": {"accuracy": {"value": 0.5, "ci_low": 0.25, "ci_high": 0.75}}}}
                },
            }
        },
        "order": ["run"],
    }
    (folder / "summary.json").write_text(json.dumps(summary), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def exported(lora_run, eval_dir, tmp_path_factory) -> Path:
    from sectune.api import export

    return export(lora_run, tmp_path_factory.mktemp("exports") / "merged", eval_dir=eval_dir)


def _greedy(model, tokenizer) -> list[list[int]]:
    import torch

    outputs = []
    for conversation in PROMPTS:
        text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        batch = tokenizer(text, return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(
                **batch, max_new_tokens=8, min_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id
            )
        outputs.append(out[0, batch["input_ids"].shape[1] :].tolist())
    return outputs


def test_the_merged_export_generates_like_base_plus_adapter(lora_run, exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sectune.models.load import load_for_inference

    reference, run_tokenizer = load_for_inference(lora_run)
    merged = AutoModelForCausalLM.from_pretrained(exported)
    merged.eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert _greedy(merged, tokenizer) == _greedy(reference, run_tokenizer)


def test_a_full_run_exports_the_same_way(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sectune.api import export
    from sectune.models.load import load_for_inference

    run = train_tiny(tiny_model_dir, tmp_path / "full", "full")
    out = export(run, tmp_path / "full-export")
    reference, run_tokenizer = load_for_inference(run)
    merged = AutoModelForCausalLM.from_pretrained(out)
    assert _greedy(merged.eval(), AutoTokenizer.from_pretrained(out)) == _greedy(reference, run_tokenizer)
    assert "tags:\n- sectune\n- full" in (out / "README.md").read_text(encoding="utf-8")
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))


def test_the_tokenizer_and_generation_config_carry_the_run_template_and_end_of_turn(lora_run, exported):
    from transformers import AutoTokenizer, GenerationConfig

    from sectune.serve.export import portable_template

    run_template = (lora_run / "chat_template.jinja").read_text(encoding="utf-8")
    tokenizer = AutoTokenizer.from_pretrained(exported)
    assert tokenizer.chat_template == portable_template(run_template)
    assert "generation %}" not in tokenizer.chat_template
    conversation = [*PROMPTS[1], {"role": "assistant", "content": "Restore."}]
    from jinja2 import Template

    assert tokenizer.apply_chat_template(conversation, tokenize=False) == Template(
        run_template.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    ).render(messages=conversation, bos_token=tokenizer.bos_token, add_generation_prompt=False)
    eos = GenerationConfig.from_pretrained(exported).eos_token_id
    eos = [eos] if isinstance(eos, int) else eos
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in eos


def test_only_safetensors_weights(exported):
    assert list(exported.glob("*.safetensors"))
    assert not list(exported.glob("*.bin")) and not list(exported.glob("*.pt"))


def test_the_model_card_names_base_method_and_an_eval_interval(lora_run, exported, tiny_model_dir):
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    front = yaml.safe_load(card.split("---\n")[1])
    assert front["base_model"] == str(tiny_model_dir)
    assert front["library_name"] == "transformers" and front["tags"] == ["sectune", "lora"]
    summary = json.loads((lora_run / "summary.json").read_text())
    assert summary["data_fingerprint"] in card
    assert "| rouge_l | 0.4321 [0.3012, 0.5543] |" in card
    assert "accuracy | 0.5 [0.25, 0.75] |" in card
    for section in ("## Training", "## Data", "## Evaluation", "## Intended use and limitations"):
        assert section in card


def test_the_modelfile_has_from_template_and_stop_tokens(exported):
    text = (exported / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./\n" in text
    assert 'TEMPLATE """' in text and "<|im_start|>assistant" in text
    assert 'PARAMETER stop "<|im_end|>"' in text


def test_a_qlora_card_says_the_base_was_dequantized():
    from sectune.models.load import ResolvedModel
    from sectune.serve.export import ChatFormat, model_card, modelfile

    summary = {"base_model": "x", "method": "qlora", "rows": {"train": 3}, "data_fingerprint": "abc"}
    card = model_card(summary, {}, ResolvedModel("x", None, "x"), ChatFormat("llama3", ["<|eot_id|>"]), None)
    assert "de-quantized" in card and "Not evaluated" in card
    llama = modelfile(ChatFormat("llama3", ["<|eot_id|>"]))
    assert "<|start_header_id|>assistant<|end_header_id|>" in llama and 'PARAMETER stop "<|eot_id|>"' in llama
    assert "NOTE" in modelfile(ChatFormat("gemma", ["<end_of_turn>"]))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sectune", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("kind", ["not-a-run", "unfinished", "missing"])
def test_a_bad_run_is_one_line_exit_2_and_no_out(tmp_path, kind):
    run = tmp_path / "run"
    if kind == "not-a-run":
        run.mkdir()
        (run / "notes.txt").write_text("hello")
    elif kind == "unfinished":
        (run / "adapter").mkdir(parents=True)
        (run / "summary.json").write_text("{}")
        (run / "INCOMPLETE").write_text("")
    out = tmp_path / "out"
    result = _cli("export", str(run), "--out", str(out))
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_an_existing_out_needs_overwrite(lora_run, exported):
    from sectune.errors import UserError
    from sectune.serve.export import export

    with pytest.raises(UserError, match="already exists"):
        export(lora_run, exported)


def test_end_of_turn_ids_add_the_family_token_to_the_configured_eos():
    from types import SimpleNamespace

    from sectune.models.load import ResolvedModel
    from sectune.registry.models import REGISTRY
    from sectune.serve.export import _end_token_ids, chat_format, modelfile
    from sectune.testing.tiny import tiny_family_tokenizer

    tokenizer = tiny_family_tokenizer("phi3")  # eos <|endoftext|>, end of turn <|end|>
    spec = next(s for s in REGISTRY.values() if s.family == "phi3")
    chat = chat_format(ResolvedModel("x", spec, spec.key), tokenizer.chat_template, tokenizer.eos_token)
    model = SimpleNamespace(generation_config=SimpleNamespace(eos_token_id=tokenizer.eos_token_id))
    ids = _end_token_ids(tokenizer, model, chat.end_tokens)
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|end|>") and tokenizer.eos_token_id in ids
    assert 'PARAMETER stop "<|end|>"' in modelfile(chat)
    assert "SYSTEM" in modelfile(chat_format(ResolvedModel("x", REGISTRY["smollm2-135m"], "s"), "", None))


def test_the_cli_exports_with_an_eval_folder(lora_run, eval_dir, tmp_path):
    out = tmp_path / "cli-export"
    result = _cli("export", str(lora_run), "--out", str(out), "--eval", str(eval_dir))
    assert result.returncode == 0, result.stderr
    assert "0.4321 [0.3012, 0.5543]" in (out / "README.md").read_text(encoding="utf-8")
    again = _cli("export", str(lora_run), "--out", str(out))
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert _cli("export", str(lora_run), "--out", str(out), "--overwrite").returncode == 0


def test_every_registry_model_names_its_licence_and_the_card_carries_it():
    import yaml

    from sectune.models.load import ResolvedModel
    from sectune.registry.models import REGISTRY
    from sectune.serve.export import ChatFormat, model_card

    assert all(spec.license for spec in REGISTRY.values())
    spec = REGISTRY["llama-3.1-8b-instruct"]
    summary = {"base_model": spec.key, "method": "lora", "rows": {"train": 3}, "data_fingerprint": "abc"}
    card = model_card(summary, {}, ResolvedModel("x", spec, spec.key), ChatFormat("llama3", ["<|eot_id|>"]), None)
    front = yaml.safe_load(card.split("---")[1])
    assert front["license"] == "llama3.1" and front["base_model"] == spec.hub_id


def test_push_to_hub_dry_run_lists_the_export_and_a_missing_token_fails_before_it(lora_run, tmp_path):
    import os

    env = {k: v for k, v in os.environ.items() if k != "HF_TOKEN"}
    dry = subprocess.run(
        [sys.executable, "-m", "sectune", "export", str(lora_run), "--out", str(tmp_path / "dry"),
         "--push-to-hub", "me/sec-model", "--dry-run"],
        capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    assert "would upload" in dry.stdout and "me/sec-model" in dry.stdout
    assert "README.md" in dry.stdout and "model.safetensors" in dry.stdout and "Modelfile" in dry.stdout
    real = subprocess.run(
        [sys.executable, "-m", "sectune", "export", str(lora_run), "--out", str(tmp_path / "real"),
         "--push-to-hub", "me/sec-model"],
        capture_output=True, text=True, timeout=300, env={**env, "HF_HUB_OFFLINE": "0"}, cwd=tmp_path,
    )  # fmt: skip
    assert real.returncode == 2 and "HF_TOKEN" in real.stderr and len(real.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "real").exists()  # refused before the merge
