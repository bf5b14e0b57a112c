"""Where a model is weak: every per-row score broken down by a group (topic, domain type, benchmark category).

A group entry is ``{"group", "n", "value", "ci_low", "ci_high"}`` (95 % bootstrap interval of the mean) plus
what identifies it for a later stage (a topic's ``path`` and ``domain_type``, so ``generate --focus`` can write
more samples about it). Entries are sorted worst first: lowest mean, then the fewer rows (less certain), then
the name, so the order is the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sectune.evaluate.stats import mean_with_interval

NO_GROUP = "(none)"  # rows without the key (e.g. imported rows with no topic)
# Held-out dimensions: the name in a breakdown and the meta key it reads.
HELD_OUT_DIMENSIONS = {"topic": "topic", "domain_type": "domain_type"}


def group_scores(
    keys: Sequence[str | None],
    scores: Sequence[float],
    *,
    samples: int = 1000,
    seed: int = 0,
    details: Mapping[str, dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Per distinct key: the mean score with its interval and count, worst first. ``details`` adds fields."""
    if len(keys) != len(scores):
        raise ValueError("one group key per score")
    grouped: dict[str, list[float]] = {}
    for key, score in zip(keys, scores, strict=True):
        grouped.setdefault(key or NO_GROUP, []).append(float(score))
    entries = [
        {"group": group, **mean_with_interval(values, samples=samples, seed=seed), **(details or {}).get(group, {})}
        for group, values in grouped.items()
    ]
    return sorted(entries, key=lambda e: (e["value"], e["n"], e["group"]))


def meta_breakdown(
    metas: Sequence[Mapping[str, Any]],
    per_row: Mapping[str, Sequence[float]],
    *,
    samples: int = 1000,
    seed: int = 0,
) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """{dimension: {metric: groups}} for each held-out dimension some row carries (rows' ``meta``)."""
    result: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for dimension, key in HELD_OUT_DIMENSIONS.items():
        keys = [_text(meta.get(key)) for meta in metas]
        if not any(keys):
            continue
        details = _topic_details(metas) if dimension == "topic" else None
        result[dimension] = {
            metric: group_scores(keys, scores, samples=samples, seed=seed, details=details)
            for metric, scores in per_row.items()
        }
    return result


def _topic_details(metas: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """For each topic: its path (a list) and domain type, from the first row that has them."""
    details: dict[str, dict[str, Any]] = {}
    for meta in metas:
        topic = _text(meta.get("topic"))
        if topic is None or topic in details:
            continue
        path = meta.get("topic_path")
        entry: dict[str, Any] = {"path": list(path) if isinstance(path, list) else topic.split(" > ")}
        for key in ("domain_type", "topic_id"):
            if meta.get(key) is not None:
                entry[key] = meta[key]
        details[topic] = entry
    return details


def _text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def category_breakdown(
    categories: Sequence[str | None], correct: Sequence[int], *, samples: int = 1000, seed: int = 0
) -> list[dict[str, Any]] | None:
    """Accuracy per benchmark category, worst first; None when the benchmark has no categories."""
    if not any(categories):
        return None
    return group_scores(categories, correct, samples=samples, seed=seed)


def plot_breakdowns(panels: Sequence[tuple[str, Mapping[str, list[dict[str, Any]]]]], path: Any) -> bool:
    """One horizontal bar chart per panel (title, {series label: groups}), worst first, with 95 % intervals.

    Returns False (and writes nothing) when there is nothing to plot.
    """
    panels = [(title, series) for title, series in panels if any(series.values())]
    if not panels:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    heights = [max(len(next(iter(series.values()))), 1) for _, series in panels]
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, sum(0.35 * h + 1.2 for h in heights)), squeeze=False)
    for ax, (title, series) in zip(axes[:, 0], panels, strict=True):
        _bars(ax, series)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _bars(ax: Any, series: Mapping[str, list[dict[str, Any]]]) -> None:
    """Grouped horizontal bars: the groups in the first series' order (worst at the top)."""
    order = [entry["group"] for entry in next(iter(series.values()))]
    width = 0.8 / max(len(series), 1)
    for index, (label, groups) in enumerate(series.items()):
        by_group = {entry["group"]: entry for entry in groups}
        ys: list[float] = []
        values: list[float] = []
        errors: list[list[float]] = [[], []]
        for position, group in enumerate(order):
            entry = by_group.get(group)
            if entry is None:
                continue
            ys.append(position + index * width)
            values.append(entry["value"])
            errors[0].append(max(entry["value"] - entry.get("ci_low", entry["value"]), 0.0))
            errors[1].append(max(entry.get("ci_high", entry["value"]) - entry["value"], 0.0))
        ax.barh(ys, values, height=width, xerr=errors, label=label, capsize=2)
    ax.set_yticks([p + width * (len(series) - 1) / 2 for p in range(len(order))])
    ax.set_yticklabels([_short(group) for group in order], fontsize=7)
    ax.invert_yaxis()
    highest = max((e.get("ci_high", e["value"]) for groups in series.values() for e in groups), default=1.0)
    ax.set_xlim(0, max(1.0, highest))  # scores and accuracies live in [0, 1]: an all-zero panel still has a scale
    if len(series) > 1:
        ax.legend(fontsize=7)


def _short(group: str, limit: int = 48) -> str:
    """The end of a long topic path: its leaf is what tells topics apart."""
    return group if len(group) <= limit else "…" + group[-(limit - 1) :]
