"""The Compare page (a study's report; base and fine-tuned answers side by side) and the Chat page (streaming)."""

from __future__ import annotations

import json
import shutil

from ui_helpers import open_page, texts


def add_run(workspace, trained_run, name="run1"):
    target = workspace.folder("runs") / name
    shutil.copytree(trained_run, target)
    return target


def broken_run(workspace, trained_run):
    """A run whose base model folder is gone: loading it fails (an error line, not a crash)."""
    run = add_run(workspace, trained_run, "broken")
    summary = json.loads((run / "summary.json").read_text())
    summary["base_model"] = str(workspace.root / "no-such-model")
    (run / "summary.json").write_text(json.dumps(summary))
    config = run / "adapter" / "adapter_config.json"
    adapter = json.loads(config.read_text())
    adapter["base_model_name_or_path"] = summary["base_model"]
    config.write_text(json.dumps(adapter))
    return run


def fake_study(workspace):
    report = workspace.folder("studies") / "study1" / "report"
    report.mkdir(parents=True)
    (report / "report.md").write_text(
        "# Study: demo\n\n## Training\n\n| variant | loss |\n|---|---|\n| lora | 1.23 |\n\n"
        "## Plots\n\n![loss curves](loss_curves.png)\n\n## Notes\n\nend\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = plt.figure(figsize=(2, 2))
    plt.plot([1, 2], [2, 1])
    figure.savefig(report / "loss_curves.png")
    plt.close(figure)


def test_compare_shows_the_study_and_answers_side_by_side(workspace, trained_run):
    fake_study(workspace)
    add_run(workspace, trained_run)
    app = open_page("compare")
    assert not app.exception and not app.error, texts(app)
    report = app.markdown[0].value
    assert "| lora | 1.23 |" in report and "## Notes" in report and "loss_curves.png" not in report
    assert len(app.get("image")) == 1
    question = app.selectbox(key="compare-question").value
    assert question.startswith("1. How do I handle")  # a held-out row of the run's own dataset
    app.number_input(key="compare-max-new").set_value(4)
    app.button(key="compare-go").click().run()
    assert not app.exception and not app.error, texts(app)
    labels = [m.value for m in app.markdown if m.value in ("**base**", "**fine-tuned**")]
    assert labels == ["**base**", "**fine-tuned**"]
    assert "question: How do I handle" in texts(app)


def test_compare_with_a_typed_question_and_a_broken_run_is_one_error_line(workspace, trained_run):
    broken_run(workspace, trained_run)
    app = open_page("compare")
    app.radio(key="compare-how").set_value("my own question").run()
    app.text_area(key="compare-typed").set_value("What is a VPN?").run()
    app.button(key="compare-go").click().run()
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert error.startswith("error:") and "\n" not in error
    app.sidebar.radio(key="page").set_value("Topics").run()
    assert not app.exception and app.header[0].value == "Topics"


def test_chat_streams_an_answer_and_keeps_the_conversation(workspace, trained_run):
    add_run(workspace, trained_run)
    app = open_page("chat")
    app.number_input(key="chat-max-new").set_value(6)
    app.number_input(key="chat-temperature").set_value(1.0)  # seeded sampling: the random model says something
    app.chat_input[0].set_value("What is phishing?").run()
    assert not app.exception and not app.error, texts(app)
    roles = [message.name for message in app.chat_message]
    assert roles == ["user", "assistant"]
    assert app.chat_message[0].markdown[0].value == "What is phishing?"
    history = app.session_state[f"chat-history-{workspace.root / 'runs' / 'run1'}"]
    assert [m["role"] for m in history] == ["user", "assistant"] and history[1]["content"]
    assert app.chat_message[1].markdown[0].value == history[1]["content"]  # the streamed text, shown
    app.chat_input[0].set_value("And a VPN?").run()
    assert [message.name for message in app.chat_message] == ["user", "assistant", "user", "assistant"]


def test_chat_with_a_broken_run_is_one_error_line(workspace, trained_run):
    broken_run(workspace, trained_run)
    app = open_page("chat")
    app.chat_input[0].set_value("hello").run()
    assert not app.exception
    [error] = [e.value for e in app.error]
    assert error.startswith("error:") and "\n" not in error
    assert app.session_state[f"chat-history-{workspace.root / 'runs' / 'broken'}"] == []
