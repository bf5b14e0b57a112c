"""The local provider: batching concurrent requests into one generate call; the offline embedded-model run."""

from __future__ import annotations

import asyncio
import json

import pytest

from sectune.config import load_config
from sectune.generate.api import generate
from sectune.llm import get_provider
from sectune.runs import read_json


def test_concurrent_requests_are_batched(tiny_model_dir, monkeypatch):
    import sectune.models.generation as generation

    batch_sizes = []
    real = generation.generate_chat

    def spy(model, tokenizer, conversations, **kwargs):
        batch_sizes.append(len(conversations))
        return real(model, tokenizer, conversations, **kwargs)

    monkeypatch.setattr(generation, "generate_chat", spy)

    async def main():
        provider = get_provider("local", model=str(tiny_model_dir), local_batch_size=4)
        try:
            return await asyncio.gather(
                *(provider.complete([{"role": "user", "content": f"hello {i}"}], max_tokens=4) for i in range(6))
            )
        finally:
            await provider.aclose()

    results = asyncio.run(main())
    assert len(results) == 6 and all(r.finish_reason in ("stop", "length") for r in results)
    assert all(r.completion_tokens <= 4 and r.prompt_tokens > 0 for r in results)
    assert sorted(batch_sizes) == [2, 4]  # six requests, batches of at most four


def test_local_run_end_to_end_on_a_tiny_model_counts_every_rejection(tiny_model_dir, tmp_path):
    sets = [f"model={tiny_model_dir}", "generate.num_samples=2", "generate.max_tokens=6", "generate.topics.depth=0",
            "generate.max_requests_factor=2"]  # fmt: skip
    run = generate(load_config(None, sets), tmp_path / "run")
    summary = read_json(run / "summary.json")
    # a random 2-layer model writes noise: every slot is rejected (cut off or no question), and counted
    assert summary["provider"] == "local" and summary["slots"] == 4
    assert summary["counts_add_up"] and summary["cost_usd"] == 0.0
    assert summary["accepted"] + sum(summary["rejected"].values()) == 4


@pytest.mark.slow
def test_offline_generation_on_the_embedded_model(tmp_path):
    """No provider configured: the embedded SmolLM2-135M writes real samples (slow: minutes on 2 cores)."""
    cfg = load_config(None, ["generate.num_samples=2", "generate.topics.depth=0", "generate.max_tokens=200"])
    run = generate(cfg, tmp_path / "run")
    summary = read_json(run / "summary.json")
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert summary["provider"] == "local" and summary["model"] == "smollm2-135m" and summary["counts_add_up"]
    assert len(rows) == summary["accepted"] >= 1
    for row in rows:
        question, answer = row["messages"][1]["content"], row["messages"][2]["content"]
        assert question.endswith("?") and len(answer) >= 20
