"""Ship a finished train run: one merged HF folder (safetensors), a model card, an Ollama Modelfile, GGUF files.

    OUT/
      config.json  model*.safetensors  generation_config.json   the merged model (adapter runs: fp32)
      tokenizer*  chat_template.jinja                            the run's own chat template
      gguf/<name>-f16.gguf ...                                    with --gguf: llama.cpp's convert_hf_to_gguf.py
      README.md                                                   model card (YAML front matter)
      Modelfile                                                   Ollama: FROM ./ (or the GGUF), TEMPLATE, stop
      sectune-export.json                                         where it came from, versions

Adapter runs (lora, qlora, qlora-8bit) load the base model unquantized in fp32, apply the adapter with peft and
``merge_and_unload()``: a QLoRA adapter is merged into the de-quantized base (the card says so). Full runs are
loaded and saved again the same way. GGUF files are converted from the saved merged folder by llama.cpp's own
converter (``sectune.serve.gguf``). OUT is published through ``sectune.runs.atomic_output_dir``: nothing
partial is left on failure. Pushing to the hub is not part of this step.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from sectune.data.families import FAMILIES
from sectune.errors import UserError
from sectune.models.load import (
    RUN_ADAPTER,
    RUN_MODEL,
    RUN_SUMMARY,
    ResolvedModel,
    is_train_run,
    load_model,
    load_tokenizer,
    resolve_model,
    run_template,
)
from sectune.runs import INCOMPLETE_MARKER, atomic_output_dir, is_finished, read_json, versions, write_json
from sectune.serve.gguf import find_converter, gguf_types, modelfile_gguf, write_ggufs

CARD_FILE = "README.md"
MODELFILE = "Modelfile"
EXPORT_FILE = "sectune-export.json"
QUANTIZED_METHODS = {"qlora", "qlora-8bit"}
_GENERATION_TAGS = re.compile(r"\{%-?\s*(?:end)?generation\s*-?%\}")


@dataclass(frozen=True)
class ChatFormat:
    """The family of a run's chat template and the tokens that end an assistant turn."""

    family: str  # a sectune family (smollm2, llama3 ...), "chatml" or "unknown"
    end_tokens: list[str]


def export(
    run: str | Path,
    out: str | Path,
    *,
    eval_dir: str | Path | None = None,
    overwrite: bool = False,
    gguf: str | Sequence[str] | None = None,
    llama_cpp: str | Path | None = None,
) -> Path:
    """Merge a finished train run into a standalone model folder ``out`` with a model card and a Modelfile.

    ``gguf`` ("f16,q8_0" or a list; f16, bf16, q8_0) also writes ``out/gguf/<name>-<type>.gguf`` with llama.cpp's
    converter: that of the checkout ``llama_cpp`` (or SECTUNE_LLAMA_CPP), else llama-cpp-python's, cached.
    """
    run = Path(run)
    types = gguf_types(gguf)  # a bad type is refused before anything is loaded or written
    summary = _check_run(run)
    evaluation = _read_eval(Path(eval_dir)) if eval_dir is not None else None
    config = _read_config(run)
    converter = find_converter(llama_cpp) if types else None  # fetched before the (long) merge
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        model, tokenizer, base = _merged_model(run, summary)
        chat = chat_format(base, tokenizer.chat_template or "", tokenizer.eos_token)
        end_ids = _end_token_ids(tokenizer, model, chat.end_tokens)
        model.generation_config.eos_token_id = end_ids if len(end_ids) > 1 else end_ids[0]
        if tokenizer.pad_token_id is not None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(tmp, **_safe_kwargs(model))
        tokenizer.save_pretrained(tmp)
        for stray in tmp.glob("*.bin"):  # safetensors only (nothing should write one; make sure)
            stray.unlink()
        # converted before the card is written: the converter reads a README.md it finds as metadata
        ggufs = write_ggufs(converter, tmp, types, name=Path(out).name) if converter is not None else {}
        (tmp / CARD_FILE).write_text(
            model_card(summary, config, base, chat, evaluation, eval_dir=eval_dir, gguf_files=ggufs),
            encoding="utf-8",
        )
        (tmp / MODELFILE).write_text(modelfile(chat, gguf=modelfile_gguf(ggufs)), encoding="utf-8")
        write_json(
            tmp / EXPORT_FILE,
            {
                "run": str(run.resolve()),
                "base_model": summary.get("base_model"),
                "method": summary.get("method"),
                "family": chat.family,
                "eos_token_id": end_ids,
                "merged_dtype": "float32" if summary.get("method") != "full" else str(model.dtype),
                "gguf": ggufs,
                "gguf_converter": converter.source if converter is not None else None,
                "eval": str(Path(eval_dir).resolve()) if eval_dir is not None else None,
                "versions": versions(),
            },
        )
    return Path(out)


