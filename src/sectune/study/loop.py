"""``study.loop: 1``: close the loop once. The chosen variant was trained and evaluated by the study; then

1. ``generate --focus`` writes new samples for its weakest topics (``out/loop/generate``), rejecting any that
   come too close to the dataset's test or train rows (``generate.quality.against``);
2. ``prep`` turns them into train rows (``out/loop/new-data``, no held-out split of their own);
3. the original train split plus those rows, with the original validation and test splits, is the loop's
   dataset (``out/loop/dataset``): the test questions are the very same, so before and after pair row by row;
4. the variant is trained again on it from the same base (``out/loop/runs``) and evaluated (``out/loop/evals``).

The report's ``loop`` entry compares after with before on the same test rows, per topic and overall (held-out
score, paired bootstrap), and per benchmark (accuracy, paired): a difference whose interval holds 0 is labelled
"within noise". Each step's folder is reused when finished, so a killed loop continues where it stopped.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.runs import SUMMARY_FILE, is_finished, read_json

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.study.cells import StudyCell

LOOP_DIR = "loop"
Table = tuple[str, list[str], list[list[str]]]


def loop_cell(cfg: ExperimentConfig, cells: list[StudyCell]) -> StudyCell:
    """The variant the loop improves: ``study.loop_variant`` (first model), else the first trained one."""
    wanted = cfg.study.loop_variant
    trained = [c for c in cells if c.variant != "base" and (wanted is None or c.variant == wanted)]
    if not trained:
        raise UserError(
            f"study.loop needs a trained variant{f' {wanted!r}' if wanted else ''} in study.variants",
            field="study.loop_variant" if wanted else "study.variants",
            fix="add lora (or qlora, full) to study.variants, or set study.loop=0",
        )
    return trained[0]


def run_loop(cfg: ExperimentConfig, cells: list[StudyCell], dataset: Path, out: Path) -> dict[str, Any]:
    """Generate for the weak topics, train again, evaluate again; the report's ``loop`` entry."""
    from sectune.study.cells import evaluate_variant, train_variant, variant_config

    before = loop_cell(cfg, cells)
    folder = out / LOOP_DIR
    samples = _generate_for_weak_topics(cfg, before, dataset, folder / "generate")
    new_rows = _prepare_new_rows(cfg, before.model, samples, folder / "new-data")
    loop_dataset = _loop_dataset(dataset, new_rows, folder / "dataset")
    cfg_v = variant_config(cfg, before.model, before.variant)
    name = f"{before.eval_dir.name}"
    run_dir, _ = train_variant(cfg_v, loop_dataset, folder / "runs" / name, reuse=True)
    after_eval = folder / "evals" / name
    after = evaluate_variant(cfg_v, run_dir, loop_dataset, after_eval, reuse=True)
    focus = read_json(samples.parent / "focus.json")
    return {
        "variant": before.label,
        "eval_before": str(before.eval_dir),
        "eval_after": str(after_eval),
        "focus": {"topics": focus["topics"], "metric": focus["metric"], "rule": focus["rule"]},
        "new_train_rows": _count_lines(new_rows),
        "held_out": _held_out_before_after(cfg, before.eval_dir, after_eval, focus["metric"]),
        "mcq": _mcq_before_after(cfg, before.eval, after),
    }


def _generate_for_weak_topics(cfg: ExperimentConfig, cell: StudyCell, dataset: Path, out: Path) -> Path:
    """samples.jsonl of a ``generate.focus`` run on the cell's evaluation (continued when it was killed)."""
    from sectune.generate.api import generate
    from sectune.generate.summary import shortfall_error

    against = [str(dataset / name) for name in ("test.jsonl", "train.jsonl") if (dataset / name).is_file()]
    quality = cfg.generate.quality.model_copy(update={"against": [*cfg.generate.quality.against, *against]})
    label = next(iter(read_json(cell.eval_dir / SUMMARY_FILE)["targets"]))
    plan = cfg.generate.focus_plan.model_copy(update={"target": label})
    gen = cfg.generate.model_copy(update={"focus": str(cell.eval_dir), "focus_plan": plan, "quality": quality})
    if not is_finished(out):
        generate(cfg.model_copy(update={"generate": gen}), out, resume=out.exists())
    problem = shortfall_error(read_json(out / SUMMARY_FILE), out)
    if problem is not None and read_json(out / SUMMARY_FILE).get("accepted", 0) == 0:
        raise problem  # nothing to train on: say why (the generation's own one-line error)
    return out / "samples.jsonl"


def _prepare_new_rows(cfg: ExperimentConfig, model: str, samples: Path, out: Path) -> Path:
    """The new samples as train rows for ``model`` (same prep settings, no held-out split of their own)."""
    from sectune.data.api import prepare

    if not is_finished(out):
        prep = cfg.prep.model_copy(update={"validation_size": 0.0, "test_size": 0.0})
        prepare(cfg.model_copy(update={"model": model, "prep": prep}), samples, out, overwrite=True)
    return out / "train.jsonl"


