"""``sectune ui``: the Streamlit web UI (src/sectune/ui), headless on 127.0.0.1, usage statistics off."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path
from typing import Annotated

import typer

from sectune.cli.common import ConfigOption


def register(app: typer.Typer) -> None:
    """Add this command to the app."""
    app.command("ui")(ui_command)


def streamlit_command(app_path: Path, *, address: str, port: int, workspace: Path, config: Path | None) -> list[str]:
    """``streamlit run APP`` headless on ``address:port``: no browser opened, no usage statistics, no reloads.
    The workspace and config reach the app as its own arguments (after ``--``)."""
    app_args = ["--workspace", str(workspace)] + (["--config", str(config)] if config is not None else [])
    return [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.headless", "true",
        "--server.address", address,
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.fileWatcherType", "none",
        "--global.developmentMode", "false",
        "--client.toolbarMode", "minimal",
        "--", *app_args,
    ]  # fmt: skip


def ui_command(
    workspace: Annotated[
        Path, typer.Option("--workspace", "-w", help="Folder of the UI's runs (topics/, generate/, runs/ ...).")
    ] = Path("sectune-ui"),
    config: ConfigOption = None,
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[
        str, typer.Option("--address", help="Address to listen on (127.0.0.1: this machine only).")
    ] = "127.0.0.1",
) -> None:
    """Serve the web UI (needs the `ui` extra: pip install 'sectune[ui]'). Jobs it starts are `sectune` processes
    writing their run folders under --workspace; they keep running when the browser (or this server) closes."""
    from sectune.errors import UserError

    if find_spec("streamlit") is None:
        raise UserError("streamlit is not installed", field="sectune ui", fix="pip install 'sectune[ui]'")
    if config is not None and not config.is_file():
        raise UserError("config file not found", file=config, fix="pass an existing YAML file to --config")
    # the app file by path: the CLI and the UI share a floor and never import each other (docs/architecture.md)
    app_path = Path(__file__).resolve().parents[1] / "ui" / "app.py"
    workspace.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    print(f"sectune ui: http://{address}:{port} (workspace {workspace.resolve()})", flush=True)
    command = streamlit_command(
        app_path, address=address, port=port, workspace=workspace.resolve(), config=config.resolve() if config else None
    )
    code = subprocess.call(command, env=env)
    if code:
        raise typer.Exit(code)
