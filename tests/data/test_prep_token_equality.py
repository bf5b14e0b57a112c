"""One template from data to inference: sectune's training rendering equals apply_chat_template, token for token.

For every registry family (offline tokenizers carrying the family's special tokens), the ids and the
assistant mask sectune computes equal what ``tokenizer.apply_chat_template`` (what trl calls) returns,
and the exported prompt/completion text tokenises to the same ids.
"""

from __future__ import annotations

import pytest

from sectune.registry.models import REGISTRY

ROWS = [
    [
        {"role": "system", "content": "You are a security assistant."},
        {"role": "user", "content": "What is a firewall?"},
        {"role": "assistant", "content": "A firewall filters network traffic."},
    ],
    [
        {"role": "user", "content": "How do I reset my password?"},
        {"role": "assistant", "content": "Open the account settings and choose reset."},
        {"role": "user", "content": "And if the email never comes?"},
        {"role": "assistant", "content": "Check the spam folder, then ask IT support (ext. 42)."},
    ],
    [
        {"role": "user", "content": "Explain encryption: «simple» terms, ünïcödé & <tags>."},
        {"role": "assistant", "content": "Encryption turns data into ciphertext.\n\n- keys\n- ciphers"},
    ],
]


@pytest.mark.parametrize("key", sorted(REGISTRY))
@pytest.mark.parametrize("row", range(len(ROWS)))
def test_training_rendering_equals_apply_chat_template(key, row, family_tokenizer):
    from sectune.data.render import tokenize_for_training

    tokenizer = family_tokenizer(REGISTRY[key].family)
    messages = ROWS[row]
    ours = tokenize_for_training(tokenizer, messages)
    reference = tokenizer.apply_chat_template(
        messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    assert ours.input_ids == list(reference["input_ids"])
    assert ours.assistant_mask == list(reference["assistant_masks"])
    assert 0 < ours.trained_tokens < len(ours.input_ids)


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_prompt_completion_export_tokenises_to_the_same_ids(key, family_tokenizer):
    """The seed-style prompt/completion text is the same conversation, token for token, under trl's text path."""
    from trl.data_utils import _tokenize  # what SFTTrainer calls on text rows (special tokens on)

    from sectune.data.render import prompt_completion, tokenize_for_training

    tokenizer = family_tokenizer(REGISTRY[key].family)
    for messages in ROWS:
        pair = prompt_completion(tokenizer, messages)
        ids = list(_tokenize(tokenizer, pair["prompt"] + pair["completion"])["input_ids"])
        assert ids == tokenize_for_training(tokenizer, messages).input_ids  # one BOS, never two
        prompt_ids = list(_tokenize(tokenizer, pair["prompt"])["input_ids"])
        assert ids[: len(prompt_ids)] == prompt_ids  # the prompt is a token prefix: trl trains the exact context
        answer = messages[-1]["content"]
        assert pair["completion"].removeprefix(" ").startswith(answer.strip())  # Mistral v0.3: " answer</s>"


def test_train_template_is_the_one_stored_with_the_dataset(tmp_path, chat_jsonl, cfg, family_tokenizer):
    """prep stores the exact template it rendered with; it is the registry file load_tokenizer sets too."""
    from sectune.data.api import prepare
    from sectune.registry.models import template_path

    out = prepare(cfg(), chat_jsonl, tmp_path / "ds", tokenizer=family_tokenizer("smollm2"))
    stored = (out / "chat_template.jinja").read_text(encoding="utf-8")
    assert stored == template_path("smollm2").read_text(encoding="utf-8")


@pytest.mark.slow
def test_real_smollm2_tokenizer_equality():
    """The embedded SmolLM2's real tokenizer (49k BPE) gives the same ids and mask both ways."""
    from sectune.data.render import load_prep_tokenizer, tokenize_for_training

    tokenizer = load_prep_tokenizer("smollm2-135m")
    for messages in ROWS:
        ours = tokenize_for_training(tokenizer, messages)
        reference = tokenizer.apply_chat_template(
            messages, tokenize=True, return_dict=True, return_assistant_tokens_mask=True
        )
        assert ours.input_ids == list(reference["input_ids"])
        assert ours.assistant_mask == list(reference["assistant_masks"])
