"""``sectune ui``: a Streamlit app over the Python API, with no pipeline logic of its own (docs/ui.md).

``app.py`` is the script Streamlit runs; ``views/`` holds one small module per page (not ``pages/``: Streamlit
would list such a folder as pages of its own). The plain functions the pages call live beside them and are
tested without Streamlit: ``workspace.py`` (where each stage's folders go), ``jobs.py`` (long work as a
background ``sectune`` process that survives the browser), ``follow.py`` (what a run folder says while it is
written), ``forms.py`` (form values → the CLI's ``--set`` overrides) and ``streaming.py`` (chat tokens).
"""
