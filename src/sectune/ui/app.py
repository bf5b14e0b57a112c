"""The Streamlit script of ``sectune ui``: a sidebar to pick a page, each page a ``render(ws)`` function.

The chosen page is in the URL (``?page=train``), so a reload or a second tab opens the same page; every page
reads the workspace's run folders again on each run, so both show the same live job.
"""

from __future__ import annotations

import argparse
import os
import sys

import streamlit as st

from sectune.ui.views import chat, common, compare, data, generate, topics, train
from sectune.ui.workspace import CONFIG_ENV, WORKSPACE_ENV

PAGES = {
    "Topics": topics.render,
    "Generate": generate.render,
    "Data": data.render,
    "Train": train.render,
    "Compare": compare.render,
    "Chat": chat.render,
}


def adopt_launch_arguments(argv: list[str]) -> None:
    """``sectune ui`` passes ``--workspace`` and ``--config`` after ``--``; the pages read them from the
    environment (as the tests set them)."""
    parser = argparse.ArgumentParser(prog="sectune ui app", add_help=False)
    parser.add_argument("--workspace")
    parser.add_argument("--config")
    known, _ = parser.parse_known_args(argv)
    if known.workspace:
        os.environ[WORKSPACE_ENV] = known.workspace
    if known.config:
        os.environ[CONFIG_ENV] = known.config


def main() -> None:
    adopt_launch_arguments(sys.argv[1:])
    st.set_page_config(page_title="sectune", layout="wide")
    names = list(PAGES)
    wanted = str(st.query_params.get("page", names[0])).capitalize()
    if "page" not in st.session_state:
        st.session_state["page"] = wanted if wanted in PAGES else names[0]
    choice = st.sidebar.radio("Page", names, key="page")
    st.query_params["page"] = choice.lower()
    ws = common.workspace()
    st.sidebar.caption(f"workspace: {ws.root}")
    if ws.config:
        st.sidebar.caption(f"config: {ws.config}")
    with common.one_line_errors():
        PAGES[choice](ws)


if __name__ == "__main__":
    main()
