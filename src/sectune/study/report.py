"""The study report: ``report.json`` holds every number; Markdown and HTML are rendered FROM it; PNG plots.

Honest comparisons: beside every MCQ accuracy the trivial baselines on the same questions, and for each
trained variant the paired difference against the base model on the same questions, with its interval
and a verdict ("within noise" unless the interval excludes 0).

Contamination: the study's training data (the dataset's train.jsonl) is checked against the questions each
benchmark was scored on and the test split (``sectune.data.contamination``). Every MCQ accuracy is shown on
all questions and on the clean ones (no training row contains them), and a difference is called real only
when the clean questions show it too: one that holds only on contaminated questions gets the verdict
"only on contaminated questions".
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.evaluate.stats import mean_with_interval, paired_difference
from sectune.runs import atomic_output_dir, read_json, write_json
from sectune.study.loop import loop_tables
from sectune.study.weak import WEAK_SPOTS_PLOT, plot_weak_spots, weak_spot_tables, weak_spots

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.study.cells import StudyCell

TRAIN_FIELDS = [
    "train_runtime_s",
    "tokens_per_s",
    "peak_memory_mb",
    "trainable_params",
    "total_params",
    "final_train_loss",
    "eval_loss",
]
SIGNIFICANT = 6
PEAK_RSS_NOTE = (
    "Note: on CPU, peak memory is the process's resident set sampled while each run trained; it includes what "
    "the process already held (libraries, about 0.5–1 GB), so compare variants by their differences."
)
QUALITY_FIELDS = ["rouge_l", "chrf", "bleu", "embedding", "perplexity"]
QUALITY_ORDER = [*QUALITY_FIELDS, "mean_words", "judge_score"]
PAIRWISE_FIELDS = [
    "candidate_wins",
    "baseline_wins",
    "ties",
    "inconsistent",
    "agreement",
    "first_position_rate",
    "parse_failures",
]
ONLY_CONTAMINATED = "only on contaminated questions"  # the verdict of a difference the clean questions do not show


def fmt(value: Any) -> str:
    """How every number is printed: integers as is, floats with 6 significant digits, None as '—'.

    report.json stores floats rounded to the same 6 significant digits, so every printed number equals
    the JSON value exactly.
    """
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return str(value)
        return f"{value:.{SIGNIFICANT}g}"
    return str(value)


def fmt_interval(entry: dict[str, Any] | None) -> str:
    """ "0.5 [0.3, 0.7]" for a {value, ci_low, ci_high} entry (or just the value)."""
    if not entry:
        return "—"
    text = fmt(entry.get("value"))
    if "ci_low" in entry:
        text += f" [{fmt(entry['ci_low'])}, {fmt(entry['ci_high'])}]"
    return text


# ---------------------------------------------------------------- building report.json


def build_report(
    cfg: ExperimentConfig, cells: list[StudyCell], *, dataset: Path, loop: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Every number of the study in one JSON-able dict (``loop``: study.loop's before/after, when it ran)."""
    contamination, clean = study_contamination(cfg, cells, dataset)
    samples, seed = cfg.eval.bootstrap_samples, cfg.seed
    variants = [_variant_entry(cfg, cell, clean) for cell in cells]
    report = {
        "name": cfg.name,
        "seed": cfg.seed,
        "dataset": str(dataset),
        "price_per_hour": cfg.study.price_per_hour,
        "contamination": contamination,
        "variants": variants,
        "baselines": _baselines(cells),
        "baselines_clean": _clean_baselines(clean, samples=samples, seed=seed),
        "comparisons": _comparisons(cells, clean, samples=samples, seed=seed),
        "weak_spots": weak_spots(cells),
        "loop": loop,
    }
    return round_floats(report)


# ---------------------------------------------------------------- contamination and the clean questions