# ---------------------------------------------------------------- inputs


def _check_run(run: Path) -> dict[str, Any]:
    from sectune.evaluate.targets import hosted_target

    if not run.is_dir():
        if (run.parent / f"{run.name}.partial").is_dir():
            raise UserError(
                "train run is not finished (only its .partial folder exists)",
                file=run,
                fix="finish it with `sectune train ... --resume`",
            )
        raise UserError("no such train run folder", file=run, fix="pass the --out folder of a finished sectune train")
    hosted = hosted_target(run)
    if hosted is not None:
        raise UserError(
            f"this run's weights stay at {hosted.backend} (model {hosted.model}): there is nothing here to export",
            file=run,
            fix="use the hosted model as it is (sectune chat/eval ask its endpoint), or train with a backend that "
            "gives back the adapter (local, predibase, together LoRA)",
        )
    if (run / INCOMPLETE_MARKER).exists() or not is_train_run(run):
        raise UserError(
            "not a finished train run (needs summary.json and adapter/ or model/)",
            file=run,
            fix="pass the --out folder of a finished sectune train",
        )
    summary = read_json(run / RUN_SUMMARY)
    if not isinstance(summary, dict) or not summary.get("base_model") or not summary.get("method"):
        raise UserError(
            "train run summary has no base_model or method", file=run / RUN_SUMMARY, fix="re-run sectune train"
        )
    return summary


def _read_config(run: Path) -> dict[str, Any]:
    path = run / "config.yaml"
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else {}


def _read_eval(folder: Path) -> dict[str, Any]:
    if not is_finished(folder):
        raise UserError(
            "not a finished eval folder (no summary.json)", file=folder, fix="pass the --out of sectune eval"
        )
    summary = read_json(folder / RUN_SUMMARY)
    if not isinstance(summary, dict) or not isinstance(summary.get("targets"), dict):
        raise UserError("eval summary has no targets", file=folder / RUN_SUMMARY, fix="pass the --out of sectune eval")
    return summary


# ---------------------------------------------------------------- the model


def _merged_model(run: Path, summary: dict[str, Any]) -> tuple[Any, Any, ResolvedModel]:
    """(model, tokenizer, resolved base): adapter runs merged into the fp32 base, full runs as saved."""
    import torch

    template = run_template(run)
    base = resolve_model(summary["base_model"])
    if (run / RUN_MODEL).is_dir():
        model = load_model(run / RUN_MODEL)
        tokenizer = load_tokenizer(run / RUN_MODEL, template=template)
    else:
        from peft import PeftModel

        # unquantized even for QLoRA runs: the adapter is merged into the de-quantized base weights
        loaded = load_model(base.path, dtype=torch.float32)
        model = PeftModel.from_pretrained(loaded, str(run / RUN_ADAPTER)).merge_and_unload()
        tokenizer = load_tokenizer(base.path, template=template)
        if base.spec is not None and template is None:
            tokenizer.chat_template = base.spec.template_path.read_text(encoding="utf-8")
    model.eval()
    if tokenizer.chat_template:
        tokenizer.chat_template = portable_template(tokenizer.chat_template)
    return model, tokenizer, base


