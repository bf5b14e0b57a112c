"""What each chat family's tokenizer looks like: its special tokens and the token that ends a turn.

The end-of-turn token is what an assistant turn must be trained on (or the model never learns to
stop). ``tiny_family_tokenizer`` builds an offline BPE tokenizer carrying a family's special tokens,
so templates can be checked token by token without downloading any model.
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


def tiny_family_tokenizer(family: str, *, vocab_size: int = 600):
    """An offline byte-level BPE tokenizer with ``family``'s special tokens and sectune's template for it.

    Pad falls back to eos when the family has none, as ``sectune.models.load.load_tokenizer`` does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sectune.registry.models import template_path
    from sectune.testing.tiny import CORPUS

    tokens = family_tokens(family)
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(dict.fromkeys(tokens.special)),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator([CORPUS] * 4, trainer=trainer)
    if tokens.adds_bos and tokens.bos:  # like the hub tokenizer: BOS in front of encoded text
        from tokenizers import processors

        bos_id = backend.token_to_id(tokens.bos)
        backend.post_processor = processors.TemplateProcessing(
            single=f"{tokens.bos} $A", pair=f"{tokens.bos} $A $B", special_tokens=[(tokens.bos, bos_id)]
        )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=tokens.bos,
        eos_token=tokens.eos,
        pad_token=tokens.pad or tokens.eos,
        unk_token=tokens.unk,
    )
    tokenizer.chat_template = template_path(family).read_text(encoding="utf-8")
    return tokenizer
