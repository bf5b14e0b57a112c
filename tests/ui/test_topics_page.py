"""The Topics page: upload a sheet, see the tree and the table, edit and save; a bad sheet is one line."""

from __future__ import annotations

from ui_helpers import open_page, texts, write_sheet

from sectune.generate.topics import load_topics


def upload(app, path):
    app.file_uploader(key="sheet").set_value((path.name, path.read_bytes(), "application/octet-stream"))
    return app.run()


def test_an_uploaded_sheet_is_kept_and_shown_as_tree_and_table(workspace, tmp_path):
    app = upload(open_page("topics"), write_sheet(tmp_path / "topics.xlsx"))
    assert not app.exception and not app.error
    assert "topics.xlsx: 3 topics" in texts(app)
    assert (workspace.root / "topics" / "topics.xlsx").is_file()
    assert [e.label for e in app.expander if "samples)" in e.label] == [
        "Phishing (2 samples)",
        "VPN setup (2 samples)",
        "Password reset (2 samples)",
    ]
    table = app.dataframe[0].value
    assert list(table["path"]) == ["Phishing", "VPN setup", "Password reset"]
    assert list(table["samples"]) == [2, 2, 2]
    assert "3 topics, 6 samples asked for" in texts(app)


def test_a_bad_sheet_shows_one_line_and_the_app_keeps_working(workspace, tmp_path):
    bad = write_sheet(tmp_path / "bad.xlsx", header=("Id", "Topic", "Count", "Domain Type"))
    app = upload(open_page("topics"), bad)
    assert not app.exception
    [error] = app.error
    assert "\n" not in error.value and "missing column(s) Domain Topic, Samples Count" in error.value
    assert "bad.xlsx" in error.value
    assert not (workspace.root / "topics" / "bad.xlsx").exists()  # not kept
    app.sidebar.radio(key="page").set_value("Generate").run()  # the app goes on
    assert not app.exception and app.header[0].value == "Generate"


def test_the_edited_table_is_saved_as_a_topics_file(workspace, tmp_path):
    app = upload(open_page("topics"), write_sheet(tmp_path / "topics.xlsx"))
    editor = "topics-editor-topics.xlsx"
    app.session_state[editor] = {
        "edited_rows": {"0": {"samples": 5}, "2": {"path": "IT > Password reset"}},
        "added_rows": [{"path": "Cloud > IAM", "samples": 1}],
        "deleted_rows": [1],
    }
    app.text_input(key="topics-save-name").set_value("mine")
    app.button(key="topics-save").click().run()
    assert not app.exception and not app.error, texts(app)
    saved = load_topics(workspace.root / "topics" / "mine.jsonl")
    assert [(t.path, t.samples) for t in saved] == [
        (["Phishing"], 5),
        (["IT", "Password reset"], 2),
        (["Cloud", "IAM"], 1),
    ]


def test_a_topics_row_without_a_path_is_refused_in_one_line(workspace, tmp_path):
    app = upload(open_page("topics"), write_sheet(tmp_path / "topics.xlsx"))
    editor = "topics-editor-topics.xlsx"
    app.session_state[editor] = {"edited_rows": {"1": {"path": " "}}, "added_rows": [], "deleted_rows": []}
    app.button(key="topics-save").click().run()
    assert not app.exception
    assert [e.value for e in app.error] == ["error: path: row 2 has no path (fix: write e.g. Security > Phishing)"]
