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
    "mistral": (  # tokenizer V1: a space before [INST], both sides of [/INST]; system folded into the FIRST user turn
        "<s> [INST] You are a security assistant.\n\nWhat is a firewall? [/INST] It filters traffic.</s>"
        " [INST] And a VPN? [/INST] It encrypts traffic.</s>",
        "<s> [INST] What is a firewall? [/INST] It filters traffic.</s>"
        " [INST] And a VPN? [/INST] It encrypts traffic.</s>",
        " [INST] What is a firewall? [/INST]",
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
    "mistral": [
        (CHAT[:1], "<s> [INST] What is a firewall? [/INST]"),
        ([SYSTEM, CHAT[0]], "<s> [INST] You are a security assistant.\n\nWhat is a firewall? [/INST]"),
        (CHAT[:3], "<s> [INST] What is a firewall? [/INST] It filters traffic.</s> [INST] And a VPN? [/INST]"),
        (
            [SYSTEM, *CHAT[:3]],
            "<s> [INST] You are a security assistant.\n\nWhat is a firewall? [/INST] It filters traffic.</s>"
            " [INST] And a VPN? [/INST]",
        ),
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


# after [/INST] a Mistral model writes " answer</s>": the space is its output (alone a token before some answers),
# so it is trained with the answer
SPACE_BEFORE_ANSWER = {"mistral", "mistral-v3"}


@pytest.mark.parametrize("family", sorted(GOLDEN))
def test_generation_spans_are_exactly_the_answers_and_end_of_turn(family):
    """The markers are the one thing sectune adds to each official format; they wrap answer + end-of-turn, no more."""
    from transformers.utils.chat_template_utils import render_jinja_template

    from sectune.data.families import FAMILIES
    from sectune.registry.models import template_path

    tokens = FAMILIES[family]
    space = " " if family in SPACE_BEFORE_ANSWER else ""
    answers = [space + m["content"] + tokens.end_of_turn for m in CHAT if m["role"] == "assistant"]
    rendered = render_jinja_template(
        [[SYSTEM, *CHAT]],
        chat_template=template_path(family).read_text(encoding="utf-8"),
        return_assistant_tokens_mask=True,
        bos_token=tokens.bos,
        eos_token=tokens.eos,
    )
    text, spans = rendered[0][0], rendered[1][0]
    assert [text[start:end] for start, end in spans] == answers


# The official templates, as trl ships them (trl/chat_templates: the hub's own templates, which trl keeps to recognise
# models), rendered by transformers' apply_chat_template next to sectune's. The generation markers render nothing,
# so the texts must be equal; each intended difference is checked by its own test below.
CONVERSATIONS = [
    [SYSTEM, *CHAT],  # training rows: two turns, one turn
    CHAT,
    [SYSTEM, *CHAT[:2]],
    CHAT[:2],
    [SYSTEM, *CHAT[:3]],  # inference prompts: after one turn, first question
    CHAT[:3],
    [SYSTEM, CHAT[0]],
    CHAT[:1],
]
OFFICIAL = [
    ("llama3", "llama3"),  # Llama 3: equal
    ("llama3.1", "llama3_1"),  # Llama 3.1: equal (tool calling left out)
    ("llama3.1", "llama3_2"),  # Llama 3.2: equal with 3.1's date, which sectune fixes (tool calling left out)
    ("gemma", "gemma"),  # Gemma (1 and 2): equal without a system prompt; the official refuses one
    ("phi3", "phi3"),  # Phi-3: equal
    ("qwen2.5", "qwen2_5"),  # Qwen 2.5: equal (tool calling left out)
]
# 3.2's stock template writes today's date (strftime_now): rendered with the date sectune fixes, 3.1's default
OFFICIAL_KWARGS: dict[str, dict[str, str]] = {"llama3_2": {"date_string": "26 Jul 2024"}}


def official_template(name: str) -> str:
    from importlib import resources

    path = resources.files("trl") / "chat_templates" / f"{name}.jinja"
    if not path.is_file():
        pytest.skip(f"this trl version ships no {name}.jinja")
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize(("family", "name"), OFFICIAL)
def test_family_renders_as_the_official_template(family, name, family_tokenizer):
    official = official_template(name)
    tokenizer = family_tokenizer(family)
    compared = 0
    for conversation in CONVERSATIONS:
        if family == "gemma" and conversation[0]["role"] == "system":
            continue  # the official Gemma template refuses a system prompt: see the folding test below
        for generation_prompt in (False, True):
            mine = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
            theirs = tokenizer.apply_chat_template(
                conversation,
                chat_template=official,
                tokenize=False,
                add_generation_prompt=generation_prompt,
                **OFFICIAL_KWARGS.get(name, {}),
            )
            assert mine == theirs, (conversation, generation_prompt)
            compared += 1
    assert compared >= 8


@pytest.mark.parametrize("name", ["llama3_1", "llama3_2"])
def test_llama31_honours_date_string_as_the_official_templates_do(name, family_tokenizer):
    """`chat_template_kwargs={"date_string": ...}` gives a server's date: sectune renders it as the stock ones do."""
    official = official_template(name)
    tokenizer = family_tokenizer("llama3.1")
    for conversation in ([SYSTEM, *CHAT[:3]], CHAT[:1]):
        mine = tokenizer.apply_chat_template(
            conversation, tokenize=False, add_generation_prompt=True, date_string="01 Jan 2025"
        )
        assert "Today Date: 01 Jan 2025\n\n" in mine
        theirs = tokenizer.apply_chat_template(
            conversation, chat_template=official, tokenize=False, add_generation_prompt=True, date_string="01 Jan 2025"
        )
        assert mine == theirs


def test_gemma_folds_the_system_prompt_into_the_first_user_turn_as_gemma_3_does(family_tokenizer):
    """Intended difference: Gemma (1 and 2)'s official template raises on a system message. sectune folds it into
    the first user turn (system + blank line + question), exactly as Gemma 3's official template does, so the text
    is Gemma 3's, and Gemma's own rendering of the same conversation with the system prompt written into the first
    question. (sectune trims the system prompt, as Gemma trims every message; Gemma 3 keeps its outer whitespace.)"""
    from jinja2.exceptions import TemplateError

    gemma, gemma3 = official_template("gemma"), official_template("gemma3")
    tokenizer = family_tokenizer("gemma")
    compared = 0
    for conversation in CONVERSATIONS:
        if conversation[0]["role"] != "system":
            continue
        system, first, *rest = conversation
        folded = [{"role": "user", "content": system["content"] + "\n\n" + first["content"]}, *rest]
        with pytest.raises(TemplateError, match="System role not supported"):
            tokenizer.apply_chat_template(conversation, chat_template=gemma, tokenize=False)
        for generation_prompt in (False, True):
            mine = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=generation_prompt)
            for official, messages in ((gemma3, conversation), (gemma, folded)):
                theirs = tokenizer.apply_chat_template(
                    messages, chat_template=official, tokenize=False, add_generation_prompt=generation_prompt
                )
                assert mine == theirs, (conversation, generation_prompt)
            compared += 1
    assert compared == 8


TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_cve",
        "description": "Look up a CVE by its id.",
        "parameters": {"type": "object", "properties": {"cve": {"type": "string"}}, "required": ["cve"]},
    },
}


