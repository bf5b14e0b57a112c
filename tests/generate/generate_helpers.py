"""Helpers of the generate tests: a fake-server responder that writes unique, valid samples; configs."""

from __future__ import annotations

import hashlib
import json
import random
import re

from sectune.config import load_config


def parse_request(body: dict) -> tuple[str, int]:
    """(topic path, variation) from a sample request; ("", -1) for other requests."""
    text = (body.get("messages") or [{"content": ""}])[-1]["content"]
    topic = re.search(r"^Topic: (.+)$", text, re.MULTILINE)
    variation = re.search(r"^Variation: (\d+)$", text, re.MULTILINE)
    return (topic.group(1) if topic else "", int(variation.group(1)) if variation else -1)


VOCABULARY = [
    f"{a}{b}"
    for a in ("fire", "log", "key", "net", "auth", "patch", "scan", "vault", "zone", "trace")
    for b in ("wall", "rule", "port", "audit", "token", "agent", "policy", "backup", "alert", "route")
]


def distinct_words(seed: str, count: int) -> str:
    """Words drawn from a 100-word vocabulary, seeded: different seeds give texts that are not near duplicates."""
    rng = random.Random(hashlib.sha256(seed.encode()).hexdigest())
    return " ".join(rng.choice(VOCABULARY) for _ in range(count))


def sample_responder(body: dict) -> str:
    """Valid JSON samples, unique per (topic, variation); subtopic lists for topic requests."""
    text = body["messages"][-1]["content"]
    if text.startswith("Topic path:"):
        path = text.splitlines()[0].removeprefix("Topic path: ")
        degree = int(re.search(r"List (\d+) distinct", text).group(1))
        leaf = path.split(" > ")[-1]
        return json.dumps([f"{leaf} sub{i}" for i in range(degree)])
    topic, variation = parse_request(body)
    return json.dumps(
        {
            "question": f"How do I handle {distinct_words(f'q{topic}{variation}', 8)}?",
            "answer": f"For {topic}: {distinct_words(f'a{topic}{variation}', 30)}.",
        }
    )


def make_config(base_url: str, **generate):
    """An experiment config pointing the openai provider at a fake server; fast limits for tests."""
    settings = {
        "provider": "openai",
        "model": "fake-model",
        "base_url": base_url,
        "timeout_s": 0.5,
        "max_retries": 8,
        "backoff_initial_s": 0.01,
        "backoff_max_s": 0.05,
        "max_in_flight": 8,
        "formats": ["jsonl"],
        **generate,
    }
    sets = [f"generate.{key}={json.dumps(value)}" for key, value in settings.items()]
    return load_config(None, sets)


class Killed(Exception):
    """Stands for a kill: the session stops between two slots, leaving no summary."""


def crash_after(count: int):
    """An on_progress that stops the session like a kill after ``count`` finished slots (no summary written)."""
    seen = [0]

    def report(_progress) -> None:
        seen[0] += 1
        if seen[0] >= count:
            raise Killed

    return report
