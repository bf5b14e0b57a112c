"""deepfabric: Q&A samples from a fixed topic tree with ``DataSetGenerator.create_data_async``.

Run by the bench in deepfabric's venv: ``python deepfabric_qa.py --base-url URL --samples N --in-flight 64
--topics topics.jsonl``. deepfabric's concurrency setting is ``create_data(batch_size=…)`` ("batch_size becomes
concurrency" with a topic model): it is set to ``--in-flight``. The topic tree is loaded from the same topics
file sectune gets (``Tree.from_dict_list``), so no topic requests are made. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from importlib.metadata import version


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--samples", type=int, required=True)
    parser.add_argument("--in-flight", type=int, required=True)
    parser.add_argument("--topics", required=True)
    args = parser.parse_args()

    from deepfabric import DataSetGenerator
    from deepfabric.tree import Tree

    common = {"provider": "openai", "model_name": "fake-model", "base_url": args.base_url}
    with open(args.topics, encoding="utf-8") as handle:
        topics = [json.loads(line) for line in handle if line.strip()]
    tree = Tree(topic_prompt="Cybersecurity and IT support", **common)
    tree.from_dict_list(topics)
    generator = DataSetGenerator(
        generation_system_prompt="You write training data for a cybersecurity and IT support assistant.",
        max_tokens=512,
        **common,
    )
    started = time.perf_counter()
    dataset = asyncio.run(
        generator.create_data_async(
            num_steps=args.samples // args.in_flight, batch_size=args.in_flight, topic_model=tree
        )
    )
    seconds = time.perf_counter() - started
    rows = len(dataset)
    complete = sum(1 for row in dataset if _is_qa(row))
    print(
        json.dumps(
            {
                "samples": complete,
                "rows": rows,
                "failed": len(generator.failed_samples),
                "seconds": seconds,
                "version": version("deepfabric"),
                "setting": f"create_data_async(batch_size={args.in_flight}, topic_model=Tree of {len(topics)} paths)",
            }
        )
    )


def _is_qa(row: dict) -> bool:
    roles = [message.get("role") for message in row.get("messages") or []]
    return "user" in roles and "assistant" in roles


if __name__ == "__main__":
    main()
