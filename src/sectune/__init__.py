"""sectune: turn a domain into a fine-tuned assistant (generate → prep → train → evaluate).

The Python API lives in :mod:`sectune.api` (``from sectune.api import train``); importing
``sectune`` itself stays cheap so that ``sectune --help`` answers at once.
"""

__version__ = "0.1.0"
