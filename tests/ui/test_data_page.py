"""The Data page: every validation problem with its row, then prep as a job; sizes, lengths, the mask picture."""

from __future__ import annotations

import shutil

from ui_helpers import open_page, texts

from sectune.ui import jobs

BAD_ROWS = b"""{"question": "What is a firewall?", "answer": "A firewall filters traffic by rules."}
{"question": "What is phishing?"}
{"question": "  ", "answer": "An answer to an empty question."}
{"question": "What is a VPN?", "answer": "A VPN encrypts traffic between two endpoints."}
"""


def upload(app, name, data):
    app.radio(key="data-from").set_value("an uploaded file").run()
    app.file_uploader(key="data-upload").set_value((name, data, "application/octet-stream"))
    return app.run()


def test_a_bad_upload_lists_every_problem_with_its_row_and_the_app_keeps_working(workspace):
    app = upload(open_page("data"), "bad.jsonl", BAD_ROWS)
    assert not app.exception
    assert [e.value for e in app.error] == ["bad.jsonl: 2 problem(s); prep stops at the first"]
    [problems] = [c.value for c in app.code]
    lines = problems.splitlines()
    assert len(lines) == 2
    assert "line 2: no 'answer' field" in lines[0] and "line 3: empty user content" in lines[1]
    app.sidebar.radio(key="page").set_value("Train").run()
    assert not app.exception and app.header[0].value == "Train"


def test_a_file_that_is_not_a_table_shows_one_line(workspace):
    app = upload(open_page("data"), "notes.csv", b"")
    assert not app.exception
    assert "notes.csv: 1 problem(s)" in texts(app)
    assert "file is empty" in app.code[0].value and "\n" not in app.code[0].value


def test_prep_as_a_job_then_sizes_histogram_and_the_mask_picture(workspace, samples_file):
    run = workspace.folder("generate") / "gen1"
    run.mkdir()
    shutil.copy(samples_file, run / "samples.jsonl")
    (run / "summary.json").write_text("{}")  # a finished generate run, as far as the page is concerned
    app = open_page("data")
    assert "samples.jsonl: no validation problems" in texts(app)
    app.text_input(key="data-name").set_value("ds1")
    app.button(key="data-start").click().run()
    assert not app.exception and not app.error, texts(app)
    job = jobs.latest_job(workspace, "prep")
    assert jobs.wait(job, 120), jobs.log_tail(job)
    app.run()
    shown = texts(app)
    assert "prep job finished" in shown, shown
    assert "train rows 8" in shown and "validation rows 2" in shown and "test rows 2" in shown
    assert "against max_length 512: 0 row(s) over it" in shown
    mask = next(m.value for m in app.markdown if "<pre" in m.value)
    trained = [part for part in mask.split("<span style='background") if part.startswith(":#b7f0b1")]
    assert trained and "Do this:" in trained[0]  # the answer is trained ...
    assert "How do I handle" in mask.split("<span style='background")[0]  # ... the question before it is not
    rendered = app.code[-1].value
    assert rendered.startswith("<|im_start|>system") and "<|im_start|>assistant" in rendered
