"""Golden renderings of every registry family's chat template, hand-checked against the official formats.

The goldens are literal strings written from each family's published format (model cards and the
hub's tokenizer_config.json); the test loops over the model REGISTRY, so a new model whose family has
no golden fails here.
"""

from __future__ import annotations

import re

import pytest

from sectune.registry.models import REGISTRY

SYSTEM = {"role": "system", "content": "You are a security assistant."}
CHAT = [
    {"role": "user", "content": "What is a firewall?"},
    {"role": "assistant", "content": "It filters traffic."},
    {"role": "user", "content": "And a VPN?"},
    {"role": "assistant", "content": "It encrypts traffic."},
]


def chatml(system: str) -> str:
    return (
        f"<|im_start|>system\n{system}<|im_end|>\n"
        "<|im_start|>user\nWhat is a firewall?<|im_end|>\n"
        "<|im_start|>assistant\nIt filters traffic.<|im_end|>\n"
        "<|im_start|>user\nAnd a VPN?<|im_end|>\n"
        "<|im_start|>assistant\nIt encrypts traffic.<|im_end|>\n"
    )


LLAMA3_TURNS = (
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is a firewall?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nIt filters traffic.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nAnd a VPN?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nIt encrypts traffic.<|eot_id|>"
)
LLAMA31_SYSTEM = (  # Llama 3.1 / 3.2 always open with this system turn, system prompt or not (date fixed by sectune)
    "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
    "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
)
PHI3_TURNS = (
    "<|user|>\nWhat is a firewall?<|end|>\n<|assistant|>\nIt filters traffic.<|end|>\n"
    "<|user|>\nAnd a VPN?<|end|>\n<|assistant|>\nIt encrypts traffic.<|end|>\n<|endoftext|>"
)
ZEPHYR_TURNS = (
    "<|user|>\nWhat is a firewall?</s>\n<|assistant|>\nIt filters traffic.</s>\n"
    "<|user|>\nAnd a VPN?</s>\n<|assistant|>\nIt encrypts traffic.</s>\n"
)

