"""The prep stage's Python API: ``prepare`` (file → dataset folder) and ``inspect_dataset``."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.errors import UserError
from sectune.progress import track

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig
    from sectune.data.inspect import InspectReport

log = logging.getLogger(__name__)

SPLIT_FILES = ("train", "validation", "test")
MOSTLY_DUPLICATES = 0.5  # warn when dedup removes more than this fraction of the rows
# What a progress line says while each step of prep runs.
PREP_STEPS = (
    "reading {name}",
    "validating {rows} rows",
    "dedup and leakage-free split of {rows} rows",
    "rendering and measuring token lengths",
    "contamination check of {rows} train rows",
    "training-data checks on {rows} train rows",
    "writing the dataset folder",
)


def prepare(
    cfg: ExperimentConfig,
    input: str | Path,
    out: str | Path,
    *,
    tokenizer: str | Path | Any = None,
    overwrite: bool = False,
) -> Path:
    """Import, validate, clean, split and render ``input`` for ``cfg.model``; write the dataset folder ``out``.

    ``out`` gets train/validation/test.jsonl (canonical rows), prompt_completion/<split>.jsonl (rendered
    text), chat_template.jinja, config.yaml, summary.json and versions.json, all or nothing.
    ``tokenizer`` (a folder or a tokenizer object) replaces the model's own, e.g. offline.
    """
    from sectune.data.contamination import CONTAMINATION_FILE
    from sectune.data.io import read_input
    from sectune.data.render import load_prep_tokenizer
    from sectune.data.rows import to_canonical
    from sectune.data.split import normalise_rows, split_rows
    from sectune.data.validate import validate_rows
    from sectune.runs import atomic_output_dir, fingerprint_files, user_path, write_json, write_run_metadata

    started = time.perf_counter()
    prep = cfg.prep
    model = prep.model or cfg.model
    path = Path(input)
    # the folder is built as a hidden sibling from the start: a kill at any point leaves no partial ``out``
    with (
        track("prep", len(PREP_STEPS), unit="steps", show_rate=False) as progress,
        atomic_output_dir(out, overwrite=overwrite) as folder,
    ):
        progress.update(0, note=PREP_STEPS[0].format(name=path.name))
        with user_path(path, action="read"):
            raw = read_input(path, prep)
        rows = to_canonical(raw, prep)
        normalise_rows(rows)
        progress.update(1, note=PREP_STEPS[1].format(rows=len(rows)))
        rows, validation = validate_rows(rows, prep, path)
        progress.update(2, note=PREP_STEPS[2].format(rows=len(rows)))
        splits, split_report = split_rows(rows, prep, cfg.seed, path)
        progress.update(3, note=PREP_STEPS[3])
        tok = load_prep_tokenizer(model, tokenizer)
        rendered, length_report = _apply_length_policy(tok, splits, prep, path)
        progress.update(4, note=PREP_STEPS[4].format(rows=len(rendered["train"])))
        contamination = _decontaminate(cfg, rendered, path)
        progress.update(5, note=PREP_STEPS[5].format(rows=len(rendered["train"])))
        checks = _train_split_checks(tok, rendered["train"], prep, model)
        counts = {name: len(rows) for name, rows in rendered.items()}
        summary = {
            "input": str(path),
            "input_fingerprint": fingerprint_files([path]),
            "input_sheet": raw.sheet,
            "input_header_row": raw.header_row,
            "input_delimiter": raw.delimiter,
            "model": str(model),
            "counts": counts,
            "validation": vars(validation),
            "dedup": split_report,
            "tokens": length_report,
            "checks": checks,
            "contamination": contamination and contamination["summary"],
            "seconds": round(time.perf_counter() - started, 2),
        }
        progress.update(6, note=PREP_STEPS[6])
        _write_splits(folder, rendered, tok, prep.export_prompt_completion)
        (folder / "chat_template.jinja").write_text(tok.chat_template, encoding="utf-8")
        if contamination:
            write_json(folder / CONTAMINATION_FILE, contamination["details"])
        write_run_metadata(folder, cfg, summary)
        progress.update(7, note="")
    warning = small_dataset_warning(path, prep, split_report, counts)
    if warning:
        log.warning(warning)
    message = contamination_message(path, contamination)
    if message:
        log.log(*message)
    return Path(out)


def small_dataset_warning(path: Path, prep: Any, dedup: dict[str, Any], counts: dict[str, int]) -> str | None:
    """One line when the dataset came out too small to measure: an empty validation or test split that was
    asked for, or most rows removed as duplicates; None when all is well."""
    problems, fixes = [], []
    total = sum(counts.values())
    for name in ("validation", "test"):
        size = getattr(prep, f"{name}_size")
        if size > 0 and counts[name] == 0:
            problems.append(f"0 {name} rows (prep.{name}_size={size:g} of {total} rows)")
            fixes.append(f"raise prep.{name}_size")
    before = dedup["rows_before_dedup"]
    removed = dedup["exact_duplicates_removed"] + dedup["near_duplicates_removed"]
    if before and removed / before > MOSTLY_DUPLICATES:
        problems.append(
            f"{removed} of {before} rows ({removed / before:.0%}) removed as duplicates "
            f"({dedup['exact_duplicates_removed']} exact, {dedup['near_duplicates_removed']} near at "
            f"prep.near_dup_threshold={prep.near_dup_threshold:g})"
        )
        fixes.append("check the input for repeated rows")
    if not problems:
        return None
    split = ", ".join(f"{name} {counts[name]}" for name in SPLIT_FILES)
    return f"{path}: small dataset: {'; '.join(problems)}; wrote {split} rows (fix: add rows, {' or '.join(fixes)})"


def _decontaminate(cfg: ExperimentConfig, splits: dict[str, list], path: Path) -> dict[str, Any] | None:
    """The contamination check (``prep.decontaminate``): every train row against the benchmarks of
    ``eval.benchmarks`` and the test split; ``drop`` removes the contaminating train rows from ``splits``.

    {"summary": counts for summary.json, "details": contamination.json}; None when the check is off.
    Runs after the length policy, so it sees exactly the rows that are written.
    """
    from sectune.data.contamination import HELD_OUT, check, held_out_item, read_benchmark

    mode = cfg.prep.decontaminate
    if mode == "off":
        return None
    sets, items = {}, []
    for ref in cfg.eval.benchmarks:  # whole benchmarks: eval.max_questions may change after prep
        name, file, questions = read_benchmark(ref)
        sets[name] = {"kind": "benchmark", "file": str(file), "items": len(questions)}
        items += questions
    test = splits["test"]
    sets[HELD_OUT] = {"kind": "held_out", "file": None, "items": len(test)}
    items += [held_out_item(i, row.where, row.messages) for i, row in enumerate(test)]
    train = splits["train"]
    result = check(
        sets,
        items,
        ((row.where, row.messages) for row in train),
        threshold=cfg.prep.near_dup_threshold,
        num_perm=cfg.prep.minhash_perm,
    )
    dropped = set(result.contaminating_rows()) if mode == "drop" else set()
    if dropped and len(dropped) == len(train):
        raise UserError(
            f"every one of the {len(train)} train rows contains benchmark or test text ({result.line()})",
            file=path,
            field="prep.decontaminate",
            fix="check the input against eval.benchmarks, or set prep.decontaminate=report to keep the rows",
        )
    splits["train"] = [row for i, row in enumerate(train) if i not in dropped]
    extra = {"mode": mode, "dropped_train_rows": len(dropped), "line": result.line()}
    return {"summary": {**result.summary(), **extra}, "details": {**result.details(), **extra}}


def contamination_message(path: Path, contamination: dict[str, Any] | None) -> tuple[int, str] | None:
    """(log level, one line) when some train row contains benchmark or test text; None when none does.

    A contaminated benchmark is a warning (its accuracies would be inflated); overlap with the test split
    only is logged at info level: short Q&A sets often repeat a 13-word answer sentence across questions,
    and summary.json and contamination.json hold it either way.
    """
    from sectune.data.contamination import CONTAMINATION_FILE

    if not contamination or not contamination["summary"]["contaminating_train_rows"]:
        return None
    summary = contamination["summary"]
    if summary["mode"] == "drop":
        done = f"dropped the {summary['dropped_train_rows']} rows"
    else:
        done = "kept them (prep.decontaminate=drop removes them)"
    line = f"{path}: contamination: {summary['line']}; {done}; the rows are listed in {CONTAMINATION_FILE}"
    benchmarks = [s for s in summary["sets"].values() if s["kind"] == "benchmark" and s["contaminated"]]
    return (logging.WARNING if benchmarks else logging.INFO), line


def _apply_length_policy(tok: Any, splits: dict, prep: Any, path: Path) -> tuple[dict[str, list], dict[str, Any]]:
    from sectune.data.render import fit_to_length, length_stats, tokenize_many

    kept: dict[str, list] = {}
    lengths: dict[str, list[int]] = {}
    actions: dict[str, int] = {}
    for name, rows in splits.items():
        kept[name], lengths[name] = [], []
        measured = [len(t.input_ids) for t in tokenize_many(tok, [row.messages for row in rows])]
        for row, measured_length in zip(rows, measured, strict=True):
            messages, length, action = fit_to_length(
                tok, row.messages, prep.max_length, prep.length_policy, row.where, path, measured_length
            )
            actions[action] = actions.get(action, 0) + 1
            if messages is not None:
                row.messages = messages
                kept[name].append(row)
                lengths[name].append(length)
    if not kept["train"]:
        raise UserError(
            "no training rows fit prep.max_length", file=path, field="prep.max_length", fix="raise prep.max_length"
        )
    everything = [n for values in lengths.values() for n in values]
    report = {
        "max_length": prep.max_length,
        "length_policy": prep.length_policy,
        "rows_over_max_length_before_policy": actions.get("dropped", 0)
        + actions.get("prompt_truncated", 0)
        + actions.get("dropped_answer_too_long", 0),
        "dropped_over_length": actions.get("dropped", 0),
        "prompt_truncated": actions.get("prompt_truncated", 0),
        "dropped_answer_too_long": actions.get("dropped_answer_too_long", 0),
        "all": length_stats(everything, prep.max_length),
        **{name: length_stats(values, prep.max_length) for name, values in lengths.items()},
    }
    for name in ("validation", "test"):
        report[name].pop("histogram", None)
    return kept, report


def _train_split_checks(tok: Any, rows: list, prep: Any, model: str | Path) -> dict[str, Any]:
    """The training-data checks on the train split (as `sectune inspect` runs them), for the summary."""
    from sectune.data.checks import run_checks
    from sectune.registry.models import REGISTRY

    spec = REGISTRY.get(str(model))
    result = run_checks(
        tok,
        [row.as_row() for row in rows],
        max_length=prep.max_length,
        length_policy=prep.length_policy,
        family=spec.family if spec else None,
    ).to_dict()
    for name in ("masks", "end_of_turn", "bos"):  # row lists can be long: keep counts in the summary
        for key, value in list(result[name].items()):
            if isinstance(value, list):
                result[name][key] = len(value)
    result["lengths"].pop("stats", None)  # already under "tokens"
    return result


def _write_splits(folder: Path, splits: dict[str, list], tok: Any, export_prompt_completion: bool) -> None:
    from sectune.data.jsonl import write_jsonl
    from sectune.data.render import prompt_completion

    if export_prompt_completion:
        (folder / "prompt_completion").mkdir()
    for name in SPLIT_FILES:
        rows = splits[name]
        # default=str: dates in meta (from a spreadsheet) become text
        write_jsonl(folder / f"{name}.jsonl", [row.as_row() for row in rows], default=str)
        if export_prompt_completion:
            write_jsonl(
                folder / "prompt_completion" / f"{name}.jsonl",
                [{**prompt_completion(tok, row.messages), "meta": row.meta} for row in rows],
                default=str,
            )


def inspect_dataset(
    cfg: ExperimentConfig,
    dataset: str | Path,
    *,
    tokenizer: str | Path | Any = None,
    split: str = "train",
    rows_shown: int = 3,
) -> InspectReport:
    """Render and check a dataset folder (one split) or a single JSONL for ``cfg.model``."""
    from sectune.data.inspect import build_report

    return build_report(cfg, Path(dataset), tokenizer=tokenizer, split=split, rows_shown=rows_shown)