def portable_template(template: str) -> str:
    """The chat template without sectune's ``{% generation %}`` markers: it renders the same text everywhere."""
    return _GENERATION_TAGS.sub("", template)


def chat_format(base: ResolvedModel, template: str, eos: str | None) -> ChatFormat:
    """The run's chat family (registry spec first, else recognised from the template) and its end-of-turn tokens."""
    family = base.spec.family if base.spec is not None else None
    if family is None:
        if "<|im_start|>" in template:
            family = "chatml"
        elif "<|start_header_id|>" in template:
            family = "llama3"
        else:
            family = "unknown"
    if family in FAMILIES:
        tokens = [FAMILIES[family].end_of_turn, FAMILIES[family].eos]
    elif family == "chatml":
        tokens = ["<|im_end|>"]
    else:
        tokens = []
    if eos:
        tokens.append(eos)
    return ChatFormat(family, list(dict.fromkeys(tokens)))


def _end_token_ids(tokenizer: Any, model: Any, tokens: list[str]) -> list[int]:
    """The generation config's eos ids plus each end-of-turn token the vocabulary has, end-of-turn first."""
    ids: list[int] = []
    for token in tokens:
        found = tokenizer.convert_tokens_to_ids(token)
        if isinstance(found, int) and (found != tokenizer.unk_token_id or token == tokenizer.unk_token):
            ids.append(found)
    configured = getattr(model.generation_config, "eos_token_id", None)
    ids += [configured] if isinstance(configured, int) else list(configured or [])
    if tokenizer.eos_token_id is not None:
        ids.append(tokenizer.eos_token_id)
    unique = list(dict.fromkeys(ids))
    if not unique:
        raise UserError("the tokenizer has no end-of-turn or eos token", fix="check the run's base model tokenizer")
    return unique


def _safe_kwargs(model: Any) -> dict[str, Any]:
    """``safe_serialization=True`` where save_pretrained still takes it (transformers 5 writes safetensors only)."""
    parameters = inspect.signature(model.save_pretrained).parameters
    return {"safe_serialization": True} if "safe_serialization" in parameters else {}


# ---------------------------------------------------------------- the Modelfile

_CHATML = (
    "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}"
    "{{ if .Prompt }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n{{ end }}"
    "<|im_start|>assistant\n{{ .Response }}<|im_end|>\n"
)
_LLAMA3 = (
    "{{ if .System }}<|start_header_id|>system<|end_header_id|>\n\n{{ .System }}<|eot_id|>{{ end }}"
    "{{ if .Prompt }}<|start_header_id|>user<|end_header_id|>\n\n{{ .Prompt }}<|eot_id|>{{ end }}"
    "<|start_header_id|>assistant<|end_header_id|>\n\n{{ .Response }}<|eot_id|>"
)
# Written from the families' formats but not checked against Ollama: the Modelfile says so in a comment.
_UNCHECKED = {
    "mistral": "[INST] {{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }} [/INST]{{ .Response }}</s>",
    "gemma": "<start_of_turn>user\n{{ if .System }}{{ .System }}\n\n{{ end }}{{ .Prompt }}<end_of_turn>\n"
    "<start_of_turn>model\n{{ .Response }}<end_of_turn>\n",
    "phi3": "{{ if .System }}<|system|>\n{{ .System }}<|end|>\n{{ end }}"
    "{{ if .Prompt }}<|user|>\n{{ .Prompt }}<|end|>\n{{ end }}<|assistant|>\n{{ .Response }}<|end|>\n",
    "zephyr": "{{ if .System }}<|system|>\n{{ .System }}</s>\n{{ end }}"
    "{{ if .Prompt }}<|user|>\n{{ .Prompt }}</s>\n{{ end }}<|assistant|>\n{{ .Response }}</s>\n",
}
_DEFAULT_SYSTEM = {"smollm2": "You are a helpful AI assistant named SmolLM, trained by Hugging Face"}
_CHECKED = {"chatml": _CHATML, "smollm2": _CHATML, "qwen2.5": _CHATML, "llama3": _LLAMA3, "llama3.1": _LLAMA3}