def study_contamination(
    cfg: ExperimentConfig, cells: list[StudyCell], dataset: Path
) -> tuple[dict[str, Any], dict[str, tuple[list[Any], list[int]]]]:
    """The dataset's train split against the questions each benchmark was scored on and the test split.

    (report entry, benchmark → (its questions, the indices of the clean ones)); a benchmark that cannot be
    checked (no train split, its file gone) has no clean subset and is named in the entry's ``unchecked``.
    """
    from sectune.data.contamination import HELD_OUT, benchmark_item, check, held_out_item

    results = _first_results(cells)
    if not (dataset / "train.jsonl").is_file():
        why = f"no train.jsonl in {dataset}"
        return {"checked": False, "line": f"not checked ({why})", "unchecked": dict.fromkeys(results, why)}, {}
    sets: dict[str, dict[str, Any]] = {}
    items, questions, unchecked = [], {}, {}
    for bench, result in results.items():
        loaded = _scored_questions(result)
        if isinstance(loaded, str):
            unchecked[bench] = loaded
            continue
        questions[bench] = loaded
        sets[bench] = {"kind": "benchmark", "file": result["file"], "items": len(loaded)}
        items += [benchmark_item(bench, i, q.id, q.question, list(q.options.values())) for i, q in enumerate(loaded)]
    test = _rows(dataset / "test.jsonl")
    sets[HELD_OUT] = {"kind": "held_out", "file": str(dataset / "test.jsonl"), "items": len(test)}
    items += [held_out_item(i, f"test.jsonl line {i + 1}", row["messages"]) for i, row in enumerate(test)]
    train = ((f"train.jsonl line {i + 1}", row["messages"]) for i, row in enumerate(_rows(dataset / "train.jsonl")))
    found = check(sets, items, train, threshold=cfg.prep.near_dup_threshold, num_perm=cfg.prep.minhash_perm)
    line = found.line() + "".join(f"; {bench} not checked ({why})" for bench, why in unchecked.items())
    entry = {"checked": True, "line": line, "unchecked": unchecked, **found.summary(indices=True)}
    clean = {}
    for bench, loaded in questions.items():
        dirty = set(found.contaminated(bench))
        clean[bench] = (loaded, [i for i in range(len(loaded)) if i not in dirty])
    return entry, clean


def _first_results(cells: list[StudyCell]) -> dict[str, Any]:
    """Per benchmark, the first cell's MCQ result (every cell scored the same questions)."""
    found: dict[str, Any] = {}
    for cell in cells:
        for bench, result in (cell.eval.get("mcq") or {}).items():
            found.setdefault(bench, result)
    return found


def _scored_questions(result: dict[str, Any]) -> list[Any] | str:
    """The questions an MCQ result was scored on (eval takes the first ``questions`` of the file), or why not."""
    from sectune.errors import UserError
    from sectune.evaluate.mcq import load_benchmark

    if not result.get("file") or not result.get("questions"):
        return "the eval result names no benchmark file"
    try:
        questions = load_benchmark(result["file"], limit=result["questions"]).questions
    except UserError as err:  # the file moved since the evaluation: report without the check, say so
        return str(err)
    if len(questions) != result["questions"]:
        return f"{result['file']} has {len(questions)} questions, the evaluation scored {result['questions']}"
    return questions


def _rows(path: Path) -> list[dict[str, Any]]:
    from sectune.data.jsonl import read_jsonl

    return read_jsonl(path) if path.is_file() else []


def _clean_accuracy(correct: list[int], clean: list[int], *, samples: int, seed: int) -> dict[str, Any]:
    return mean_with_interval([correct[i] for i in clean], samples=samples, seed=seed)


def _clean_baselines(clean: dict[str, tuple[list[Any], list[int]]], *, samples: int, seed: int) -> dict[str, Any]:
    from sectune.evaluate.mcq import baselines

    found = {}
    for bench, (questions, indices) in clean.items():
        chosen = [questions[i] for i in indices]
        entries = baselines(chosen, samples=samples, seed=seed) if chosen else {}
        found[bench] = {name: _value_entry(entry) for name, entry in entries.items()}
    return found


def _verdict(diff: dict[str, Any], clean: dict[str, Any] | None, checked: bool) -> tuple[bool, str]:
    """(significant, verdict): a difference on all questions counts only when the clean questions show it
    too (same verdict); with no clean question at all it cannot be told from contamination."""
    if not diff["significant"] or not checked:
        return bool(diff["significant"]), str(diff["verdict"])
    if clean is None or clean["verdict"] != diff["verdict"]:
        return False, ONLY_CONTAMINATED
    return True, str(diff["verdict"])


