"""Clean, de-duplicate and split rows: deterministic by seed, near-duplicates never cross splits.

Near duplicates are defined in :mod:`sectune.data.dedup` (the MinHash Jaccard estimate of byte 5-grams, the
same definition generate uses), here over the user and assistant text of a row (the system prompt is shared
by most rows, so it is left out). Rows are grouped into clusters of near duplicates; with dedup on, each
cluster keeps its first row; with dedup off, a whole cluster goes to one split. Either way the leakage check
afterwards must find no near-duplicate pair across splits.
"""

from __future__ import annotations

import hashlib
import random
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.config.prep import PrepConfig
from sectune.data.dedup import NearDuplicateIndex, signature
from sectune.data.rows import SourcedRow
from sectune.errors import UserError

SPLITS = ("train", "validation", "test")


def normalise_text(text: str) -> str:
    """NFC, unix newlines, no trailing spaces, runs of spaces collapsed, at most one blank line."""
    text = unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n")
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def normalise_rows(rows: list[SourcedRow]) -> None:
    for row in rows:
        for message in row.messages:
            message["content"] = normalise_text(message["content"])


def _signature_text(row: SourcedRow) -> str:
    return "\n".join(m["content"].lower() for m in row.messages if m["role"] != "system")


class _Signatures:
    """MinHash per row, computed once for the dedup pass and reused by the leakage check."""

    def __init__(self, num_perm: int) -> None:
        self.num_perm = num_perm
        self._by_row: dict[int, Any] = {}

    def __call__(self, row: SourcedRow):
        key = id(row)
        if key not in self._by_row:
            self._by_row[key] = signature(_signature_text(row), self.num_perm)
        return self._by_row[key]


@dataclass
class DedupReport:
    exact_duplicates: int = 0
    near_duplicates: int = 0
    clusters: list[list[int]] = field(default_factory=list)  # indices into the rows given, first = kept


