"""``sectune inspect``: what the model will be trained on, token by token, and the dataset checks.

Accepts a dataset folder (reads one split) or a single JSONL file (any supported row format).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sectune.data.checks import DatasetChecks, run_checks
from sectune.data.jsonl import read_jsonl
from sectune.data.render import TokenizedRow, load_prep_tokenizer, tokenize_for_training
from sectune.errors import UserError

if TYPE_CHECKING:
    from sectune.config import ExperimentConfig

TRAINED_OPEN, TRAINED_CLOSE = "[[", "]]"  # plain markers around trained text (--no-color)


@dataclass
class InspectReport:
    source: str
    model: str
    rows: list[dict[str, Any]]
    shown: list[TokenizedRow]
    checks: DatasetChecks
    pieces: list[list[tuple[str, bool]]]  # per shown row: (text, trained) runs

    @property
    def ok(self) -> bool:
        return self.checks.ok

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "model": self.model, "rows": len(self.rows), "checks": self.checks.to_dict()}


def load_rows(dataset: Path, split: str, cfg: ExperimentConfig) -> tuple[list[dict[str, Any]], str]:
    """Canonical rows of a dataset folder's split, or of any single input file sectune imports."""
    if dataset.is_dir() and (dataset / f"{split}.jsonl").is_file():
        file = dataset / f"{split}.jsonl"
        rows = read_jsonl(file)
        return rows, str(file)
    if dataset.is_dir() and (dataset / "train.jsonl").is_file():
        raise UserError(f"split '{split}' not found", file=dataset, fix="use --split train, validation or test")
    from sectune.data.io import read_input
    from sectune.data.rows import to_canonical
    from sectune.data.split import normalise_rows
    from sectune.data.validate import validate_rows

    raw = read_input(dataset, cfg.prep)
    sourced = to_canonical(raw, cfg.prep)
    normalise_rows(sourced)
    sourced, _ = validate_rows(sourced, cfg.prep, dataset)
    return [row.as_row() for row in sourced], str(dataset)


def build_report(
    cfg: ExperimentConfig, dataset: Path, *, tokenizer: Any = None, split: str = "train", rows_shown: int = 3
) -> InspectReport:
    model = cfg.prep.model or cfg.model
    rows, source = load_rows(dataset, split, cfg)
    if not rows:
        raise UserError("no rows to inspect", file=source, fix="pass a non-empty dataset")
    tok = load_prep_tokenizer(model, tokenizer)
    from sectune.registry.models import REGISTRY

    spec = REGISTRY.get(str(model))
    checks = run_checks(
        tok,
        rows,
        max_length=cfg.prep.max_length,
        length_policy=cfg.prep.length_policy,
        family=spec.family if spec else None,
    )
    shown = (
        [tokenize_for_training(tok, row["messages"]) for row in rows[:rows_shown]]
        if checks.template.has_generation_markers
        else []
    )
    pieces = [_runs(tok, row) for row in shown]
    return InspectReport(source, str(model), rows, shown, checks, pieces)


def _runs(tokenizer: Any, row: TokenizedRow) -> list[tuple[str, bool]]:
    """Contiguous trained / masked runs, each decoded as a whole (keeps multi-byte characters intact)."""
    runs: list[tuple[str, bool]] = []
    start = 0
    for index in range(1, len(row.input_ids) + 1):
        if index == len(row.input_ids) or row.assistant_mask[index] != row.assistant_mask[start]:
            text = tokenizer.decode(row.input_ids[start:index], skip_special_tokens=False)
            runs.append((text, bool(row.assistant_mask[start])))
            start = index
    return runs


def print_report(report: InspectReport, *, color: bool = True, console: Any = None) -> None:
    """Print the rendered rows (trained text in green, or between [[ ]] without colour) and the checks."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console(no_color=not color, highlight=False, soft_wrap=True)
    color = color and console.is_terminal  # piped output gets the plain markers, never invisible colours
    console.print(f"dataset: {report.source} ({len(report.rows)} rows)   model: {report.model}")
    legend = (
        "trained tokens in green, masked tokens dim"
        if color
        else f"trained text between {TRAINED_OPEN} {TRAINED_CLOSE}"
    )
    for index, runs in enumerate(report.pieces):
        console.print(
            f"\n── row {index} ({len(report.shown[index].input_ids)} tokens, "
            f"{report.shown[index].trained_tokens} trained) ── {legend}"
        )
        text = Text()
        for piece, trained in runs:
            if color:
                text.append(piece, style="bold green" if trained else "dim")
            else:
                text.append(f"{TRAINED_OPEN}{piece}{TRAINED_CLOSE}" if trained else piece)
        console.print(text)
    for line in summary_lines(report.checks):
        console.print(line, markup=False)


def summary_lines(checks: DatasetChecks) -> list[str]:
    """The whole-dataset figures as plain lines."""
    t, m, e, b, n = checks.template, checks.masks, checks.end_of_turn, checks.bos, checks.lengths

    def mark(ok: bool) -> str:
        return "ok  " if ok else "FAIL"

    lines = ["", "── checks ──"]
    lines.append(
        f"{mark(t.ok)} template: generation markers {'yes' if t.has_generation_markers else 'NO'}, "
        f"end-of-turn {t.end_of_turn_token} trained in probe: {'yes' if t.end_of_turn_trained else 'NO'}, "
        f"prompt renders as prefix: {'yes' if t.prompt_is_prefix else 'NO'}"
    )
    lines.append(
        f"{mark(m.ok)} trainable tokens per row: min {m.trained_fraction_min:.1%}, "
        f"median {m.trained_fraction_median:.1%}, max {m.trained_fraction_max:.1%}; "
        f"rows with 0% trained: {len(m.rows_zero_trained)}, with 100% trained: {len(m.rows_all_trained)}"
    )
    lines.append(
        f"{mark(e.ok)} end-of-turn {e.end_of_turn_token} trained in {e.turns_ending_trained}/{e.assistant_turns} "
        "assistant turns (padding must be masked by position, never by token id)"
    )
    if b.template_adds_bos:
        bos = f"exactly one {b.bos_token} at the start: {'yes' if not b.rows_with_wrong_bos else 'NO'}"
    else:
        bos = f"the template writes no BOS (tokenizer bos {b.bos_token}): none expected"
    if b.text_encoding_adds_bos:
        bos += (
            "; note: the tokenizer adds BOS when encoding text, so the rendered text must be encoded with "
            "add_special_tokens=False (prep's prompt/completion export leaves that BOS out)"
        )
    lines.append(f"{mark(b.ok)} {bos}")
    stats = n.stats
    lines.append(
        f"{mark(n.ok)} tokens per row: min {stats.get('min')}, median {stats.get('median')}, "
        f"max {stats.get('max')}; over max_length {n.max_length}: {stats.get('over_max_length')} "
        f"(policy: {n.policy})"
    )
    histogram = stats.get("histogram", {})
    peak = max([*histogram.get("bins", {}).values(), 1])
    for label, count in [
        *histogram.get("bins", {}).items(),
        (f">{n.max_length}", histogram.get(f">{n.max_length}", 0)),
    ]:
        lines.append(f"     {label:>11} | {'#' * round(30 * count / peak):<30} {count}")
    for problem in checks.problems:
        lines.append(f"problem: {problem}")
    lines.append("result: " + ("all checks passed" if checks.ok else f"{len(checks.problems)} problem(s)"))
    return lines
