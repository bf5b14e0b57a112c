"""A transformers model in process (default: the embedded SmolLM2-135M): no key, no network.

Concurrent ``complete`` calls are gathered into batches (one ``generate`` per batch is several times faster
on a CPU than one prompt at a time, see ENVIRONMENT.md) and run in a worker thread.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.llm.base import Completion, Messages, ProviderError


@dataclass
class _Pending:
    messages: Messages
    max_tokens: int
    temperature: float
    future: asyncio.Future = field(repr=False)


class LocalProvider:
    """Batched in-process generation with ``sectune.models.generation.generate_chat``."""

    name = "local"
    supports_json = False  # the 135M model almost never writes valid JSON: ask for labelled text
    supports_prefill = True  # a conversation ending with an assistant message is continued, not answered
    batches_requests = True  # requests sent together are answered together: no staggered start

    def __init__(self, model: str | Path, *, batch_size: int = 8, batch_wait_s: float = 0.05, seed: int = 0):
        self.model = str(model)
        self.batch_size = batch_size
        self.batch_wait_s = batch_wait_s
        self.seed = seed
        self._loaded: tuple[Any, Any] | None = None
        self._queue: asyncio.Queue[_Pending] | None = None
        self._worker: asyncio.Task | None = None
        self._load_lock = asyncio.Lock()
        self._batches = 0

    async def complete(self, messages: Messages, **params: Any) -> Completion:
        """Queue the conversation; the batching worker answers it."""
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._worker = asyncio.create_task(self._run_batches())
        future = asyncio.get_running_loop().create_future()
        item = _Pending(messages, int(params.get("max_tokens") or 256), float(params.get("temperature") or 0.0), future)
        await self._queue.put(item)
        return await future

    async def _run_batches(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            deadline = asyncio.get_running_loop().time() + self.batch_wait_s
            while len(batch) < self.batch_size:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(self._queue.get(), remaining))
                except TimeoutError:
                    break
            await self._answer(batch)

    async def _answer(self, batch: list[_Pending]) -> None:
        try:
            model, tokenizer = await self._model()
            # One generate call per (max_tokens, temperature) group: they are generate() arguments.
            groups: dict[tuple[int, float], list[_Pending]] = {}
            for item in batch:
                groups.setdefault((item.max_tokens, item.temperature), []).append(item)
            for (max_tokens, temperature), items in groups.items():
                self._batches += 1
                results = await asyncio.to_thread(self._generate, model, tokenizer, items, max_tokens, temperature)
                for item, result in zip(items, results, strict=True):
                    if not item.future.done():
                        item.future.set_result(result)
        except Exception as exc:  # a model failure fails this batch's requests, not the worker
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(ProviderError("local_error", f"{type(exc).__name__}: {exc}"))

    def _generate(self, model: Any, tokenizer: Any, items: list[_Pending], max_tokens: int, temperature: float):
        from sectune.models.generation import generate_chat

        generations = generate_chat(
            model,
            tokenizer,
            [item.messages for item in items],
            max_new_tokens=max_tokens,
            batch_size=len(items),
            temperature=temperature,
            seed=self.seed + self._batches,  # a new seed per batch: the same prompts again must not repeat
        )
        return [Completion(g.text.strip(), g.finish_reason, g.prompt_tokens, g.completion_tokens) for g in generations]

    async def _model(self) -> tuple[Any, Any]:
        async with self._load_lock:
            if self._loaded is None:
                self._loaded = await asyncio.to_thread(_load, self.model)
            return self._loaded

    async def aclose(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
            self._queue = None
        self._loaded = None  # release the model: the next stage (e.g. training in the demo) needs the memory


def _load(model: str) -> tuple[Any, Any]:
    from sectune.hardware import fast_dtypes, torch_dtype
    from sectune.models.load import load_for_inference

    # bf16 weights generate ~2x faster than fp32 on a CPU with native bf16, and far slower on one without.
    loaded = load_for_inference(model, dtype=torch_dtype(fast_dtypes().generation))
    return loaded[0], loaded[1]