def modelfile(chat: ChatFormat, *, gguf: str | None = None) -> str:
    """An Ollama Modelfile for the exported folder: FROM ./ (or ./``gguf``), the chat TEMPLATE, a stop line per
    end token. Ollama converts a safetensors folder itself; a GGUF it uses as it is."""
    source = f"./{gguf}" if gguf else "./"
    lines = ["# Ollama Modelfile written by `sectune export`: ollama create NAME -f Modelfile", f"FROM {source}", ""]
    template = _CHECKED.get(chat.family)
    if template is None:
        family = "mistral" if chat.family.startswith("mistral") else chat.family
        template = _UNCHECKED.get(family, _CHATML)
        lines.append(
            f"# NOTE: the TEMPLATE below for family '{chat.family}' was written by hand and not checked against "
            "the run's chat_template.jinja: compare them before use."
        )
    lines += [f'TEMPLATE """{template}"""', ""]
    if chat.family in _DEFAULT_SYSTEM:  # the family's template adds this system turn when none is given
        lines += [f'SYSTEM """{_DEFAULT_SYSTEM[chat.family]}"""', ""]
    lines += [f'PARAMETER stop "{token}"' for token in chat.end_tokens]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the model card


def model_card(
    summary: dict[str, Any],
    config: dict[str, Any],
    base: ResolvedModel,
    chat: ChatFormat,
    evaluation: dict[str, Any] | None,
    *,
    eval_dir: str | Path | None = None,
    gguf_files: dict[str, str] | None = None,
) -> str:
    """README.md: YAML front matter, then training, data, evaluation, intended use and limitations."""
    method = str(summary.get("method"))
    base_name = base.spec.hub_id if base.spec is not None else str(summary.get("base_model"))
    front: dict[str, Any] = {"base_model": base_name}
    license_name = getattr(base.spec, "license", None) if base.spec is not None else None
    if license_name:
        front["license"] = license_name
    gguf_files = gguf_files or {}
    front |= {"library_name": "transformers", "tags": ["sectune", method, *(["gguf"] if gguf_files else [])]}
    train: dict[str, Any] = config["train"] if isinstance(config.get("train"), dict) else {}
    lora: dict[str, Any] = train["lora"] if isinstance(train.get("lora"), dict) else {}
    parts = ["---", yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(), "---", ""]
    parts += [f"# {base_name} fine-tuned with sectune ({method})", ""]
    parts += _training_section(summary, train, lora, method)
    parts += _data_section(summary)
    parts += _evaluation_section(evaluation, eval_dir)
    parts += [
        "## Intended use and limitations",
        "",
        "- Trained on synthetic question–answer data generated by an LLM for a narrow domain; answers can be wrong,"
        " outdated or invented, in the same style as correct ones.",
        "- A small model adapted on little data: it is a demonstration and a starting point, not a security authority."
        " Check every security-relevant answer against primary sources before acting on it.",
        "- Not evaluated for safety, bias or adversarial prompts beyond the metrics above.",
        "",
        "## Files",
        "",
        "- safetensors weights, tokenizer and `chat_template.jinja` (the template of training,"
        f" chat family `{chat.family}`)",
        "- `generation_config.json`: generation stops at " + ", ".join(f"`{t}`" for t in chat.end_tokens),
        *_gguf_lines(gguf_files),
        "",
    ]
    return "\n".join(parts)


