"""Hosted fine-tuning: ``train.backend: predibase | openai | together`` trains the same experiment remotely.

One Protocol (``backend.Backend``) with the same life cycle for every service, one runner (``run.py``) that
keeps the run folder's contract, and one module per service (``predibase_jobs``, ``openai_jobs``,
``together_jobs``). SDKs are imported only when a backend connects, so configs load without them.
"""