def _loop_dataset(dataset: Path, new_rows: Path, out: Path) -> Path:
    """The original splits with the new train rows appended; written whole, then renamed (never half a file)."""
    if (out / "train.jsonl").is_file():
        return out
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in ("validation.jsonl", "test.jsonl"):
        if (dataset / name).is_file():
            shutil.copyfile(dataset / name, tmp / name)
    original = (dataset / "train.jsonl").read_text(encoding="utf-8") if (dataset / "train.jsonl").is_file() else ""
    if original and not original.endswith("\n"):
        original += "\n"
    (tmp / "train.jsonl").write_text(original + new_rows.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.rename(out)
    return out


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def _predictions(eval_dir: Path) -> list[dict[str, Any]]:
    from sectune.data.jsonl import read_jsonl

    files = sorted((eval_dir / "predictions").glob("*.jsonl"))
    return read_jsonl(files[0]) if files else []


def _held_out_before_after(cfg: ExperimentConfig, before: Path, after: Path, metric: str) -> dict[str, Any]:
    """Per topic (worst before first) and overall: after − before on the same test rows, paired."""
    from sectune.evaluate.stats import paired_difference

    old, new = _predictions(before), _predictions(after)
    if len(old) != len(new):
        return {"metric": metric, "topics": [], "overall": None, "why": "the two evaluations scored different rows"}
    pairs: dict[str, list[tuple[float, float]]] = {}
    everything: list[tuple[float, float]] = []
    for a, b in zip(old, new, strict=True):
        if metric not in (a.get("scores") or {}) or metric not in (b.get("scores") or {}):
            continue  # a failed request on either side: not a pair
        pair = (a["scores"][metric], b["scores"][metric])
        everything.append(pair)
        pairs.setdefault(str((a.get("meta") or {}).get("topic") or "(none)"), []).append(pair)

    def compare(rows: list[tuple[float, float]]) -> dict[str, Any]:
        first, second = [x for x, _ in rows], [y for _, y in rows]
        diff = paired_difference(second, first, samples=cfg.eval.bootstrap_samples, seed=cfg.seed)
        return {"before": sum(first) / len(first), "after": sum(second) / len(second), **diff}

    topics = [{"topic": topic, **compare(rows)} for topic, rows in pairs.items()]
    topics.sort(key=lambda t: (t["before"], t["topic"]))
    return {"metric": metric, "topics": topics, "overall": compare(everything) if everything else None}


def _mcq_before_after(cfg: ExperimentConfig, before: dict[str, Any], after: dict[str, Any]) -> list[dict[str, Any]]:
    from sectune.evaluate.stats import paired_difference

    rows = []
    for bench, result in (after.get("mcq") or {}).items():
        old = (before.get("mcq") or {}).get(bench)
        for method, data in result["methods"].items():
            if not old or method not in old["methods"]:
                continue
            first, second = old["methods"][method]["correct"], data["correct"]
            diff = paired_difference(second, first, samples=cfg.eval.bootstrap_samples, seed=cfg.seed)
            before_acc, after_acc = sum(first) / len(first), sum(second) / len(second)
            rows.append({"benchmark": bench, "method": method, "before": before_acc, "after": after_acc, **diff})
    return rows


def loop_tables(report: dict[str, Any], fmt: Any, fmt_interval: Any) -> list[Table]:
    """The loop's before/after tables: held-out per topic (and overall), then MCQ."""
    loop = report.get("loop")
    if not loop:
        return []
    header = ["topic", "rows", "before", "after", "after − before [95 % CI]", "verdict"]
    held = loop["held_out"]

    def row(name: str, entry: dict[str, Any]) -> list[str]:
        interval = {"value": entry["difference"], "ci_low": entry["ci_low"], "ci_high": entry["ci_high"]}
        return [name, fmt(entry["n"]), fmt(entry["before"]), fmt(entry["after"]), fmt_interval(interval),
                entry["verdict"]]  # fmt: skip

    rows = [row(t["topic"], t) for t in held["topics"]]
    if held.get("overall"):
        rows.append(row("all test rows", held["overall"]))
    planned = ", ".join(f"{t['topic']} +{t['samples']}" for t in loop["focus"]["topics"])
    title = (
        f"Loop: {loop['variant']} before and after {loop['new_train_rows']} new train rows for its weak topics "
        f"({planned}); held-out {held['metric']}, paired on the same test rows"
    )
    tables = [(title, header, rows)]
    if loop["mcq"]:
        mcq_header = ["benchmark", "method", "before", "after", "after − before [95 % CI]", "verdict"]
        mcq_rows = [
            [m["benchmark"], m["method"], fmt(m["before"]), fmt(m["after"]),
             fmt_interval({"value": m["difference"], "ci_low": m["ci_low"], "ci_high": m["ci_high"]}), m["verdict"]]
            for m in loop["mcq"]
        ]  # fmt: skip
        tables.append((f"Loop: {loop['variant']} MCQ accuracy before and after, paired", mcq_header, mcq_rows))
    return tables