def find_duplicates(rows: list[SourcedRow], cfg: PrepConfig, signatures: _Signatures | None = None) -> DedupReport:
    """Clusters of exact and near duplicates (union-find over near-duplicate pairs)."""
    parent = list(range(len(rows)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    signatures = signatures or _Signatures(cfg.minhash_perm)
    report = DedupReport()
    exact: dict[str, int] = {}
    near = NearDuplicateIndex(cfg.near_dup_threshold, cfg.minhash_perm)
    for index, row in enumerate(rows):
        text = _signature_text(row)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if digest in exact:
            parent[root(index)] = root(exact[digest])
            report.exact_duplicates += 1
            continue
        exact[digest] = index
        minhash = signatures(row)
        for other in near.query(minhash):
            parent[root(index)] = root(other)
        near.add(index, minhash)
    groups: dict[int, list[int]] = {}
    for index in range(len(rows)):
        groups.setdefault(root(index), []).append(index)
    report.clusters = [sorted(members) for members in sorted(groups.values(), key=min)]
    report.near_duplicates = sum(len(c) - 1 for c in report.clusters) - report.exact_duplicates
    return report


def split_rows(
    rows: list[SourcedRow], cfg: PrepConfig, seed: int, path: Path
) -> tuple[dict[str, list[SourcedRow]], dict[str, Any]]:
    """De-duplicate (when asked) and split into train/validation/test; the report has the counts."""
    signatures = _Signatures(cfg.minhash_perm)
    dedup = find_duplicates(rows, cfg, signatures)
    clusters = [[c[0]] for c in dedup.clusters] if cfg.dedup else dedup.clusters
    _refuse_sizes_leaving_no_train(sum(len(c) for c in clusters), cfg, path)
    strata = _strata(rows, clusters, cfg, path)
    splits: dict[str, list[int]] = {name: [] for name in SPLITS}
    rng = random.Random(seed)
    for key in sorted(strata, key=str):
        groups = strata[key]
        rng.shuffle(groups)
        for name, chosen in _assign(groups, cfg).items():
            splits[name].extend(i for group in chosen for i in group)
    kept = sum(len(v) for v in splits.values())
    if not splits["train"]:
        raise UserError(
            f"too few rows to split ({kept}) with prep.validation_size={cfg.validation_size:g} and "
            f"prep.test_size={cfg.test_size:g}",
            file=path,
            field="prep.validation_size",
            fix="add rows or lower prep.validation_size / prep.test_size",
        )
    result = {name: [rows[i] for i in sorted(indices)] for name, indices in splits.items()}
    report = {
        "rows_before_dedup": len(rows),
        "exact_duplicates_removed": dedup.exact_duplicates if cfg.dedup else 0,
        "near_duplicates_removed": dedup.near_duplicates if cfg.dedup else 0,
        "duplicate_clusters_kept_together": 0 if cfg.dedup else sum(len(c) > 1 for c in dedup.clusters),
        "near_dup_threshold": cfg.near_dup_threshold,
        "stratify_by": cfg.stratify_by,
        "strata": {str(k): sum(len(g) for g in v) for k, v in sorted(strata.items(), key=lambda kv: str(kv[0]))}
        if cfg.stratify_by
        else None,
    }
    leaks = leakage_pairs(result, cfg, signatures)
    report["leakage_pairs"] = len(leaks)
    if leaks:  # cannot happen by construction; refuse rather than write a leaky split
        a, b = leaks[0]
        raise UserError(f"near-duplicate rows cross splits ({a} ~ {b})", file=path, fix="report this as a bug")
    return result, report


def _refuse_sizes_leaving_no_train(rows: int, cfg: PrepConfig, path: Path) -> None:
    """A UserError when validation_size and test_size take every one of ``rows`` rows (none left to train)."""
    validation, test = round(rows * cfg.validation_size), round(rows * cfg.test_size)
    if rows - validation - test >= 1:
        return
    raise UserError(
        f"{rows} rows with prep.validation_size={cfg.validation_size:g} ({validation} rows) and "
        f"prep.test_size={cfg.test_size:g} ({test} rows) leave 0 rows to train",
        file=path,
        field="prep.validation_size",
        fix="add rows, or lower prep.validation_size / prep.test_size so that some rows are left to train",
    )


def _strata(
    rows: list[SourcedRow], clusters: list[list[int]], cfg: PrepConfig, path: Path
) -> dict[Any, list[list[int]]]:
    if not cfg.stratify_by:
        return {None: [list(c) for c in clusters]}
    strata: dict[Any, list[list[int]]] = {}
    for cluster in clusters:
        first = rows[cluster[0]]
        if cfg.stratify_by not in first.meta:
            available = ", ".join(sorted(first.meta)) or "none"
            raise UserError(
                f"{first.where}: meta field '{cfg.stratify_by}' missing (meta fields: {available})",
                file=path,
                field="prep.stratify_by",
                fix="name a meta field every row has, or unset prep.stratify_by",
            )
        strata.setdefault(first.meta[cfg.stratify_by], []).append(list(cluster))
    return strata


def _assign(groups: list[list[int]], cfg: PrepConfig) -> dict[str, list[list[int]]]:
    """Take test and validation groups off the front of a shuffled stratum (sizes by rows, rounded)."""
    total = sum(len(g) for g in groups)
    targets = {"test": round(total * cfg.test_size), "validation": round(total * cfg.validation_size)}
    out: dict[str, list[list[int]]] = {name: [] for name in SPLITS}
    position = 0
    for name in ("test", "validation"):
        taken = 0
        while position < len(groups) - 1 and taken < targets[name]:  # always leave one group for train
            out[name].append(groups[position])
            taken += len(groups[position])
            position += 1
    out["train"] = groups[position:]
    return out


def leakage_pairs(
    splits: dict[str, list[SourcedRow]], cfg: PrepConfig, signatures: _Signatures | None = None
) -> list[tuple[str, str]]:
    """Pairs (validation/test row, train row) that are near duplicates: must be empty."""
    signatures = signatures or _Signatures(cfg.minhash_perm)
    train = NearDuplicateIndex(cfg.near_dup_threshold, cfg.minhash_perm)
    for index, row in enumerate(splits["train"]):
        train.add(index, signatures(row))
    pairs = []
    for name in ("validation", "test"):
        for row in splits[name]:
            for hit in train.query(signatures(row)):
                pairs.append((f"{name} {row.where}", f"train {splits['train'][hit].where}"))
    return pairs
