"""The Generate page: a background job on the fake provider, its progress and samples; the typed key stays secret."""

from __future__ import annotations

import json

from ui_helpers import FAKE_KEY, open_page, texts, write_sheet

from sectune.ui import jobs


def start_generate(app, fake, *, key=FAKE_KEY, name="gen1"):
    app.radio(key="generate-provider").set_value("OpenAI-compatible URL").run()
    app.text_input(key="generate-model").set_value("fake-model")
    app.text_input(key="generate-base-url").set_value(fake.base_url)
    app.text_input(key="generate-api-key").set_value(key)
    app.text_input(key="generate-name").set_value(name)
    return app.button(key="generate-start").click().run()


def every_file_under(folder):
    return [path for path in folder.rglob("*") if path.is_file()]


def test_generate_on_the_fake_provider_lists_the_samples_and_never_writes_the_key(workspace, fake_provider):
    write_sheet(workspace.folder("topics") / "sheet.xlsx")
    app = start_generate(open_page("generate"), fake_provider)
    assert not app.exception and not app.error, texts(app)
    job = jobs.latest_job(workspace, "generate")
    assert job is not None and jobs.wait(job, 60)
    app.run()
    shown = texts(app)
    assert "generate job finished" in shown
    assert "Accepted 6" in shown and "6 of 6 samples" in shown
    table = app.dataframe[-1].value
    assert len(table) == 6 and set(table["topic"]) == {"Phishing", "VPN setup", "Password reset"}
    # the key reached the provider (it refuses any other) ...
    assert {h["authorization"] for h in fake_provider.headers} == {f"Bearer {FAKE_KEY}"}
    # ... only through the job's environment: no file of the workspace holds it, the config names the variable
    leaks = [str(p) for p in every_file_under(workspace.root) if FAKE_KEY.encode() in p.read_bytes()]
    assert leaks == []
    config = (workspace.root / "generate" / "gen1" / "config.yaml").read_text()
    assert "api_key_env: SECTUNE_UI_API_KEY" in config
    assert FAKE_KEY not in shown and FAKE_KEY not in " ".join(job.args)


def test_a_wrong_key_ends_in_one_error_line_and_the_page_keeps_working(workspace, fake_provider):
    write_sheet(workspace.folder("topics") / "sheet.xlsx")
    app = start_generate(open_page("generate"), fake_provider, key="sk-wrong")
    job = jobs.latest_job(workspace, "generate")
    assert jobs.wait(job, 60)
    app.run()
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert error.startswith("generate job failed: error:") and "\n" not in error
    assert "sk-wrong" not in texts(app)
    assert not any(b"sk-wrong" in p.read_bytes() for p in every_file_under(workspace.root))


def test_a_missing_server_url_is_refused_before_any_job(workspace, fake_provider):
    app = open_page("generate")
    app.radio(key="generate-provider").set_value("OpenAI-compatible URL").run()
    app.text_input(key="generate-model").set_value("fake-model")
    app.button(key="generate-start").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == [
        "error: base URL: the server's URL is needed (fix: type e.g. http://127.0.0.1:8000/v1)"
    ]
    assert jobs.latest_job(workspace, "generate") is None


def test_search_and_edit_the_accepted_samples(workspace, fake_provider):
    write_sheet(workspace.folder("topics") / "sheet.xlsx")
    app = start_generate(open_page("generate"), fake_provider)
    assert jobs.wait(jobs.latest_job(workspace, "generate"), 60)
    app.run()
    app.text_input(key="generate-search").set_value("For VPN setup").run()
    table = app.dataframe[-1].value
    assert len(table) == 2 and set(table["topic"]) == {"VPN setup"}
    first_line = int(table["line"].iloc[0])
    app.session_state["generate-editor-gen1-For VPN setup"] = {
        "edited_rows": {"0": {"answer": "An edited answer about VPNs."}},
        "added_rows": [],
        "deleted_rows": [],
    }
    app.button(key="generate-save").click().run()
    assert not app.exception and "saved 1 edited messages" in texts(app)
    rows = [json.loads(line) for line in (workspace.root / "generate" / "gen1" / "samples.jsonl").open()]
    assert rows[first_line - 1]["messages"][-1]["content"] == "An edited answer about VPNs."
    assert rows[first_line - 1]["meta"]["topic"] == "VPN setup"  # meta (the resume state's slot) kept
    assert len(rows) == 6
