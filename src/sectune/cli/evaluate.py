"""CLI commands of the evaluate stage: ``sectune eval`` and ``sectune study``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import ConfigOption, OutOption, Sets, set_option

OverwriteOption = Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("eval")(eval_command)
    app.command("study")(study_command)


def eval_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="One or more: registry key, HF model folder, train run folder (a hosted run whose weights stay "
            "with the provider is asked at its endpoint), PEFT adapter folder, or an http(s):// OpenAI-compatible "
            "endpoint (with --set eval.endpoint_model=NAME). The first is the baseline of pairwise judging; every "
            "adapter is checked to change the logits.",
            show_default=False,
            metavar="TARGET",
        ),
    ],
    out: OutOption,
    dataset: Annotated[
        Path | None,
        typer.Option(
            "--dataset", "-d", help="Dataset folder (its test.jsonl) or JSONL for held-out metrics.", metavar="PATH"
        ),
    ] = None,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("eval.max_examples=200")] = None,
    overwrite: OverwriteOption = False,
) -> None:
    """Held-out generation metrics, MCQ benchmarks (with baselines) and optional LLM judging."""
    from sectune.cli.common import console, load
    from sectune.evaluate.api import evaluate
    from sectune.runs import read_json

    folder = evaluate(load(config, sets), targets, out, dataset=dataset, overwrite=overwrite)
    summary = read_json(folder / "summary.json")
    show = console()
    for label, result in summary["targets"].items():
        show.print(f"[bold]{label}[/bold]: {_one_line(result)}", highlight=False)
    show.print(f"wrote {folder}", highlight=False)


def _one_line(result: dict) -> str:
    from sectune.study.report import fmt, fmt_interval

    parts = []
    generation = result.get("generation") or {}
    for name in ("rouge_l", "chrf", "bleu", "embedding", "perplexity"):
        if name in generation:
            parts.append(f"{name} {fmt_interval(generation[name])}")
    for bench, scored in (result.get("mcq") or {}).items():
        for method, data in scored["methods"].items():
            parts.append(f"{bench}/{method} acc {fmt_interval(data['accuracy'])}")
        parts.append(f"{bench} longest-option baseline {fmt(scored['baselines']['longest_option']['value'])}")
    by_topic = (generation.get("breakdown") or {}).get("topic")
    if by_topic:  # worst first: the weak spot `sectune generate --focus` would write more samples for
        metric, groups = next(iter(by_topic.items()))
        parts.append(f"weakest topic {groups[0]['group']} ({metric} {fmt(groups[0]['value'])}, n {groups[0]['n']})")
    return "; ".join(parts) or "no measurement configured"


def study_command(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder written by `sectune prep`.", show_default=False, metavar="DATASET")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            help="Study folder, filled cell by cell (finished cells are reused); OUT/report/ is written last.",
            metavar="DIR",
        ),
    ],
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("study.variants=[base,lora]")] = None,
) -> None:
    """Train (or reuse) and evaluate models × {base, lora, qlora, full}; write OUT/report (md, html, png, json)."""
    from sectune.cli.common import console, load
    from sectune.study.api import REPORT_DIR, study

    report = study(load(config, sets), dataset, out) / REPORT_DIR
    console().print(f"wrote {report}/report.md, report.html, report.json and plots", highlight=False)