def round_floats(value: Any) -> Any:
    """Every float in a nested structure rounded to SIGNIFICANT significant digits (as printed)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.{SIGNIFICANT}g}")
    if isinstance(value, dict):
        return {key: round_floats(item) for key, item in value.items()}
    if isinstance(value, list):
        return [round_floats(item) for item in value]
    return value


def _variant_entry(
    cfg: ExperimentConfig, cell: StudyCell, clean: dict[str, tuple[list[Any], list[int]]]
) -> dict[str, Any]:
    train = cell.train or {}
    runtime = train.get("train_runtime_s")
    training = {field: train.get(field) for field in TRAIN_FIELDS} if cell.train else None
    if training is not None:
        training["peak_memory_kind"] = train.get("peak_memory_kind")
        training["estimated_cost_usd"] = runtime / 3600 * cfg.study.price_per_hour if runtime is not None else None
    generation = cell.eval.get("generation") or {}
    quality = {name: _value_entry(generation.get(name)) for name in QUALITY_FIELDS if name in generation}
    if "length" in generation:
        quality["mean_words"] = {"value": generation["length"].get("mean_words")}
    absolute = cell.eval.get("judge_absolute")
    if absolute:
        quality["judge_score"] = {"value": absolute.get("mean_score")}
    mcq = {
        bench: {method: data["accuracy"] for method, data in result["methods"].items()}
        for bench, result in (cell.eval.get("mcq") or {}).items()
    }
    samples, seed = cfg.eval.bootstrap_samples, cfg.seed
    mcq_clean = {
        bench: {
            method: _clean_accuracy(data["correct"], clean[bench][1], samples=samples, seed=seed)
            for method, data in result["methods"].items()
        }
        for bench, result in (cell.eval.get("mcq") or {}).items()
        if bench in clean
    }
    pick_rates = {
        bench: {method: data["pick_rate"] for method, data in result["methods"].items()}
        for bench, result in (cell.eval.get("mcq") or {}).items()
    }
    return {
        "label": cell.label or f"{cell.model}/{cell.variant}",
        "model": cell.model,
        "variant": cell.variant,
        "training": training,
        "quality": quality,
        "mcq": mcq,
        "mcq_clean": mcq_clean,
        "pick_rates": pick_rates,
        "log_history": train.get("log_history") or [],
        "judge_pairwise": _pairwise_entry(cell.judge_pairwise),
    }


def _pairwise_entry(result: dict[str, Any] | None) -> dict[str, Any] | None:
    if not result:
        return None
    return {key: value for key, value in result.items() if key != "outcomes"}


def _value_entry(entry: Any) -> dict[str, Any] | None:
    if not isinstance(entry, dict):
        return None
    return {key: entry[key] for key in ("value", "ci_low", "ci_high") if key in entry}


def _baselines(cells: list[StudyCell]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for cell in cells:
        for bench, result in (cell.eval.get("mcq") or {}).items():
            found.setdefault(bench, {k: _value_entry(v) for k, v in result["baselines"].items()})
    return found


def _comparisons(
    cells: list[StudyCell], clean: dict[str, tuple[list[Any], list[int]]], *, samples: int, seed: int
) -> list[dict[str, Any]]:
    """Each trained variant against the same model's base, per benchmark and method, on the same questions;
    and again on the clean questions, which decide whether a difference is called real."""
    bases = {c.model: c for c in cells if c.variant == "base"}
    rows = []
    for cell in cells:
        base = bases.get(cell.model)
        if cell.variant == "base" or base is None:
            continue
        for bench, result in (cell.eval.get("mcq") or {}).items():
            base_result = (base.eval.get("mcq") or {}).get(bench)
            if not base_result:
                continue
            for method, data in result["methods"].items():
                if method not in base_result["methods"]:
                    continue
                ours, theirs = data["correct"], base_result["methods"][method]["correct"]
                diff = paired_difference(ours, theirs, samples=samples, seed=seed)
                indices = clean[bench][1] if bench in clean else []
                on_clean = None
                if indices:
                    picked = [ours[i] for i in indices], [theirs[i] for i in indices]
                    on_clean = paired_difference(*picked, samples=samples, seed=seed)
                diff["significant"], diff["verdict"] = _verdict(diff, on_clean, bench in clean)
                rows.append(
                    {
                        "model": cell.model,
                        "variant": cell.variant,
                        "label": cell.label or f"{cell.model}/{cell.variant}",
                        "against": "base",
                        "benchmark": bench,
                        "method": method,
                        **diff,
                        "clean": on_clean,
                    }
                )
    return rows


# ---------------------------------------------------------------- rendering (from report.json only)


def render_markdown(report: dict[str, Any]) -> str:
    """The Markdown report, rendered from the report dict (as read back from report.json)."""
    lines = [
        f"# Study report: {report['name']}",
        "",
        f"Dataset: `{report['dataset']}` · seed {report['seed']} · price {fmt(report['price_per_hour'])} USD/h",
        "",
        contamination_line(report),
        "",
    ]
    for title, header, rows in _tables(report):
        lines += [f"## {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    if any((v["training"] or {}).get("peak_memory_kind") == "peak_rss_sampled" for v in report["variants"]):
        lines += [PEAK_RSS_NOTE, ""]
    lines += ["## Plots", "", "![loss curves](loss_curves.png)", "", "![quality vs memory](quality_vs_memory.png)", ""]
    if _has_weak_spots(report):
        lines += [f"![where it is weak]({WEAK_SPOTS_PLOT})", ""]
    return "\n".join(lines)


def _has_weak_spots(report: dict[str, Any]) -> bool:
    found = report.get("weak_spots") or {}
    return bool(found.get("held_out") or found.get("mcq"))


def render_html(report: dict[str, Any]) -> str:
    """The same tables as HTML (escaped), plus the plots."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report['name'])}</title>",
        "<style>table{border-collapse:collapse}td,th{border:1px solid #999;padding:4px 8px}</style></head><body>",
        f"<h1>Study report: {html.escape(report['name'])}</h1>",
        f"<p>Dataset: {html.escape(report['dataset'])} · seed {report['seed']}</p>",
        f"<p>{html.escape(contamination_line(report))}</p>",
    ]
    for title, header, rows in _tables(report):
        parts.append(f"<h2>{html.escape(title)}</h2><table><tr>")
        parts += [f"<th>{html.escape(h)}</th>" for h in header]
        parts.append("</tr>")
        for row in rows:
            parts.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>")
        parts.append("</table>")
    parts.append("<h2>Plots</h2><img src='loss_curves.png' alt='loss curves'>")
    parts.append("<img src='quality_vs_memory.png' alt='quality vs memory'>")
    if _has_weak_spots(report):
        parts.append(f"<img src='{WEAK_SPOTS_PLOT}' alt='where it is weak'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def contamination_line(report: dict[str, Any]) -> str:
    """The report's contamination line: what the check found, and what the clean columns mean."""
    entry = report.get("contamination") or {"line": "not checked"}
    text = f"Contamination (training rows vs each set, 13-gram overlap or MinHash near duplicate): {entry['line']}."
    if entry.get("checked"):
        text += (
            " MCQ accuracy on clean questions leaves the contaminated ones out; a difference shown only on"
            f' contaminated questions is not called real: its verdict reads "{ONLY_CONTAMINATED}".'
        )
    return text


def _tables(report: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    tables = []
    train_header = [
        "variant",
        "train time (s)",
        "tokens/s",
        "peak memory (MB)",
        "trainable params",
        "total params",
        "final train loss",
        "eval loss",
        "est. cost (USD)",
    ]
    train_rows = []
    for v in report["variants"]:
        t = v["training"] or {}
        values = [t.get(f) for f in TRAIN_FIELDS] + [t.get("estimated_cost_usd")]
        train_rows.append([v["label"], *[fmt(x) for x in values]])
    tables.append(("Training", train_header, train_rows))
    quality_names = sorted(
        {name for v in report["variants"] for name in v["quality"]},
        key=QUALITY_ORDER.index,
    )
    if quality_names:
        rows = [[v["label"], *[fmt_interval(v["quality"].get(n)) for n in quality_names]] for v in report["variants"]]
        tables.append(("Held-out generation quality (95 % bootstrap intervals)", ["variant", *quality_names], rows))
    for bench, baselines in report["baselines"].items():
        methods = sorted({m for v in report["variants"] for m in v["mcq"].get(bench, {})})
        rows = [
            [v["label"], *[fmt_interval(v["mcq"].get(bench, {}).get(m)) for m in methods]] for v in report["variants"]
        ]
        rows += [[f"baseline: {name}", *[fmt_interval(entry)] * len(methods)] for name, entry in baselines.items()]
        tables.append((f"MCQ accuracy: {bench}", ["variant", *methods], rows))
        if bench in report.get("baselines_clean", {}):
            tables.append(_clean_table(report, bench, methods))
        letters = sorted({k for v in report["variants"] for m in v["pick_rates"].get(bench, {}).values() for k in m})
        picks = [
            [v["label"], method, *[fmt(rates.get(letter)) for letter in letters]]
            for v in report["variants"]
            for method, rates in v["pick_rates"].get(bench, {}).items()
        ]
        tables.append((f"Letter pick rates: {bench}", ["variant", "method", *letters], picks))
    judged = [v for v in report["variants"] if v.get("judge_pairwise")]
    if judged:
        rows = [[v["label"], *[fmt(v["judge_pairwise"].get(k)) for k in PAIRWISE_FIELDS]] for v in judged]
        tables.append(("LLM judge: each variant vs its base model (both orders)", ["variant", *PAIRWISE_FIELDS], rows))
    if report["comparisons"]:
        header = ["benchmark", "method", "variant", "vs", "difference [95 % CI]", "McNemar p", "verdict"]
        header.append("on clean questions [95 % CI]")
        rows = [
            [
                c["benchmark"],
                c["method"],
                c["label"],
                c["against"],
                fmt_interval({"value": c["difference"], "ci_low": c["ci_low"], "ci_high": c["ci_high"]}),
                fmt(c["mcnemar_p"]),
                c["verdict"],
                _clean_difference(c, report),
            ]
            for c in report["comparisons"]
        ]
        tables.append(("Paired differences on the same questions", header, rows))
    tables += weak_spot_tables(report, fmt_interval)
    tables += loop_tables(report, fmt, fmt_interval)
    return tables


def _clean_table(report: dict[str, Any], bench: str, methods: list[str]) -> tuple[str, list[str], list[list[str]]]:
    """The MCQ accuracy table again, on the questions no training row contains."""
    variants = report["variants"]
    rows = [[v["label"], *[fmt_interval(v["mcq_clean"].get(bench, {}).get(m)) for m in methods]] for v in variants]
    baselines = report["baselines_clean"][bench]
    rows += [[f"baseline: {name}", *[fmt_interval(entry)] * len(methods)] for name, entry in baselines.items()]
    return f"MCQ accuracy on clean questions: {bench}", ["variant", *methods], rows


def _clean_difference(comparison: dict[str, Any], report: dict[str, Any]) -> str:
    clean = comparison.get("clean")
    if clean:
        return fmt_interval({"value": clean["difference"], "ci_low": clean["ci_low"], "ci_high": clean["ci_high"]})
    return "no clean question" if comparison["benchmark"] in report.get("baselines_clean", {}) else "not checked"


def plot_loss_curves(report: dict[str, Any], path: Path) -> None:
    """Training (and eval) loss against step for every trained variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    plotted = False
    for v in report["variants"]:
        for key, style in (("loss", "-"), ("eval_loss", "--")):
            points = [(h["step"], h[key]) for h in v["log_history"] if key in h and "step" in h]
            if points:
                ax.plot(*zip(*points, strict=True), style, marker=".", label=f"{v['label']} {key}")
                plotted = True
    if not plotted:
        ax.text(0.5, 0.5, "no trained variant logged a loss", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("Loss curves")
    if plotted:
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def primary_quality(variant: dict[str, Any]) -> tuple[str, float | None]:
    """The number the quality-vs-memory plot uses: the first MCQ accuracy, else ROUGE-L."""
    for bench, methods in variant["mcq"].items():
        for method, entry in methods.items():
            return f"{bench} {method} accuracy", entry.get("value")
    entry = variant["quality"].get("rouge_l")
    return "ROUGE-L", entry.get("value") if entry else None


def plot_quality_vs_memory(report: dict[str, Any], path: Path) -> None:
    """Primary quality against training peak memory, one point per trained variant."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    label = "quality"
    for v in report["variants"]:
        label, quality = primary_quality(v)
        memory = (v["training"] or {}).get("peak_memory_mb")
        if quality is not None and memory is not None:
            ax.scatter([memory], [quality])
            ax.annotate(v["label"], (memory, quality), fontsize=7)
    ax.set_xlabel("training peak memory (MB)")
    ax.set_ylabel(label)
    ax.set_title("Quality vs memory")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(report: dict[str, Any], out: Path, *, overwrite: bool = True) -> Path:
    """Write report.json first, then render Markdown/HTML from the JSON read back, then the plots."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "report.json", report)
        stored = read_json(tmp / "report.json")
        (tmp / "report.md").write_text(render_markdown(stored), encoding="utf-8")
        (tmp / "report.html").write_text(render_html(stored), encoding="utf-8")
        plot_loss_curves(stored, tmp / "loss_curves.png")
        plot_quality_vs_memory(stored, tmp / "quality_vs_memory.png")
        plot_weak_spots(stored, tmp / WEAK_SPOTS_PLOT)
    return out
