"""sectune export --gguf: llama.cpp's own converter writes f16/q8_0 files that load back and answer like the merge.

The converter checks a BPE tokenizer's pre-tokenizer against the hashes it knows: the random tokenizer of
``tiny_model_dir`` is refused (a test shows that failure), so the tiny model here is a random 2-layer Llama on
the embedded SmolLM2 tokenizer (pre-tokenizer "smollm"). The slow test runs the export of the real embedded
SmolLM2 in llama.cpp itself (llama-cpp-python, compiled once into .pytest_cache).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from tests.serve.test_export import train_tiny

PROMPT = [{"role": "user", "content": "What is a firewall?"}]
# SmolLM2 answers this one at length: 16 tokens before its <|im_end|> (a shorter answer would compare fewer)
LONG_PROMPT = [{"role": "user", "content": "List three ways to protect a home network from attackers."}]
NEW_TOKENS = 16
LLAMA_CPP_PYTHON = "llama-cpp-python==0.3.36"


def build_smol_tiny(out_dir: Path, *, init: float = 0.2) -> Path:
    """A random 2-layer Llama (hidden 64) with the embedded SmolLM2 tokenizer and sectune's smollm2 template.

    ``init`` 0.2 (not the default 0.02) gives logits that vary enough for greedy decoding not to repeat one token.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from sectune.registry.embedded import ensure_embedded_model
    from sectune.registry.models import template_path

    tokenizer = AutoTokenizer.from_pretrained(ensure_embedded_model(quiet=True))
    tokenizer.chat_template = template_path("smollm2").read_text(encoding="utf-8")
    tokenizer.save_pretrained(out_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        initializer_range=init,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    return out_dir


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "sectune", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def smol_run(tmp_path_factory) -> tuple[Path, Path]:
    """(base model folder, finished LoRA run on it)."""
    work = tmp_path_factory.mktemp("gguf-run")
    base = build_smol_tiny(work / "base")
    return base, train_tiny(base, work, "lora")


@pytest.fixture(scope="module")
def exported(smol_run, tmp_path_factory) -> Path:
    """`sectune export RUN --out DIR --gguf f16,q8_0` through the CLI."""
    out = tmp_path_factory.mktemp("gguf-exports") / "tiny-smol"
    result = _cli("export", str(smol_run[1]), "--out", str(out), "--gguf", "f16,q8_0")
    assert result.returncode == 0, result.stderr
    assert "gguf/tiny-smol-f16.gguf, gguf/tiny-smol-q8_0.gguf" in result.stdout
    return out


def _prompt_ids(tokenizer, conversation=PROMPT):
    text = tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    return text, tokenizer(text, return_tensors="pt", add_special_tokens=False)


def _greedy(model, batch, pad_id: int) -> list[int]:
    import torch

    with torch.inference_mode():
        out = model.generate(**batch, max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=pad_id)
    return out[0, batch["input_ids"].shape[1] :].tolist()


def _logits(model, batch):
    import torch

    with torch.inference_mode():
        return model(**batch).logits[0]


@pytest.fixture(scope="module")
def merged(exported):
    """(merged model, tokenizer, prompt text, prompt batch, its greedy tokens, its prompt logits)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(exported).eval()
    tokenizer = AutoTokenizer.from_pretrained(exported)
    text, batch = _prompt_ids(tokenizer)
    return model, tokenizer, text, batch, _greedy(model, batch, tokenizer.pad_token_id), _logits(model, batch)


def _load_gguf(exported: Path, kind: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    name = f"tiny-smol-{kind}.gguf"
    model = AutoModelForCausalLM.from_pretrained(exported / "gguf", gguf_file=name).eval()
    return model, AutoTokenizer.from_pretrained(exported / "gguf", gguf_file=name)


def test_the_f16_gguf_loads_in_transformers_and_answers_like_the_merged_model(exported, merged):
    _, tokenizer, text, batch, tokens, logits = merged
    gguf_model, gguf_tokenizer = _load_gguf(exported, "f16")
    # the GGUF carries the same vocabulary and pre-tokenizer: the prompt encodes to the same ids
    assert gguf_tokenizer(text, add_special_tokens=False)["input_ids"] == batch["input_ids"][0].tolist()
    assert _greedy(gguf_model, batch, tokenizer.pad_token_id) == tokens
    assert (_logits(gguf_model, batch) - logits).abs().max().item() < 0.1  # f16 rounding only


def test_the_q8_0_gguf_is_close_to_the_merged_model_not_to_the_base(exported, merged, smol_run):
    from transformers import AutoModelForCausalLM

    _, tokenizer, _, batch, tokens, logits = merged
    gguf_model, _ = _load_gguf(exported, "q8_0")
    assert _greedy(gguf_model, batch, tokenizer.pad_token_id)[:4] == tokens[:4]
    q8_error = (_logits(gguf_model, batch) - logits).abs().mean().item()
    base = AutoModelForCausalLM.from_pretrained(smol_run[0]).eval()
    adapter_effect = (_logits(base, batch) - logits).abs().mean().item()
    # 8-bit rounding moves the logits far less than the adapter did: the GGUF holds the merged weights
    assert q8_error < 0.1 and q8_error < adapter_effect / 2, (q8_error, adapter_effect)


def test_the_gguf_metadata_name_type_tokenizer_and_template(exported):
    from gguf import GGUFReader

    from sectune.serve.export import portable_template

    def field(reader, key):
        value = reader.fields[key]
        return value.contents() if hasattr(value, "contents") else value.parts[value.data[0]].tolist()

    for kind, file_type in (("f16", 1), ("q8_0", 7)):  # llama.cpp's LlamaFileType MOSTLY_F16 / MOSTLY_Q8_0
        reader = GGUFReader(exported / "gguf" / f"tiny-smol-{kind}.gguf")
        assert field(reader, "general.architecture") == "llama"
        assert field(reader, "general.name") == "tiny-smol"
        assert field(reader, "general.file_type") == file_type
        assert field(reader, "tokenizer.ggml.pre") == "smollm"
        template = (exported / "chat_template.jinja").read_text(encoding="utf-8")
        assert field(reader, "tokenizer.chat_template") == portable_template(template)


def test_the_modelfile_loads_the_q8_0_gguf_and_the_card_lists_both(exported):
    modelfile = (exported / "Modelfile").read_text(encoding="utf-8")
    assert "FROM ./gguf/tiny-smol-q8_0.gguf\n" in modelfile and "FROM ./\n" not in modelfile
    assert 'PARAMETER stop "<|im_end|>"' in modelfile
    card = (exported / "README.md").read_text(encoding="utf-8")
    assert "`gguf/tiny-smol-f16.gguf` (f16), `gguf/tiny-smol-q8_0.gguf` (q8_0)" in card
    assert "- gguf\n" in card.split("---\n")[1]  # a front-matter tag
    record = json.loads((exported / "sectune-export.json").read_text(encoding="utf-8"))
    assert record["gguf"] == {"f16": "gguf/tiny-smol-f16.gguf", "q8_0": "gguf/tiny-smol-q8_0.gguf"}
    assert "llama-cpp-python 0.3.36" in record["gguf_converter"]
    assert sorted(p.name for p in (exported / "gguf").iterdir()) == ["tiny-smol-f16.gguf", "tiny-smol-q8_0.gguf"]


def test_an_f16_only_modelfile_loads_the_f16():
    from sectune.serve.export import ChatFormat, modelfile
    from sectune.serve.gguf import modelfile_gguf

    chosen = modelfile_gguf({"bf16": "gguf/m-bf16.gguf", "f16": "gguf/m-f16.gguf"})
    assert chosen == "gguf/m-f16.gguf"
    assert "FROM ./gguf/m-f16.gguf\n" in modelfile(ChatFormat("chatml", ["<|im_end|>"]), gguf=chosen)
    assert modelfile_gguf({}) is None


@pytest.mark.parametrize("value", ["f16,q4_k", ","])
def test_a_bad_gguf_type_is_one_line_exit_2_and_no_out(smol_run, tmp_path, value):
    out = tmp_path / "out"
    result = _cli("export", str(smol_run[1]), "--out", str(out), "--gguf", value)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "--gguf" in result.stderr, result.stderr
    assert not out.exists() and not list(tmp_path.iterdir())


def test_gguf_types_are_parsed_in_order_without_repeats():
    from sectune.errors import UserError
    from sectune.serve.gguf import gguf_types

    assert gguf_types(None) == [] and gguf_types([]) == []
    assert gguf_types(" Q8_0, f16,q8_0 ") == ["q8_0", "f16"]
    assert gguf_types(["bf16"]) == ["bf16"]
    with pytest.raises(UserError, match="did you mean q8_0"):
        gguf_types("q8")


def test_an_unrecognised_tokenizer_is_the_converters_own_one_line_error(tiny_model_dir, tmp_path):
    from sectune.errors import UserError
    from sectune.serve.gguf import convert, ensure_vendored_converter

    with pytest.raises(UserError) as caught:
        convert(ensure_vendored_converter(), tiny_model_dir, tmp_path / "x.gguf", "f16", name="x")
    message = str(caught.value)
    assert "\n" not in message and "BPE pre-tokenizer was not recognized" in message
    assert "--llama-cpp" in message and not (tmp_path / "x.gguf").exists()


STUB = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
Path(os.environ["STUB_LOG"]).write_text(json.dumps({"args": args, "pythonpath": os.environ.get("PYTHONPATH", "")}))
if os.environ.get("STUB_FAIL"):
    print("INFO:hf-to-gguf:Loading model", file=sys.stderr)
    raise KeyError("model.layers.0.self_attn.q_proj.weight")
Path(args[args.index("--outfile") + 1]).write_bytes(b"GGUF")
"""


@pytest.fixture
def checkout(tmp_path, monkeypatch) -> Path:
    """A stand-in llama.cpp checkout whose converter records how it was called (and fails with STUB_FAIL)."""
    folder = tmp_path / "llama.cpp"
    (folder / "gguf-py").mkdir(parents=True)
    (folder / "convert_hf_to_gguf.py").write_text(STUB, encoding="utf-8")
    monkeypatch.setenv("STUB_LOG", str(tmp_path / "stub.json"))
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    return folder


def test_a_llama_cpp_checkout_runs_with_its_gguf_py_first(checkout, tmp_path, monkeypatch):
    from sectune.serve.gguf import find_converter, write_ggufs

    monkeypatch.setenv("SECTUNE_LLAMA_CPP", str(checkout))
    converter = find_converter()
    assert converter.script == checkout / "convert_hf_to_gguf.py" and "checkout" in converter.source
    model = tmp_path / "model"
    model.mkdir()
    assert write_ggufs(converter, model, ["bf16"], name="my model") == {"bf16": "gguf/my-model-bf16.gguf"}
    call = json.loads((tmp_path / "stub.json").read_text())
    assert call["args"][:5] == [str(model), "--outfile", str(model / "gguf/my-model-bf16.gguf"), "--outtype", "bf16"]
    assert call["pythonpath"].split(os.pathsep) == [str(checkout / "gguf-py"), "/elsewhere"]


def test_a_failing_converter_leaves_no_out_folder(checkout, smol_run, tmp_path, monkeypatch):
    from sectune.errors import UserError
    from sectune.serve.export import export

    monkeypatch.setenv("STUB_FAIL", "1")
    out = tmp_path / "out"
    with pytest.raises(UserError, match=r"failed \(f16\): KeyError: 'model.layers.0.self_attn.q_proj.weight'"):
        export(smol_run[1], out, gguf="f16", llama_cpp=checkout)
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_a_folder_without_the_converter_is_refused(tmp_path):
    from sectune.errors import UserError
    from sectune.serve.gguf import find_converter

    with pytest.raises(UserError, match=r"no convert_hf_to_gguf\.py in this folder"):
        find_converter(tmp_path)


def _fake_sdist(path: Path) -> Path:
    """A tar.gz laid out like llama-cpp-python's sdist: the converter's files and others that must stay out."""
    source = path.parent / "src"
    vendor = source / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
    for relative in (
        "convert_hf_to_gguf.py",
        "conversion/__init__.py",
        "gguf-py/gguf/__init__.py",
        "LICENSE",
        "src/llama.cpp",
        "ggml/src/ggml.c",
    ):
        (vendor / relative).parent.mkdir(parents=True, exist_ok=True)
        (vendor / relative).write_text(relative, encoding="utf-8")
    with tarfile.open(path, "w:gz") as archive:
        archive.add(source / "llama_cpp_python-0.3.36", arcname="llama_cpp_python-0.3.36")
    return path


def test_the_sdist_gives_only_the_converter_files(tmp_path, monkeypatch):
    from sectune.serve import gguf

    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "cache" / "downloads").mkdir(parents=True)
    sdist = _fake_sdist(tmp_path / "cache" / "downloads" / "llama_cpp_python-0.3.36.tar.gz")
    converter = gguf.find_converter()
    target = gguf.vendored_dir()
    assert converter.script == target / "convert_hf_to_gguf.py" and converter.gguf_py == target / "gguf-py"
    kept = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert kept == ["LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]
    assert not sdist.exists()  # only the few files are kept


def test_an_sdist_that_cannot_be_fetched_is_one_line_with_a_fix(tmp_path, monkeypatch):
    from sectune.errors import UserError
    from sectune.serve import gguf

    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))
    failed = subprocess.CompletedProcess([], 1, "", "Looking in indexes\nERROR: No matching distribution found\n")
    monkeypatch.setattr(gguf.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(UserError) as caught:
        gguf.ensure_vendored_converter()
    message = str(caught.value)
    assert "\n" not in message and "ERROR: No matching distribution found" in message
    assert "--llama-cpp" in message and not gguf.vendored_dir().exists()


def test_last_error_line_skips_progress_bars():
    from sectune.serve.gguf import last_error_line

    log = "INFO:x\nTraceback\n  File x\nNotImplementedError: BPE\rWriting: 100%|###| 1/1\n"
    assert last_error_line(log) == "NotImplementedError: BPE"
    assert last_error_line("just output\n") == "just output"


# ---------------------------------------------------------------- slow: llama.cpp itself

LLAMA_SCRIPT = """
import json, sys
from llama_cpp import Llama
path, prompt, eos, n = sys.argv[1], sys.argv[2], set(json.loads(sys.argv[3])), int(sys.argv[4])
llm = Llama(model_path=path, n_ctx=512, seed=0, n_threads=2, verbose=False)
tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
answer = []
for token in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
    answer.append(token)
    if token in eos or len(answer) == n:
        break
print(json.dumps({"prompt": tokens, "answer": answer}))
"""


def _llama_cpp_site(request, tmp_path_factory) -> Path | None:
    """None when llama_cpp imports here; else a folder with llama-cpp-python compiled into it (kept between runs)."""
    try:
        import llama_cpp  # noqa: F401

        return None
    except ImportError:
        pass
    cache = request.config.cache
    site = cache.mkdir("llama-cpp-python-0.3.36") if cache is not None else tmp_path_factory.mktemp("llama-cpp")
    if (site / "llama_cpp" / "__init__.py").is_file():
        return site
    partial = site.with_name(site.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    # --target keeps the venv as it is; numpy, jinja2 and typing-extensions come from the venv
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(partial)]
    result = subprocess.run([*cmd, LLAMA_CPP_PYTHON, "diskcache==5.6.3"], capture_output=True, text=True, timeout=3600)
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        pytest.skip(f"{LLAMA_CPP_PYTHON} could not be built here (needs a C++ compiler and cmake): {last}")
    shutil.rmtree(site)
    partial.rename(site)
    return site


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_llama_cpp_answers_like_the_merged_model(request, tmp_path_factory, tmp_path):
    """The real embedded SmolLM2 (LoRA, 2 steps) exported to f16 GGUF: llama.cpp's greedy 16 tokens are the merge's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    from sectune.serve.export import export

    site = _llama_cpp_site(request, tmp_path_factory)
    run = train_tiny("smollm2-135m", tmp_path, "lora")
    out = export(run, tmp_path / "smol", gguf="f16")
    model = AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    text, batch = _prompt_ids(tokenizer, LONG_PROMPT)
    expected = _greedy(model, batch, tokenizer.pad_token_id)
    eos = GenerationConfig.from_pretrained(out).eos_token_id
    eos = [eos] if isinstance(eos, int) else list(eos)
    env = {**os.environ, "PYTHONPATH": str(site)} if site is not None else None
    cmd = [sys.executable, "-c", LLAMA_SCRIPT, str(out / "gguf" / "smol-f16.gguf"), text, json.dumps(eos)]
    result = subprocess.run([*cmd, str(NEW_TOKENS)], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    llama = json.loads(result.stdout.strip().splitlines()[-1])
    assert llama["prompt"] == batch["input_ids"][0].tolist()
    assert len(expected) == NEW_TOKENS and llama["answer"] == expected
