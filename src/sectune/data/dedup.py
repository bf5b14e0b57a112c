"""What "near duplicate" means in sectune: one definition for generate (each new sample against the accepted
ones) and prep (every row against every other, then each held-out row against train).

Two texts are near duplicates when the Jaccard similarity of their **byte 5-grams**, as MinHash estimates it,
reaches the stage's threshold (``generate.quality.near_duplicate_threshold``, ``prep.near_dup_threshold``):

* :func:`normalise`: lower case, every run of non-word characters one space (punctuation, line breaks and
  markdown never make two texts different);
* :func:`shingles`: every 5-byte slice of the normalised UTF-8 text (a text shorter than that is one shingle);
* :func:`signature`: a MinHash of the shingles (``num_perm`` permutations, seed 1, crc32: stable across
  processes, unlike ``hash()``, and ~10x cheaper than sha1; computed for all windows at once in numpy);
* :class:`NearDuplicateIndex`: MinHash LSH (datasketch) finds the candidates, so a lookup costs about the same
  however many texts are indexed; a candidate is a near duplicate when the two signatures' Jaccard estimate
  (the share of equal MinHash values) reaches the threshold. Both stages used to count every candidate, but
  LSH also returns some pairs below the threshold (one in 13 at Jaccard 0.75 for 0.85: unchecked, prep would
  drop one of ten short test rows one digit apart), and the check costs nothing when no candidate comes
  back, which is nearly always.

Why byte 5-grams and not word 3-grams (prep's shingles before both stages shared one definition): Q&A pairs
are short, and a word 3-gram set is fragile on short text. One word reworded in a 20-word answer replaces
three of its ~20 word 3-grams (Jaccard ~0.7: below any useful threshold) but only ~10 of its ~120 byte
5-grams (Jaccard ~0.85-0.9). Byte slices of one encoded string also need no encode per shingle, which keeps
generate's check cheap on its event loop. Generate always used them; the sample tests of both stages keep
their results (prep's one reworded copy stays below 0.85 as estimated, 0.84; its word 3-gram Jaccard was 0.68).

Exact duplicates stay each stage's own rule: generate rejects a sample whose normalised first question was
seen before; prep merges rows whose whole text is the same.
"""

from __future__ import annotations

import copy
import functools
import re
import zlib
from collections.abc import Hashable
from typing import Any

import numpy as np

SHINGLE_BYTES = 5
SEED = 1
NUM_PERM = 128
_NON_WORD = re.compile(r"[^\w]+")


def normalise(text: str) -> str:
    """Lower case, runs of non-word characters (punctuation, whitespace) one space, trimmed."""
    return " ".join(_NON_WORD.sub(" ", text.lower()).split())


def shingles(text: str) -> set[bytes]:
    """The byte 5-grams of the normalised text (slices of one encoded string: no encode per shingle)."""
    data = normalise(text).encode()
    return {data[i : i + SHINGLE_BYTES] for i in range(max(1, len(data) - SHINGLE_BYTES + 1))}


@functools.lru_cache(maxsize=4)
def _permutations(num_perm: int) -> Any:
    from datasketch import MinHash

    return MinHash(num_perm=num_perm, seed=SEED).permutations  # computing them is most of a MinHash's setup


@functools.cache
def _crc_tables() -> tuple[np.ndarray, int]:
    """CRC-32 of a fixed-length message is affine over GF(2): ``crc(w) = crc(0…0) ^ T0[w0] ^ … ^ T4[w4]``,
    where ``Ti[v]`` is the CRC of the message with byte ``v`` at position ``i`` xor the all-zero CRC."""
    zero = zlib.crc32(bytes(SHINGLE_BYTES))
    tables = np.empty((SHINGLE_BYTES, 256), dtype=np.uint32)
    for position in range(SHINGLE_BYTES):
        for value in range(256):
            message = bytearray(SHINGLE_BYTES)
            message[position] = value
            tables[position, value] = zlib.crc32(bytes(message)) ^ zero
    return tables, zero


