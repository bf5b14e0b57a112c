"""End to end in real Chromium: `sectune ui` served headless, driven by Playwright through the whole pipeline.

Upload the topic sheet → generate on the fake provider → see the samples → prep → train 2 steps on the tiny model
→ see the loss curve → open Compare. A screenshot of each page lands in the test's folder (or in
SECTUNE_UI_SCREENSHOTS, which is how docs/ui.md's pictures are made). Debian's chromium is used through
``executable_path`` (``playwright install`` cannot download here); the test skips, saying why, without it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from ui_helpers import FAKE_KEY, base_config, write_sheet

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync",
]  # fmt: skip
JOB_TIMEOUT_MS = 240_000  # a job on 2 cores: process start, imports, the work


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(f"sectune ui exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"sectune ui did not answer on {url} within {timeout}s")


@pytest.fixture
def ui_server(tmp_path, tiny_model_dir):
    """`sectune ui` on a free port of 127.0.0.1, its workspace in tmp_path; stopped after the test."""
    port = free_port()
    workspace = tmp_path / "ws"
    config = base_config(tmp_path / "ui.yaml", tiny_model_dir)
    command = [sys.executable, "-m", "sectune", "ui", "--workspace", str(workspace), "--config", str(config),
               "--port", str(port)]  # fmt: skip
    log = (tmp_path / "ui.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, workspace
    finally:
        server.terminate()
        server.wait(30)
        log.close()


@pytest.fixture
def browser_page():
    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (Debian: apt install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1300})
        page.set_default_timeout(60_000)
        yield page
        browser.close()


def open_page(page, url: str, name: str) -> None:
    page.goto(f"{url}/?page={name}")
    page.get_by_role("heading", name=name.capitalize()).wait_for()


def fill(page, label: str, value: str) -> None:
    """A Streamlit text field takes its value on Enter."""
    field = page.locator(f"input[aria-label='{label}']")  # not the grid's toolbar button of the same name
    field.fill(value)
    field.press("Enter")


def wait_text(page, text: str, timeout: float = JOB_TIMEOUT_MS) -> None:
    """Wait for visible text (a closed selectbox holds its options' labels hidden)."""
    page.get_by_text(text).filter(visible=True).first.wait_for(timeout=timeout)


def shoot(page, folder: Path, name: str) -> Path:
    page.wait_for_timeout(800)  # let expanders and charts finish their animation
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def test_the_whole_pipeline_in_chromium(ui_server, browser_page, tmp_path):
    from generate_helpers import sample_responder

    from sectune.testing.fake_openai import FakeOpenAI

    url, workspace = ui_server
    page = browser_page
    shots = Path(os.environ.get("SECTUNE_UI_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    sheet = write_sheet(tmp_path / "topics.xlsx")

    # Topics: upload the sheet, see the tree
    open_page(page, url, "topics")
    page.get_by_role("tab", name="Upload a topic sheet").click()
    page.locator("input[type=file]").set_input_files(str(sheet))
    wait_text(page, "topics.xlsx: 3 topics", 60_000)
    assert (workspace / "topics" / "topics.xlsx").is_file()
    shoot(page, shots, "topics")

    # Generate on the fake provider; the samples are listed
    with FakeOpenAI(responder=sample_responder, latency=0.01, require_key=FAKE_KEY) as fake:
        open_page(page, url, "generate")
        page.get_by_text("OpenAI-compatible URL").click()
        fill(page, "Model", "fake-model")
        fill(page, "Base URL", fake.base_url)
        fill(page, "API key", FAKE_KEY)
        fill(page, "Name", "gen1")
        page.get_by_role("button", name="Start generating").click()
        wait_text(page, "generate job finished")
    wait_text(page, "6 of 6 samples", 60_000)
    shoot(page, shots, "generate")
    fill(page, "Search", "Password reset")  # the grid draws on a canvas: the search caption tells what it lists
    wait_text(page, "2 of 6 samples", 60_000)

    # Data: prepare the generate run (the default source)
    open_page(page, url, "data")
    fill(page, "Dataset name", "data1")
    page.get_by_role("button", name="Prepare dataset").click()
    wait_text(page, "prep job finished")
    wait_text(page, "train rows", 60_000)
    wait_text(page, "What the model is trained on", 60_000)  # the mask picture of row 1
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=60_000)  # token-length histogram
    assert (workspace / "datasets" / "data1" / "summary.json").is_file()
    shoot(page, shots, "data")

    # Train 2 steps; the loss curve appears
    open_page(page, url, "train")
    max_steps = page.get_by_label("Max steps (0: by epochs)")
    max_steps.fill("2")
    max_steps.press("Enter")
    fill(page, "Run name", "run1")
    page.get_by_role("button", name="Start training").click()
    wait_text(page, "train job finished")
    page.locator("[data-testid='stVegaLiteChart']").first.wait_for(timeout=60_000)
    wait_text(page, "final train loss", 60_000)
    assert (workspace / "runs" / "run1" / "summary.json").is_file()
    shoot(page, shots, "train")

    # Compare opens on the trained run
    open_page(page, url, "compare")
    page.wait_for_timeout(1500)
    assert page.locator("[data-testid='stException']").count() == 0
    shoot(page, shots, "compare")

    assert sorted(p.name for p in shots.glob("*.png")) == [
        "compare.png", "data.png", "generate.png", "topics.png", "train.png"
    ]  # fmt: skip
    assert FAKE_KEY.encode() not in b"".join(p.read_bytes() for p in workspace.rglob("*") if p.is_file())
