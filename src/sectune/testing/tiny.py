"""Tiny random-weight models with a real tokenizer, built in well under a second.

Used by the tests and the benchmarks: a 2-layer Llama (hidden 64) whose BPE tokenizer is trained
on local text and carries SmolLM2's ChatML special tokens (pad == eos == <|im_end|>, as SmolLM2).
"""

from __future__ import annotations

from pathlib import Path

from sectune.registry.models import template_path

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

CORPUS = """
Firewalls filter network traffic according to rules. A VPN encrypts traffic between two endpoints.
Phishing emails trick users into revealing passwords. Multi-factor authentication adds a second factor.
Cloud computing offers compute, storage and networking on demand. IAM policies grant least privilege.
To reset a password, open the account settings and choose reset. Restart the router if the network fails.
Ransomware encrypts files and demands payment. Backups let you restore data without paying.
What is a firewall? What is phishing? How do I reset my password? Explain encryption in simple terms.
The answer is A. The answer is B. The answer is C. The answer is D. Question: Answer: Options:
system user assistant You are a helpful assistant for cybersecurity, cloud and IT support.
0 1 2 3 4 5 6 7 8 9 { } [ ] " : , . ? ! - ( ) / \\ ' ; = + * # @ % & < > | _
"""


def build_tiny_tokenizer(out_dir: str | Path, *, vocab_size: int = 512):
    """Train a byte-level BPE on CORPUS and save it as a HF fast tokenizer with a ChatML template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator([CORPUS] * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
    )
    fast.chat_template = template_path("smollm2").read_text(encoding="utf-8")
    fast.save_pretrained(str(out_dir))
    return fast


def build_tiny_model(out_dir: str | Path, *, seed: int = 0, hidden_size: int = 64, layers: int = 2) -> Path:
    """Save a random 2-layer Llama and its tokenizer to ``out_dir`` (safetensors)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tiny_tokenizer(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(str(out_dir), safe_serialization=True)
    return out_dir


def tiny_family_tokenizer(family: str, *, vocab_size: int = 600):
    """An offline byte-level BPE tokenizer with ``family``'s special tokens and sectune's template for it.

    Pad falls back to eos when the family has none, as ``sectune.models.load.load_tokenizer`` does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from sectune.data.families import family_tokens
    from sectune.registry.models import template_path

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


def build_tiny_adapter(model_dir: str | Path, out_dir: str | Path, *, seed: int, r: int = 4) -> Path:
    """Save a random (untrained, non-zero) LoRA adapter for the tiny model: different seeds, different answers.

    ``init_lora_weights=False`` draws both LoRA matrices at random, so the adapter changes the logits at once;
    the adapter names ``model_dir`` as its base, as a trained one would.
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(model_dir))
    config = LoraConfig(r=r, lora_alpha=4 * r, target_modules=["q_proj", "v_proj", "o_proj"], init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    peft_model.peft_config["default"].base_model_name_or_path = str(model_dir)
    peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return Path(out_dir)
