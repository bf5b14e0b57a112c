"""One module per page of the app, each with ``render(ws)``; the widgets they share are in ``common.py``."""