def shingle_hashes(text: str) -> np.ndarray:
    """``zlib.crc32`` of every shingle (repeats included: a MinHash's minimum ignores them), all windows at
    once in numpy: the same values as hashing :func:`shingles` one by one, at a fraction of the CPU (generate
    fingerprints every sample on its event loop; prep every row)."""
    data = normalise(text).encode()
    if len(data) < SHINGLE_BYTES:  # the whole (short) text is the one shingle
        return np.array([zlib.crc32(data)], dtype=np.uint32)
    window = np.frombuffer(data, dtype=np.uint8)
    count = len(window) - SHINGLE_BYTES + 1
    tables, zero = _crc_tables()
    hashes = np.full(count, zero, dtype=np.uint32)
    for position in range(SHINGLE_BYTES):
        hashes ^= tables[position][window[position : position + count]]
    return hashes


# MurmurHash3's 32-bit finalizer, which datasketch's "affine32" scheme applies to each hash before permuting
_FMIX32 = (np.uint32(16), np.uint32(0x85EBCA6B), np.uint32(13), np.uint32(0xC2B2AE35), np.uint32(16))


def minhash_values(hashes: np.ndarray, num_perm: int = NUM_PERM) -> np.ndarray:
    """datasketch's affine32 MinHash values of 32-bit hashes: ``min over hashes of a * fmix32(h) + b`` (mod
    2^32) for each of the ``num_perm`` permutations ``(a, b)``. One (num_perm × hashes) array op: about half
    the CPU of ``MinHash.update_batch``, which converts and lays the same product out the other way."""
    s1, m1, s2, m2, s3 = _FMIX32
    mixed = hashes.astype(np.uint32)
    mixed = (mixed ^ (mixed >> s1)) * m1
    mixed = (mixed ^ (mixed >> s2)) * m2
    mixed ^= mixed >> s3
    a, b = _permutations(num_perm)
    products = np.multiply.outer(a, mixed)
    products += b[:, None]
    return products.min(axis=1)


def signature(text: str, num_perm: int = NUM_PERM) -> Any:
    """The MinHash (datasketch) of the text's shingles; equal texts give equal signatures in every process.

    The same values as ``MinHash(hashfunc=zlib.crc32, scheme="affine32").update_batch(shingles(text))``
    (tests/data/test_jsonl_dedup.py holds them equal), computed in numpy: generate fingerprints every sample
    on its event loop, prep every row.
    """
    minhash = copy.copy(_empty_minhash(num_perm))  # shallow: shares the permutations, which nothing changes
    minhash.hashvalues = minhash_values(shingle_hashes(text), num_perm)
    return minhash


@functools.lru_cache(maxsize=4)
def _empty_minhash(num_perm: int) -> Any:
    """The template every signature copies: datasketch's constructor re-validates the permutations each time."""
    from datasketch import MinHash

    return MinHash(
        num_perm=num_perm, seed=SEED, hashfunc=zlib.crc32, permutations=_permutations(num_perm), scheme="affine32"
    )


class NearDuplicateIndex:
    """Signatures by key; :meth:`query` gives the keys of the indexed near duplicates of a signature."""

    def __init__(self, threshold: float, num_perm: int = NUM_PERM) -> None:
        from datasketch import MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self._lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self._values: dict[Hashable, Any] = {}  # key → MinHash values (num_perm uint32: 512 bytes at 128)

    def query(self, minhash: Any) -> list[Any]:
        """Keys of the indexed near duplicates: LSH candidates whose Jaccard estimate reaches the threshold."""
        values = minhash.hashvalues
        return [
            key
            for key in self._lsh.query(minhash)
            if float(np.count_nonzero(self._values[key] == values)) / len(values) >= self.threshold
        ]

    def add(self, key: Hashable, minhash: Any) -> None:
        self._lsh.insert(key, minhash)
        self._values[key] = minhash.hashvalues

    def __len__(self) -> int:
        return len(self._values)
