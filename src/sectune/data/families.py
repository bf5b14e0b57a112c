"""What each chat family's tokenizer looks like: its special tokens and the token that ends a turn.

The end-of-turn token is what an assistant turn must be trained on (or the model never learns to
stop). ``sectune.testing.tiny.tiny_family_tokenizer`` builds an offline BPE tokenizer from these facts, so
templates can be checked token by token without downloading any model.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from sectune.errors import unknown_name_error


@dataclass(frozen=True)
class FamilyTokens:
    """Special tokens of a chat family's tokenizer (as in the hub's tokenizer_config.json)."""

    bos: str | None
    eos: str
    pad: str | None
    end_of_turn: str  # the token that closes an assistant turn; the one generation stops on
    unk: str | None = None
    special: list[str] = field(default_factory=list)  # added (control) tokens besides bos/eos/pad/unk
    adds_bos: bool = False  # the hub tokenizer puts BOS in front when it encodes text (add_bos_token)


CHATML = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

FAMILIES: dict[str, FamilyTokens] = {
    "smollm2": FamilyTokens(
        bos="<|im_start|>",
        eos="<|im_end|>",
        pad="<|im_end|>",
        end_of_turn="<|im_end|>",
        unk="<|endoftext|>",
        special=CHATML,
    ),
    "qwen2.5": FamilyTokens(bos=None, eos="<|im_end|>", pad="<|endoftext|>", end_of_turn="<|im_end|>", special=CHATML),
    "llama3": FamilyTokens(
        bos="<|begin_of_text|>",
        eos="<|eot_id|>",
        pad=None,  # none on the hub: sectune's loader sets pad = eos, the trap the checks look for
        end_of_turn="<|eot_id|>",
        special=["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        adds_bos=True,
    ),
    "mistral": FamilyTokens(
        bos="<s>",
        eos="</s>",
        pad=None,
        end_of_turn="</s>",
        unk="<unk>",
        special=["<unk>", "<s>", "</s>"],
        adds_bos=True,
    ),
    "gemma": FamilyTokens(
        bos="<bos>",
        eos="<eos>",
        pad="<pad>",
        end_of_turn="<end_of_turn>",
        unk="<unk>",
        special=["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"],
        adds_bos=True,
    ),
    "phi3": FamilyTokens(
        bos="<s>",
        eos="<|endoftext|>",
        pad="<|endoftext|>",
        end_of_turn="<|end|>",
        unk="<unk>",
        special=["<unk>", "<s>", "</s>", "<|endoftext|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"],
    ),
    "zephyr": FamilyTokens(
        bos="<s>",
        eos="</s>",
        pad="</s>",
        end_of_turn="</s>",
        unk="<unk>",
        special=["<unk>", "<s>", "</s>"],
        adds_bos=True,
    ),
}
# Llama 3.1 / 3.2 share Llama 3's tokens (their template differs: a dated system turn); Mistral v0.3's tokenizer
# (v3) adds [INST] and [/INST] as control tokens.
FAMILIES["llama3.1"] = FAMILIES["llama3"]
FAMILIES["mistral-v3"] = replace(FAMILIES["mistral"], special=[*FAMILIES["mistral"].special, "[INST]", "[/INST]"])


def family_tokens(family: str) -> FamilyTokens:
    """The token facts of a chat family, or a UserError naming the known ones."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise unknown_name_error("chat family", family, FAMILIES) from None