# family → (with system prompt, without system prompt, generation prompt after the first question)
GOLDEN: dict[str, tuple[str, str, str]] = {
    "smollm2": (
        chatml("You are a security assistant."),
        chatml("You are a helpful AI assistant named SmolLM, trained by Hugging Face"),  # its default system prompt
        "<|im_start|>assistant\n",
    ),
    "qwen2.5": (
        chatml("You are a security assistant."),
        chatml("You are Qwen, created by Alibaba Cloud. You are a helpful assistant."),
        "<|im_start|>assistant\n",
    ),
    "llama3": (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are a security assistant.<|eot_id|>"
        + LLAMA3_TURNS,
        "<|begin_of_text|>" + LLAMA3_TURNS,
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "llama3.1": (
        LLAMA31_SYSTEM + "You are a security assistant.<|eot_id|>" + LLAMA3_TURNS,
        LLAMA31_SYSTEM + "<|eot_id|>" + LLAMA3_TURNS,
        "<|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "mistral": (  # no system role: folded into the first user turn
        "<s>[INST] You are a security assistant.\n\nWhat is a firewall? [/INST]It filters traffic.</s>"
        "[INST] And a VPN? [/INST]It encrypts traffic.</s>",
        "<s>[INST] What is a firewall? [/INST]It filters traffic.</s>[INST] And a VPN? [/INST]It encrypts traffic.</s>",
        "[INST] What is a firewall? [/INST]",
    ),
    "mistral-v3": (  # no space before [/INST], one before the answer; system prompt before the LAST user message
        "<s>[INST] What is a firewall?[/INST] It filters traffic.</s>"
        "[INST] You are a security assistant.\n\nAnd a VPN?[/INST] It encrypts traffic.</s>",
        "<s>[INST] What is a firewall?[/INST] It filters traffic.</s>[INST] And a VPN?[/INST] It encrypts traffic.</s>",
        "[INST] What is a firewall?[/INST]",
    ),
    "gemma": (  # no system role: folded into the first user turn
        "<bos><start_of_turn>user\nYou are a security assistant.\n\nWhat is a firewall?<end_of_turn>\n"
        "<start_of_turn>model\nIt filters traffic.<end_of_turn>\n"
        "<start_of_turn>user\nAnd a VPN?<end_of_turn>\n<start_of_turn>model\nIt encrypts traffic.<end_of_turn>\n",
        "<bos><start_of_turn>user\nWhat is a firewall?<end_of_turn>\n"
        "<start_of_turn>model\nIt filters traffic.<end_of_turn>\n"
        "<start_of_turn>user\nAnd a VPN?<end_of_turn>\n<start_of_turn>model\nIt encrypts traffic.<end_of_turn>\n",
        "<start_of_turn>model\n",
    ),
    "phi3": (
        "<|system|>\nYou are a security assistant.<|end|>\n" + PHI3_TURNS,
        PHI3_TURNS,
        "<|assistant|>\n",
    ),
    "zephyr": (
        "<s><|system|>\nYou are a security assistant.</s>\n" + ZEPHYR_TURNS,
        "<s>" + ZEPHYR_TURNS,
        "<|assistant|>\n",
    ),
}


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_every_registry_model_renders_its_golden(key, family_tokenizer):
    family = REGISTRY[key].family
    assert family in GOLDEN, f"no golden rendering for family '{family}' (model {key}): add one to GOLDEN"
    with_system, without_system, _ = GOLDEN[family]
    tokenizer = family_tokenizer(family)
    assert tokenizer.apply_chat_template([SYSTEM, *CHAT], tokenize=False) == with_system
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == without_system


@pytest.mark.parametrize("family", sorted(GOLDEN))
def test_generation_prompt_ends_with_assistant_header(family, family_tokenizer):
    tokenizer = family_tokenizer(family)
    prompt = tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith(GOLDEN[family][2])
    full = tokenizer.apply_chat_template(CHAT[:2], tokenize=False)
    assert full.startswith(prompt)  # inference sees exactly the context training saw


@pytest.mark.parametrize("family", sorted(GOLDEN))
def test_template_marks_answer_and_end_of_turn(family, family_tokenizer):
    """Generation markers wrap the answer and its end-of-turn token (else the model never learns to stop)."""
    from sectune.data.checks import check_template
    from sectune.data.families import FAMILIES
    from sectune.registry.models import template_path

    source = template_path(family).read_text(encoding="utf-8")
    assert re.search(r"\{%-?\s*generation\s*-?%\}", source)
    result = check_template(family_tokenizer(family), family)
    assert result.ok, result.problem
    assert result.end_of_turn_token == FAMILIES[family].end_of_turn


@pytest.mark.parametrize("family", ["mistral", "gemma"])
def test_families_without_system_role_fold_it_into_first_user_turn(family, family_tokenizer):
    spec = next(s for s in REGISTRY.values() if s.family == family)
    assert spec.system_role is False
    text = family_tokenizer(family).apply_chat_template([SYSTEM, *CHAT], tokenize=False)
    assert text.count("You are a security assistant.") == 1
    assert text.index("You are a security assistant.") < text.index("What is a firewall?")
    assert "system" not in text


def test_mistral_v3_puts_the_system_prompt_before_the_last_user_message(family_tokenizer):
    """As mistral-common (Mistral's reference tokenizer) does. The stock v0.3 hub template adds it only when the
    conversation ends on that user message, so a training row ending with an answer would lose it."""
    spec = REGISTRY["mistral-7b-instruct-v0.3"]
    assert spec.family == "mistral-v3" and spec.system_role is False
    tokenizer = family_tokenizer("mistral-v3")
    text = tokenizer.apply_chat_template([SYSTEM, *CHAT], tokenize=False)
    assert text.count("You are a security assistant.") == 1
    assert text.index("What is a firewall?") < text.index("You are a security assistant.") < text.index("And a VPN?")
    assert "system" not in text
    one_turn = tokenizer.apply_chat_template([SYSTEM, *CHAT[:2]], tokenize=False)
    assert one_turn == "<s>[INST] You are a security assistant.\n\nWhat is a firewall?[/INST] It filters traffic.</s>"


@pytest.mark.parametrize("family", ["mistral", "mistral-v3", "gemma"])
def test_alternation_enforced_where_the_official_template_enforces_it(family, family_tokenizer):
    with pytest.raises(Exception, match="alternate"):
        family_tokenizer(family).apply_chat_template([CHAT[0], CHAT[0], CHAT[1]], tokenize=False)


def test_smollm2_template_matches_the_stock_one_byte_for_byte():
    """sectune's SmolLM2 template renders exactly as the model's own (stock) template, markers aside."""
    from sectune.paths import cache_dir

    stock = cache_dir() / "models" / "smollm2-135m-instruct" / "chat_template.jinja"
    if not stock.is_file():
        pytest.skip("embedded SmolLM2 not built in the cache")
    from transformers.utils.chat_template_utils import render_jinja_template

    from sectune.registry.models import template_path

    ours = template_path("smollm2").read_text(encoding="utf-8")
    for chat in ([SYSTEM, *CHAT], CHAT):
        for generation_prompt in (False, True):
            conversation = chat[:-1] if generation_prompt else chat
            rendered = [
                render_jinja_template([conversation], chat_template=template, add_generation_prompt=generation_prompt)[
                    0
                ][0]
                for template in (ours, stock.read_text(encoding="utf-8"))
            ]
            assert rendered[0] == rendered[1]


# Whole inference prompts (add_generation_prompt=True), written from the official formats: what a server rendering
# the official template sends the model. Each must also be the start of the training text of the same conversation.
LLAMA31_PROMPT_TURNS = (
    "<|start_header_id|>user<|end_header_id|>\n\nWhat is a firewall?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\nIt filters traffic.<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\nAnd a VPN?<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)
PROMPTS: dict[str, list[tuple[list[dict[str, str]], str]]] = {
    "llama3.1": [
        (
            CHAT[:1],
            LLAMA31_SYSTEM + "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nWhat is a firewall?<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\n",
        ),
        (CHAT[:3], LLAMA31_SYSTEM + "<|eot_id|>" + LLAMA31_PROMPT_TURNS),
        ([SYSTEM, *CHAT[:3]], LLAMA31_SYSTEM + "You are a security assistant.<|eot_id|>" + LLAMA31_PROMPT_TURNS),
    ],
    "mistral-v3": [
        (CHAT[:1], "<s>[INST] What is a firewall?[/INST]"),
        ([SYSTEM, CHAT[0]], "<s>[INST] You are a security assistant.\n\nWhat is a firewall?[/INST]"),
        (CHAT[:3], "<s>[INST] What is a firewall?[/INST] It filters traffic.</s>[INST] And a VPN?[/INST]"),
        (
            [SYSTEM, *CHAT[:3]],
            "<s>[INST] What is a firewall?[/INST] It filters traffic.</s>"
            "[INST] You are a security assistant.\n\nAnd a VPN?[/INST]",
        ),
    ],
}


@pytest.mark.parametrize("family", sorted(PROMPTS))
def test_inference_prompt_is_the_official_one_and_starts_the_training_text(family, family_tokenizer):
    from sectune.data.render import prompt_completion

    tokenizer = family_tokenizer(family)
    for conversation, golden in PROMPTS[family]:
        assert tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True) == golden
        answer = CHAT[sum(m["role"] != "system" for m in conversation)]
        row = [*conversation, answer]
        pair = prompt_completion(tokenizer, row)  # raises when the prompt is not a prefix of the training text
        assert tokenizer.bos_token + pair["prompt"] == golden  # the BOS the tokenizer adds itself is left out
        assert tokenizer.apply_chat_template(row, tokenize=False) == golden + pair["completion"]
    with_system = next(golden for conversation, golden in PROMPTS[family] if conversation == [SYSTEM, *CHAT[:3]])
    assert GOLDEN[family][0].startswith(with_system)


@pytest.mark.parametrize(
    ("family", "answers"),
    [
        ("llama3.1", ["It filters traffic.<|eot_id|>", "It encrypts traffic.<|eot_id|>"]),
        # after [/INST] the model writes " answer</s>": the space is its output (alone a token before some
        # answers), so it is trained with the answer
        ("mistral-v3", [" It filters traffic.</s>", " It encrypts traffic.</s>"]),
    ],
)
def test_generation_spans_are_exactly_the_answers_and_end_of_turn(family, answers):
    from transformers.utils.chat_template_utils import render_jinja_template

    from sectune.data.families import FAMILIES
    from sectune.registry.models import template_path

    tokens = FAMILIES[family]
    rendered = render_jinja_template(
        [[SYSTEM, *CHAT]],
        chat_template=template_path(family).read_text(encoding="utf-8"),
        return_assistant_tokens_mask=True,
        bos_token=tokens.bos,
        eos_token=tokens.eos,
    )
    text, spans = rendered[0][0], rendered[1][0]
    assert [text[start:end] for start, end in spans] == answers


@pytest.mark.parametrize("name", ["llama3_1", "llama3_2"])
def test_llama31_renders_as_the_official_llama_3_1_and_3_2_templates(name):
    """The official Llama 3.1 / 3.2 templates, as trl ships them (trl/chat_templates), rendered by transformers.

    3.2's stock template writes today's date (strftime_now): rendered here with 3.1's default date, the one
    sectune fixes. Tool calling aside, the official text equals sectune's, markers aside.
    """
    from importlib import resources

    from transformers.utils.chat_template_utils import render_jinja_template

    from sectune.registry.models import template_path

    official = resources.files("trl") / "chat_templates" / f"{name}.jinja"
    if not official.is_file():
        pytest.skip(f"this trl version ships no {name}.jinja")
    ours = template_path("llama3.1").read_text(encoding="utf-8")
    tokens = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
    for conversation in ([SYSTEM, *CHAT], CHAT, [SYSTEM, *CHAT[:3]], CHAT[:3], [SYSTEM, CHAT[0]], CHAT[:1]):
        generation_prompt = conversation[-1]["role"] == "user"
        mine = render_jinja_template(
            [conversation], chat_template=ours, add_generation_prompt=generation_prompt, **tokens
        )
        theirs = render_jinja_template(
            [conversation],
            chat_template=official.read_text(encoding="utf-8"),
            add_generation_prompt=generation_prompt,
            date_string="26 Jul 2024",
            **tokens,
        )
        assert mine[0][0] == theirs[0][0]