@pytest.mark.parametrize(
    ("family", "name"), [("llama3.1", "llama3_1"), ("llama3.1", "llama3_2"), ("qwen2.5", "qwen2_5")]
)
def test_tool_calling_blocks_are_left_out(family, name, family_tokenizer):
    """Intended difference: sectune trains plain conversations; a tools list renders nothing (no tool definitions in
    the prompt, as the official templates write), so a tool-calling row is not trained in a half-official format."""
    official = official_template(name)
    tokenizer = family_tokenizer(family)
    plain = tokenizer.apply_chat_template([SYSTEM, *CHAT[:3]], tokenize=False, add_generation_prompt=True)
    assert (
        tokenizer.apply_chat_template([SYSTEM, *CHAT[:3]], tools=[TOOL], tokenize=False, add_generation_prompt=True)
        == plain
    )
    theirs = tokenizer.apply_chat_template(
        [SYSTEM, *CHAT[:3]],
        tools=[TOOL],
        chat_template=official,
        tokenize=False,
        add_generation_prompt=True,
        **OFFICIAL_KWARGS.get(name, {}),
    )
    assert "lookup_cve" in theirs and "lookup_cve" not in plain


# Mistral's reference is not a template but mistral-common, its tokenizer library, which encodes a conversation
# itself. Its V1 (Mistral 7B v0.1/v0.2) and V3 (v0.3) tokenizers ship inside the package (MistralTokenizer.v1() and
# .v3(): nothing is downloaded). sectune's rendering, encoded by a transformers tokenizer built from the same
# sentencepiece model (legacy=False, as the hub's Mistral tokenizers set), must give mistral-common's ids.
MISTRAL_COMMON = {"mistral": "v1", "mistral-v3": "v3"}
LISTS = [
    {"role": "user", "content": "Which ports?\n- 22\n- 443"},
    {"role": "assistant", "content": "SSH and HTTPS.\nBoth over TCP."},
]
MISTRAL_ROWS = [
    CHAT[:1],  # inference prompts (ending with a question)
    [SYSTEM, CHAT[0]],
    CHAT[:3],
    [SYSTEM, *CHAT[:3]],
    CHAT[:2],  # training rows (ending with an answer)
    [SYSTEM, *CHAT[:2]],
    CHAT,
    [SYSTEM, *CHAT],
    [SYSTEM, *LISTS, *CHAT],
]


