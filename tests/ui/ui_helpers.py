"""Helpers of the UI tests: the topic sheet, the base config on the tiny model, AppTest on one page, its texts."""

from __future__ import annotations

from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "src" / "sectune" / "ui" / "app.py"
FAKE_KEY = "sk-fake-ui-key-0123456789"  # what a person types into the API key field: must never reach disk
SHEET_ROWS = [(1, "Phishing", 2, "Security"), (2, "VPN setup", 2, "Network"), (3, "Password reset", 2, "IT support")]


def write_sheet(path: Path, rows=SHEET_ROWS, header=("Id", "Domain Topic", "Samples Count", "Domain Type")) -> Path:
    """A topic sheet like the original project's: one row per topic with its own sample count."""
    import openpyxl

    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(list(header))
    for row in rows:
        sheet.append(list(row))
    workbook.save(path)
    return path


def base_config(path: Path, model: Path) -> Path:
    """The UI's --config: the tiny model, fast and deterministic training, no stop check."""
    path.write_text(
        f"model: {model}\n"
        "seed: 7\n"
        "prep:\n  max_length: 512\n  validation_size: 0.2\n  test_size: 0.2\n"
        "train:\n  batch_size: 2\n  grad_accum: 1\n  logging_steps: 1\n  save_steps: 2\n  eval_steps: 1\n"
        "  precision: fp32\n  learning_rate: 0.005\n  stop_check:\n    enabled: false\n",
        encoding="utf-8",
    )
    return path


def open_page(page: str, *, timeout: float = 60):
    """AppTest on ``page`` of the app, run once."""
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_file(str(APP), default_timeout=timeout)
    app.query_params["page"] = page
    return app.run()


def texts(app) -> str:
    """Every text the page shows (markdown, captions, alerts, code, metrics), one string to search."""
    parts = []
    for kind in ("title", "header", "subheader", "markdown", "caption", "info", "success", "warning", "error", "code"):
        parts += [str(element.value) for element in getattr(app, kind)]
    parts += [f"{m.label} {m.value}" for m in app.metric]
    return "\n".join(parts)
