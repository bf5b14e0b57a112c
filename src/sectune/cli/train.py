"""CLI commands of the train stage: `sectune train` and `sectune plan`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from sectune.cli.common import ConfigOption, OutOption, ResumeOption, Sets, console, load, set_option

# train.method's values, restated so that `sectune --help` does not import the config models (pydantic: ~0.3 s);
# tests/test_cli.py checks it equals sectune.config.train.Method.
Method = Literal["full", "lora", "qlora", "qlora-8bit"]


def register(app: typer.Typer) -> None:
    """Add this stage's commands to the app."""
    app.command("train")(train_command)
    app.command("plan")(plan_command)


def train_command(
    dataset: Annotated[
        Path, typer.Argument(help="Dataset folder written by `sectune prep` (train.jsonl, ...).", metavar="DATASET")
    ],
    out: OutOption,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("train.lora.r=32")] = None,
    resume: ResumeOption = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run (and its partial).")] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Hosted backends: show what would be uploaded and sent, and the cost; send and write nothing.",
        ),
    ] = False,
    cancel_on_interrupt: Annotated[
        bool,
        typer.Option(
            "--cancel-on-interrupt",
            help="Hosted backends: on Ctrl-C cancel the remote job without asking (for scripts).",
        ),
    ] = False,
) -> None:
    """Fine-tune a model (full, lora, qlora, qlora-8bit) on a dataset folder, here or on a hosted service.

    Writes OUT/adapter/ (or OUT/model/), chat_template.jinja, summary.json, config.yaml, versions.json.
    While training, everything lives in OUT.partial/ (checkpoints every train.save_steps);
    --resume continues it from its newest checkpoint. With train.backend=predibase|openai|together the job
    runs at that service (key from PREDIBASE_API_TOKEN, OPENAI_API_KEY or TOGETHER_API_KEY): its id is kept
    in OUT.partial/ at once, so --resume re-attaches to the same job.
    """
    import logging

    from sectune.train.api import train

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    cfg = load(config, sets)
    if dry_run:
        from sectune.train.api import dry_run as hosted_dry_run

        print(hosted_dry_run(cfg, dataset).text())
        return
    run = train(cfg, dataset, out, resume=resume, overwrite=overwrite, cancel_on_interrupt=cancel_on_interrupt)
    from sectune.train.distributed import rank

    if rank() == 0:  # rank 0 writes and publishes the run folder; the other ranks have nothing to report
        _print_summary(run)


def _print_summary(run: Path) -> None:
    from sectune.runs import read_json

    summary = read_json(run / "summary.json")
    if "backend" in summary:
        _print_hosted_summary(run, summary)
        return
    stop = summary.get("stop_check", {})
    rate = f"{stop['stop_rate']:.0%}" if "stop_rate" in stop else stop.get("status", "-")
    losses = f"final loss {_loss(summary['final_train_loss'])}, eval loss {_loss(summary['eval_loss'])}"
    console().print(
        f"[bold]{run}[/bold]: {summary['method']} on {summary['base_model']}, "
        f"{summary['global_step']} steps, {losses}, "
        f"{summary['tokens_per_s']} tok/s, peak {summary['peak_memory_mb']:.0f} MB, stop rate {rate}"
    )
    if "warning" in stop:
        console().print(f"[yellow]warning:[/yellow] {stop['warning']}")


def _print_hosted_summary(run: Path, summary: dict) -> None:
    result = summary["result"]
    cost = "-" if summary.get("cost_usd") is None else f"${summary['cost_usd']:.2f} ({summary['cost_from']})"
    where = "adapter/" if result["adapter"] else f"hosted model {result['model_id']} at {result['endpoint']}"
    console().print(
        f"[bold]{run}[/bold]: {summary['backend']} job {summary['job_id']} {summary['job_status']}, "
        f"{summary['provider_base_model']}, {summary['global_step'] or '-'} steps, "
        f"final loss {_loss(summary['final_train_loss'])}, {summary['job_runtime_s']:.0f} s, cost {cost}; {where}"
    )


def _loss(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def plan_command(
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("model=mistral-7b")] = None,
    method: Annotated[Method | None, typer.Option(help="Training method (default: train.method).")] = None,
    batch_size: Annotated[
        int | None,
        typer.Option(
            min=1, help="Per-device batch (default: train.batch_size; auto: 1 on CPU, 4 on GPU).", metavar="N"
        ),
    ] = None,
    max_length: Annotated[
        int | None,
        typer.Option(min=1, help="Tokens per row (default: train.max_length, else prep.max_length).", metavar="N"),
    ] = None,
    gradient_checkpointing: Annotated[
        bool | None,
        typer.Option("--gradient-checkpointing/--no-gradient-checkpointing", help="Default: the config's."),
    ] = None,
    device: Annotated[
        str | None,
        typer.Option(help="Plan for another machine: cuda:24GB, cpu:64GB (default: this one).", metavar="DEVICE"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Estimate the memory a training run needs (weights, LoRA, gradients, optimizer, activations).

    Shown next to what this machine has (free GPU memory, else available RAM), or what --device names. The
    model is the config's `model` (or train.model); pick another with --set model=mistral-7b.
    """
    from sectune.train.plan import plan

    cfg = load(config, [*(sets or []), *([f"train.method={method}"] if method else [])])
    result = plan(
        cfg,
        batch_size=batch_size,
        max_length=max_length,
        gradient_checkpointing=gradient_checkpointing,
        device=device,
    )
    if as_json:
        import json

        print(json.dumps(result.as_dict(), indent=2))
        return
    _print_plan(result)


def _print_plan(result) -> None:
    from rich.table import Table

    table = Table(
        title=f"memory plan ({result.device}): {result.model}, {result.method}, batch {result.batch_size} × "
        f"{result.max_length} tokens, {result.precision}, "
        f"gradient checkpointing {'on' if result.gradient_checkpointing else 'off'}"
    )
    table.add_column("part")
    table.add_column("GB", justify="right")
    for label, value in (
        ("weights", result.weights_gb),
        ("LoRA (weights, grads, AdamW)", result.lora_gb),
        ("gradients", result.gradients_gb),
        ("optimizer (AdamW)", result.optimizer_gb),
        ("activations + logits", result.activations_gb),
        ("runtime overhead", result.overhead_gb),
    ):
        table.add_row(label, f"{value:.2f}")
    table.add_row("[bold]total[/bold]", f"[bold]{result.total_gb:.2f}[/bold]")
    where = "free GPU memory" if result.device == "cuda" else "available RAM"
    table.add_row(f"{result.device}: {where}", f"{result.available_gb:.2f}")
    out = console()
    out.print(table)
    smaller = "qlora, " if result.method != "qlora" else ""
    smaller += "gradient checkpointing, " if not result.gradient_checkpointing else ""
    out.print("fits" if result.fits else f"[red]does not fit[/red]: try {smaller}a smaller batch or max length")
    for note in result.notes:
        out.print(note)