def _gguf_lines(files: dict[str, str]) -> list[str]:
    """The card's lines for the GGUF files (written by llama.cpp's converter) and what the Modelfile loads."""
    if not files:
        return ["- `Modelfile`: `ollama create NAME -f Modelfile` in this folder (no GGUF was written)"]
    listed = ", ".join(f"`{path}` ({kind})" for kind, path in files.items())
    return [
        f"- GGUF for llama.cpp and Ollama, written by llama.cpp's `convert_hf_to_gguf.py`: {listed}",
        f"- `Modelfile`: `ollama create NAME -f Modelfile` in this folder (FROM `./{modelfile_gguf(files)}`)",
    ]


def _training_section(summary: dict[str, Any], train: dict[str, Any], lora: dict[str, Any], method: str) -> list[str]:
    rows: list[tuple[str, Any]] = [("method", method)]
    if method != "full":
        targets = summary.get("lora_targets") or lora.get("target_modules")
        rows += [
            (
                "LoRA r / alpha / dropout",
                f"{lora.get('r', '?')} / {lora.get('alpha', '?')} / {lora.get('dropout', '?')}",
            ),
            ("LoRA targets", ", ".join(targets) if isinstance(targets, list) else str(targets)),
        ]
    steps = train.get("max_steps")
    rows += [
        ("learning rate", train.get("learning_rate")),
        ("epochs (configured)", train.get("epochs") if steps in (None, -1) else f"— (max_steps {steps})"),
        ("steps / epochs done", f"{summary.get('global_step')} / {_num(summary.get('epochs_done'))}"),
        ("batch size × grad accum", f"{summary.get('batch_size')} × {summary.get('grad_accum')}"),
        ("precision", summary.get("precision")),
        ("final train loss", _num(summary.get("final_train_loss"))),
        ("eval loss", _num(summary.get("eval_loss"))),
    ]
    lines = ["## Training", "", "| setting | value |", "|---|---|"]
    lines += [f"| {name} | {value if value is not None else '—'} |" for name, value in rows]
    lines.append("")
    if method in QUANTIZED_METHODS:
        lines += [
            f"Trained with {method} (a LoRA adapter on a quantized base). This export merges the adapter into the"
            " **de-quantized** base model (loaded unquantized, fp32), so its outputs can differ slightly from the"
            " quantized model used in training.",
            "",
        ]
    elif method != "full":
        lines += ["The LoRA adapter is merged into the base model (fp32): no peft needed to load this folder.", ""]
    return lines


def _data_section(summary: dict[str, Any]) -> list[str]:
    counts = summary.get("rows") if isinstance(summary.get("rows"), dict) else {}
    lines = ["## Data", "", f"- dataset fingerprint (sha256): `{summary.get('data_fingerprint', '—')}`"]
    if counts:
        lines.append("- rows: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    return [*lines, ""]


def _evaluation_section(evaluation: dict[str, Any] | None, eval_dir: str | Path | None) -> list[str]:
    if evaluation is None:
        return ["## Evaluation", "", "Not evaluated in this card (pass `--eval DIR` from `sectune eval`).", ""]
    lines = ["## Evaluation", "", f"From `sectune eval` ({Path(str(eval_dir)).name}); 95 % bootstrap intervals.", ""]
    lines += ["| target | metric | value [95 % interval] |", "|---|---|---|"]
    for label, result in evaluation["targets"].items():
        if not isinstance(result, dict):
            continue
        generation = result.get("generation") or {}
        for name, entry in generation.items():
            if isinstance(entry, dict) and "value" in entry:
                lines.append(f"| {label} | {name} | {_interval(entry)} |")
        for bench, scored in (result.get("mcq") or {}).items():
            for how, data in (scored.get("methods") or {}).items():
                lines.append(f"| {label} | {bench} ({how}) accuracy | {_interval(data.get('accuracy') or {})} |")
    return [*lines, ""]


def _interval(entry: dict[str, Any]) -> str:
    text = _num(entry.get("value"))
    low, high = entry.get("ci_low", entry.get("low")), entry.get("ci_high", entry.get("high"))
    if low is not None and high is not None:
        text += f" [{_num(low)}, {_num(high)}]"
    return text


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
