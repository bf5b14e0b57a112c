"""Scripts run by a peer's own python (see peers.py), never imported by sectune: each generates Q&A samples
against the bench's fake server with the peer's normal generation API and prints one JSON line of figures."""