def refuse_network(monkeypatch) -> None:
    """Every connection off this machine fails: mistral-common's bundled tokenizers must need no download."""
    import socket

    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else "unix"
        if host not in ("unix", "127.0.0.1", "::1", "localhost"):
            raise OSError(f"network access in a test: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.fixture(scope="module")
def mistral_tokenizers(tmp_path_factory):
    """family → (mistral-common for prompts, mistral-common for training rows, transformers tokenizer of the model)."""
    import json
    import shutil

    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer
    from transformers import LlamaTokenizer

    from sectune.registry.models import template_path

    tokenizers = {}
    with pytest.MonkeyPatch.context() as patch:
        refuse_network(patch)
        for family, version in MISTRAL_COMMON.items():
            serving = getattr(MistralTokenizer, version)()  # validates prompts: the last message is the user's
            model = serving.instruct_tokenizer.tokenizer.file_path  # the sentencepiece model inside the package
            finetuning = MistralTokenizer.from_file(str(model), mode=ValidationMode.finetuning)  # rows end on answers
            folder = tmp_path_factory.mktemp(family)
            shutil.copy(model, folder / "tokenizer.model")
            config = {"legacy": False, "add_bos_token": True, "bos_token": "<s>", "eos_token": "</s>"}
            (folder / "tokenizer_config.json").write_text(json.dumps({**config, "unk_token": "<unk>"}))
            hf = LlamaTokenizer.from_pretrained(folder)
            hf.chat_template = template_path(family).read_text(encoding="utf-8")
            tokenizers[family] = (serving, finetuning, hf)
    return tokenizers


@pytest.mark.parametrize("family", sorted(MISTRAL_COMMON))
@pytest.mark.parametrize("row", range(len(MISTRAL_ROWS)))
def test_mistral_renders_as_mistral_common_encodes(family, row, mistral_tokenizers, monkeypatch):
    """Same text (mistral-common's pieces, ▁ read as a space), same ids, and the generation markers cover exactly the
    tokens mistral-common encodes for each answer (the space before it and </s> included)."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest
    from trl.data_utils import _tokenize  # what SFTTrainer calls on text rows (special tokens on)

    from sectune.data.render import prompt_completion

    refuse_network(monkeypatch)
    serving, finetuning, tokenizer = mistral_tokenizers[family]
    conversation = MISTRAL_ROWS[row]
    training = conversation[-1]["role"] == "assistant"
    kinds = {"system": SystemMessage, "user": UserMessage, "assistant": AssistantMessage}
    request = ChatCompletionRequest(messages=[kinds[m["role"]](content=m["content"]) for m in conversation])
    reference = (finetuning if training else serving).encode_chat_completion(request)

    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=not training)
    assert text == reference.text.replace("▁", " ").replace("<0x0A>", "\n")
    encoded = tokenizer.apply_chat_template(
        conversation,
        tokenize=True,
        return_dict=True,
        return_assistant_tokens_mask=True,
        add_generation_prompt=not training,
    )
    assert list(encoded["input_ids"]) == reference.tokens
    answers = [
        token
        for m in conversation
        if m["role"] == "assistant"
        for token in finetuning.instruct_tokenizer.encode_assistant_message(
            AssistantMessage(content=m["content"]), is_before_last_user_message=False, continue_message=False
        )
    ]
    trained = [token for token, mask in zip(encoded["input_ids"], encoded["assistant_masks"], strict=True) if mask]
    assert trained == answers
    if training:  # the prompt/completion export gives the same ids under trl's text path (one BOS)
        pair = prompt_completion(tokenizer, conversation)
        assert list(_tokenize(tokenizer, pair["prompt"] + pair["completion"])["input_ids"]) == reference.tokens


def test_mistral_is_not_the_superseded_2023_format(mistral_tokenizers):
    """The 2023 hub template (`<s>[INST] q [/INST]a</s>[INST] ...`, what sectune rendered before) is not what
    mistral-common encodes: it loses the space token before each answer ("It", not "▁It")."""
    from mistral_common.protocol.instruct.messages import AssistantMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    _, finetuning, tokenizer = mistral_tokenizers["mistral"]
    request = ChatCompletionRequest(
        messages=[UserMessage(content=CHAT[0]["content"]), AssistantMessage(content=CHAT[1]["content"])]
    )
    reference = finetuning.encode_chat_completion(request).tokens
    old = tokenizer("<s>[INST] What is a firewall? [/INST]It filters traffic.</s>", add_special_tokens=False)
    assert old["input_ids"] != reference
    assert tokenizer.convert_ids_to_tokens(reference)[-5:] == ["▁It", "▁filters", "▁traffic", ".", "</s>"]
    assert tokenizer.apply_chat_template(CHAT[:2], tokenize=True, return_dict=True)["input_ids"] == reference
