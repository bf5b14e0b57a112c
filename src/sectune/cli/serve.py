"""CLI commands that use a result: ``sectune chat``, ``sectune serve`` and ``sectune export``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import ConfigOption, OutOption, Sets, set_option


def register(app: typer.Typer) -> None:
    """Add this module's commands to the app."""
    app.command("chat")(chat_command)
    app.command("serve")(serve_command)
    app.command("export")(export_command)


def chat_command(
    target: Annotated[
        str,
        typer.Argument(
            help="Registry key, HF model folder, train run folder (a hosted run: its provider's endpoint), PEFT "
            "adapter folder, or an http(s):// OpenAI-compatible endpoint (with --model NAME).",
            show_default=False,
            metavar="TARGET",
        ),
    ],
    prompt: Annotated[
        str | None,
        typer.Option(
            "--prompt",
            "-p",
            help="Ask one question, print only the answer, exit (stdin piped: the same).",
            metavar="TEXT",
        ),
    ] = None,
    system: Annotated[str | None, typer.Option("--system", help="System prompt.", metavar="TEXT")] = None,
    model: Annotated[
        str | None,
        typer.Option("--model", help="Model name to ask an endpoint (default: eval.endpoint_model).", metavar="NAME"),
    ] = None,
    temperature: Annotated[float, typer.Option("--temperature", help="0 is greedy.", min=0.0)] = 0.0,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling (with --temperature).")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option("--max-new-tokens", help="Default: eval.max_new_tokens.", min=1)
    ] = None,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("eval.dtype=float32")] = None,
) -> None:
    """Chat with a model, a train run or an endpoint: a `you>` loop on a terminal, one answer with --prompt."""
    from sectune.cli.common import load
    from sectune.serve.chat import ChatSession, one_shot, run_interactive

    question = prompt if prompt is not None else (None if sys.stdin.isatty() else sys.stdin.read())
    session = ChatSession(
        load(config, sets),
        target,
        system=system,
        model=model,
        temperature=temperature,
        top_p=top_p,
        max_new_tokens=max_new_tokens,
    )
    try:
        if question is not None:
            one_shot(session, question)
        else:
            run_interactive(session)
    finally:
        session.close()


def serve_command(
    targets: Annotated[
        list[str],
        typer.Argument(
            help="The base model (registry key, HF folder or train run) and/or adapters (train runs, PEFT adapter "
            "folders) on it, each as TARGET or NAME=TARGET; clients pick one by its name in `model`.",
            show_default=False,
            metavar="TARGET",
        ),
    ],
    host: Annotated[str | None, typer.Option("--host", help="Address to bind (default serve.host: 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option("--port", help="Port (default serve.port: 8000; 0: any free).")] = None,
    config: ConfigOption = None,
    sets: Annotated[Sets, set_option("serve.max_batch=8")] = None,
) -> None:
    """Serve a model and its adapters over an OpenAI-compatible HTTP API (chat, completions, models, health)."""
    from sectune.cli.common import load
    from sectune.serve.server import serve

    overrides = list(sets or [])
    overrides += [f"serve.host={host}"] if host is not None else []
    overrides += [f"serve.port={port}"] if port is not None else []
    cfg = load(config, overrides)

    def ready(url: str) -> None:
        needs_key = " (API key required)" if _key_set(cfg.serve.api_key_env) else ""
        print(f"serving on {url}{needs_key}; Ctrl-C stops", flush=True)

    serve(cfg, targets, on_ready=ready)


def _key_set(var: str) -> bool:
    from sectune.llm.keys import api_key_from_env

    return api_key_from_env(var) is not None


def export_command(
    run: Annotated[
        Path,
        typer.Argument(help="A finished train run folder (sectune train --out).", show_default=False, metavar="RUN"),
    ],
    out: OutOption,
    eval_dir: Annotated[
        Path | None,
        typer.Option(
            "--eval", help="A sectune eval folder: its metrics (with intervals) go into the model card.", metavar="DIR"
        ),
    ] = None,
    gguf: Annotated[
        str | None,
        typer.Option(
            "--gguf",
            help="Also write OUT/gguf/<name>-<type>.gguf with llama.cpp's convert_hf_to_gguf.py, per type of a "
            "comma-separated list of f16, bf16, q8_0 (e.g. f16,q8_0); the Modelfile then loads the q8_0 (else f16).",
            metavar="TYPES",
        ),
    ] = None,
    llama_cpp: Annotated[
        Path | None,
        typer.Option(
            "--llama-cpp",
            help="A llama.cpp checkout whose converter --gguf runs (default: $SECTUNE_LLAMA_CPP, else the one "
            "vendored in the llama-cpp-python sdist, fetched once with pip into the sectune cache).",
            metavar="DIR",
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing --out folder.")] = False,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            help="Then upload OUT to this Hub model repo (created private), with the token from $HF_TOKEN.",
            metavar="OWNER/NAME",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="With --push-to-hub: list what would be uploaded, send nothing.")
    ] = False,
) -> None:
    """Merge a train run into a standalone HF folder (safetensors), a model card, a Modelfile and --gguf files."""
    from sectune.cli.common import console
    from sectune.runs import read_json
    from sectune.serve.export import EXPORT_FILE, export
    from sectune.serve.hub import check_push

    if push_to_hub is not None:
        check_push(push_to_hub, dry_run=dry_run)  # a missing token fails now, not after the merge
    folder = export(run, out, eval_dir=eval_dir, overwrite=overwrite, gguf=gguf, llama_cpp=llama_cpp)
    ggufs = read_json(folder / EXPORT_FILE).get("gguf") or {}
    written = ", ".join(["merged model", "README.md", "Modelfile", *ggufs.values()])
    console().print(f"wrote {folder} ({written})", highlight=False)
    if push_to_hub is not None:
        _push(folder, push_to_hub, dry_run=dry_run)


def _push(folder: Path, repo: str, *, dry_run: bool) -> None:
    from sectune.cli.common import console
    from sectune.serve.hub import push_to_hub

    upload = push_to_hub(folder, repo, dry_run=dry_run)
    verb = "would upload" if dry_run else "uploaded"
    console().print(f"{verb} {len(upload.files)} files ({upload.total_bytes / 1e6:.1f} MB) to {repo}", highlight=False)
    for path, size in upload.files:
        console().print(f"  {path}  {size:,} bytes", highlight=False)
    if upload.url:
        console().print(upload.url, highlight=False)
