"""Chat: talk to any trained run, the answer streaming in as it is generated."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from sectune.ui.forms import load_ui_config
from sectune.ui.streaming import stream_tokens
from sectune.ui.views.common import pick_path
from sectune.ui.views.compare import trained_runs
from sectune.ui.workspace import Workspace


def render(ws: Workspace) -> None:
    st.header("Chat")
    run = pick_path("Run", trained_runs(ws), key="chat-run")
    if run is None:
        st.info("No finished training run yet: train one on the Train page.")
        return
    cols = st.columns([3, 1, 1])
    system = cols[0].text_input("System prompt", key="chat-system")
    max_new_tokens = cols[1].number_input("Max new tokens", 1, 4096, 256, key="chat-max-new")
    temperature = cols[2].number_input("Temperature (0: greedy)", 0.0, 2.0, 0.0, step=0.1, key="chat-temperature")
    key = f"chat-history-{run}"
    history: list[dict[str, str]] = st.session_state.setdefault(key, [])
    if st.button("New conversation", key="chat-clear"):
        history.clear()
    for message in history:
        st.chat_message(message["role"]).write(message["content"])
    question = st.chat_input("Ask the model")
    if not question:
        return
    st.chat_message("user").write(question)
    history.append({"role": "user", "content": question})
    conversation = ([{"role": "system", "content": system}] if system.strip() else []) + history
    try:
        session = chat_session(ws, str(run), int(max_new_tokens), float(temperature))
        with st.chat_message("assistant"):
            answer = st.write_stream(stream_tokens(lambda on_token: session.reply(conversation, on_token=on_token)))
    except BaseException:
        history.pop()  # the question stays unanswered: drop it, as `sectune chat` does
        raise
    history.append({"role": "assistant", "content": str(answer)})


@st.cache_resource(max_entries=2, show_spinner="loading the model")
def chat_session(_ws: Workspace, target: str, max_new_tokens: int, temperature: float):
    """One loaded model per run and settings, shared by this server's sessions; it holds no conversation
    (each answer gets the whole conversation)."""
    from sectune.serve.chat import ChatSession

    cfg = load_ui_config(_ws, [])
    return ChatSession(cfg, Path(target), max_new_tokens=max_new_tokens, temperature=temperature)
