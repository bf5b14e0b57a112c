"""bespokelabs-curator: Q&A samples with a ``curator.LLM`` subclass (prompt/parse, a pydantic response format).

Run by the bench in curator's venv: ``python curator_qa.py --base-url URL --samples N --in-flight 64
--topics topics.jsonl``. Curator's concurrency setting is ``backend_params["max_concurrent_requests"]``: set to
``--in-flight``; its request and token rate limits are set far above what the run needs (a local server sends
no rate-limit headers, and curator's defaults would otherwise throttle), so concurrency alone limits it.
``CURATOR_CACHE_DIR`` is a fresh folder per run (the bench sets it): nothing is answered from its cache.
Prints one JSON line.
"""

from __future__ import annotations

import argparse
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

    from bespokelabs import curator
    from pydantic import BaseModel

    class QA(BaseModel):
        question: str
        answer: str

    class QAGenerator(curator.LLM):
        response_format = QA

        def prompt(self, row: dict) -> str:
            return (
                f"Topic: {row['topic']}\nVariation: {row['variation']}\n"
                "Write a question a real user could ask about this topic, and a complete, accurate answer."
            )

        def parse(self, row: dict, response: QA) -> dict:
            return {"topic": row["topic"], "question": response.question, "answer": response.answer}

    with open(args.topics, encoding="utf-8") as handle:
        topics = [" > ".join(json.loads(line)["path"]) for line in handle if line.strip()]
    rows = [{"topic": topics[i % len(topics)], "variation": i // len(topics) + 1} for i in range(args.samples)]
    generator = QAGenerator(
        model_name="fake-model",
        backend="openai",
        backend_params={
            "base_url": args.base_url,
            "api_key": "sk-bench-dummy",
            "max_concurrent_requests": args.in_flight,
            "max_requests_per_minute": 10_000_000,
            "max_tokens_per_minute": 10_000_000_000,
            "require_all_responses": False,
        },
        generation_params={"max_tokens": 512},
    )
    started = time.perf_counter()
    response = generator(rows)
    seconds = time.perf_counter() - started
    dataset = getattr(response, "dataset", response)
    complete = sum(1 for row in dataset if row.get("question") and row.get("answer"))
    print(
        json.dumps(
            {
                "samples": complete,
                "rows": len(dataset),
                "seconds": seconds,
                "version": version("bespokelabs-curator"),
                "setting": f'backend_params["max_concurrent_requests"]={args.in_flight}',
            }
        )
    )


if __name__ == "__main__":
    main()
