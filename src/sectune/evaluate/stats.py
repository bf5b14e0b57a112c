"""Intervals and paired comparisons: seeded bootstrap, paired bootstrap, exact McNemar.

A difference whose interval contains 0 is labelled "within noise", never reported as a finding.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def bootstrap_interval(
    values: Sequence[float] | np.ndarray, *, samples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """95 % percentile bootstrap interval of the mean of ``values`` (seeded: same inputs, same interval)."""
    data = np.asarray(values, dtype=np.float64)
    if data.size == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return (float(low), float(high))


def mean_with_interval(values: Sequence[float], *, samples: int = 1000, seed: int = 0) -> dict[str, float]:
    """{"value", "ci_low", "ci_high", "n"} for a list of per-item scores (e.g. 0/1 correctness)."""
    low, high = bootstrap_interval(values, samples=samples, seed=seed)
    return {"value": float(np.mean(values)) if len(values) else 0.0, "ci_low": low, "ci_high": high, "n": len(values)}


def mcnemar_p(a: Sequence[bool], b: Sequence[bool]) -> float:
    """Exact two-sided McNemar p-value over the discordant pairs (binomial, p = 0.5)."""
    only_a = sum(1 for x, y in zip(a, b, strict=True) if x and not y)
    only_b = sum(1 for x, y in zip(a, b, strict=True) if y and not x)
    n = only_a + only_b
    if n == 0:
        return 1.0
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2**n
    return min(1.0, 2 * tail)


def paired_difference(
    a: Sequence[float], b: Sequence[float], *, samples: int = 1000, seed: int = 0
) -> dict[str, float | bool | str]:
    """Mean of a − b on the same items with a paired-bootstrap 95 % interval and McNemar's p.

    ``significant`` is true only when the interval excludes 0; otherwise the verdict is "within noise".
    """
    if len(a) != len(b):
        raise ValueError("a paired difference needs the same questions on both sides")
    diff = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    low, high = bootstrap_interval(diff, samples=samples, seed=seed)
    significant = bool(low > 0 or high < 0)
    return {
        "difference": float(diff.mean()) if diff.size else 0.0,
        "ci_low": low,
        "ci_high": high,
        "mcnemar_p": mcnemar_p([bool(x) for x in a], [bool(x) for x in b]),
        "n": int(diff.size),
        "significant": significant,
        "verdict": ("better" if low > 0 else "worse") if significant else "within noise",
    }
