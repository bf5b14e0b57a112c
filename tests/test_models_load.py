"""models/load.py: resolving references, loading run folders with their template, batched generation."""

import json

import pytest
import torch

from sectune.errors import UserError
from sectune.models.generation import generate_chat
from sectune.models.load import is_train_run, load_for_inference, resolve_model

QUESTION = [{"role": "user", "content": "What is a firewall?"}]


def test_resolve_rejects_unknown_reference_with_suggestion():
    with pytest.raises(UserError, match="smollm2-135m"):
        resolve_model("smollm2-13m")


def test_resolve_rejects_folder_without_config(tmp_path):
    with pytest.raises(UserError, match=r"config\.json"):
        resolve_model(tmp_path)


def test_folder_loads_for_inference_and_generates(tiny_model_dir):
    model, tokenizer = load_for_inference(tiny_model_dir)
    assert not model.training
    results = generate_chat(model, tokenizer, [QUESTION, QUESTION], max_new_tokens=5, batch_size=2)
    assert len(results) == 2
    # random weights: same prompt, greedy → same answer; never more tokens than asked for
    assert results[0].text == results[1].text
    assert all(r.completion_tokens <= 5 for r in results)
    assert all(r.finish_reason in {"stop", "length"} for r in results)


def test_train_run_folder_loads_adapter_and_its_template(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    peft_model = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    run = tmp_path / "run"
    peft_model.save_pretrained(str(run / "adapter"))
    (run / "summary.json").write_text(json.dumps({"base_model": str(tiny_model_dir), "method": "lora"}))
    (run / "chat_template.jinja").write_text("{% for m in messages %}<<{{ m['content'] }}>>{% endfor %}")
    assert is_train_run(run)

    model, tokenizer = load_for_inference(run)
    rendered = tokenizer.apply_chat_template(QUESTION, tokenize=False)
    assert rendered == "<<What is a firewall?>>"
    ids = tokenizer("What is a firewall?", return_tensors="pt").input_ids
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    with torch.no_grad():
        assert not torch.allclose(model(ids).logits, plain(ids).logits)


def test_run_without_base_model_is_a_user_error(tiny_model_dir, tmp_path):
    run = tmp_path / "run"
    (run / "adapter").mkdir(parents=True)
    (run / "summary.json").write_text("{}")
    with pytest.raises(UserError, match="base_model"):
        load_for_inference(run)


@pytest.mark.slow
def test_embedded_model_builds_and_answers():
    from sectune.registry.embedded import ensure_embedded_model

    folder = ensure_embedded_model()
    assert (folder / "model.safetensors").is_file()
    model, tokenizer = load_for_inference("smollm2-135m", dtype=torch.bfloat16)
    [answer] = generate_chat(model, tokenizer, [QUESTION], max_new_tokens=24)
    assert "firewall" in answer.text.lower() or "network" in answer.text.lower()


def test_hub_model_missing_offline_fails_at_once_with_the_download_command(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(UserError, match=r"hf download mistralai/Mistral-7B-v0\.1"):
        resolve_model("mistral-7b")
