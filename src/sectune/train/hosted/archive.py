"""Unpack a downloaded adapter archive (zip, tar, tar.gz/bz2/xz, tar.zst) into ``RUN/adapter/``.

Services pack the adapter differently (Predibase: a zip, Together: a tar.zst) and some nest it in a folder;
the adapter is the folder that holds ``adapter_config.json``. Members that would land outside the target
folder (``../``, absolute paths, links) are refused.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

from sectune.errors import UserError
from sectune.models.load import RUN_ADAPTER

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")


def extract_adapter(archive: Path, work: Path) -> Path:
    """Unpack ``archive``, move the adapter folder to ``work/adapter`` and return it."""
    unpacked = archive.parent / "unpacked"
    shutil.rmtree(unpacked, ignore_errors=True)
    unpacked.mkdir(parents=True)
    _unpack(archive, unpacked)
    configs = sorted(unpacked.rglob("adapter_config.json"), key=lambda p: len(p.parts))
    if not configs or not any((configs[0].parent / name).is_file() for name in WEIGHTS):
        raise UserError(
            "the downloaded archive holds no PEFT adapter (adapter_config.json + adapter_model.safetensors)",
            file=archive,
            fix="check the job's result at the provider",
        )
    target = work / RUN_ADAPTER
    shutil.rmtree(target, ignore_errors=True)
    shutil.move(str(configs[0].parent), str(target))
    shutil.rmtree(archive.parent, ignore_errors=True)
    return target


def _unpack(archive: Path, into: Path) -> None:
    data = archive.read_bytes()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zipped:
            for name in zipped.namelist():
                _refuse_escape(name, archive)
            zipped.extractall(into)
        return
    if data[:4] == ZSTD_MAGIC:
        data = _unzstd(data, archive)
    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            tar.extractall(into, filter="data")  # "data": no links out, no absolute paths, no devices
    except tarfile.TarError as exc:
        raise UserError(f"cannot unpack the downloaded adapter: {exc}", file=archive, fix="download it again") from None


def _unzstd(data: bytes, archive: Path) -> bytes:
    try:
        import zstandard
    except ImportError:
        raise UserError(
            "the adapter came as a .tar.zst and the zstandard package is not installed",
            file=archive,
            fix="pip install zstandard, then run the same sectune train --resume (it downloads again, no new job)",
        ) from None
    return bytes(zstandard.ZstdDecompressor().decompressobj().decompress(data))


def _refuse_escape(name: str, archive: Path) -> None:
    if name.startswith("/") or ".." in Path(name).parts:
        raise UserError(f"archive member '{name}' points outside the folder", file=archive, fix="do not use it")
