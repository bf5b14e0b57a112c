"""The model side of ``sectune serve``: one base model with named adapters, and a batched decode loop.

Requests that arrive within a few milliseconds of each other are decoded together (``Batcher``): on 2 CPU
cores a batch of 8 costs little more per step than one row, so total tokens/s grows with the clients. One
worker thread owns the model; the HTTP side only queues jobs and reads their events.

Each row keeps its own sampling (greedy, temperature, top-p, seed), stop strings and token budget; finished
rows leave the KV cache at once, so a long answer does not hold short ones back. Left padding with
position ids from the attention mask gives each row the logits it has alone (``model.generate`` does the
same), so the server's greedy answer is the in-process one.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sectune.errors import UserError

log = logging.getLogger(__name__)

SCORING_TOKENS = 2048  # prompt tokens scored in one forward (echo logprobs): bounds the logits held at once


# ---------------------------------------------------------------- requests and what comes back


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0
    seed: int | None = None
    stop: tuple[str, ...] = ()
    logprobs: int | None = None  # None: none; k: each chosen token's logprob and the k most likely
    echo: bool = False  # also score the prompt's own tokens (completions ``echo``)


@dataclass(frozen=True)
class TokenLogprob:
    token_id: int
    token: str
    logprob: float | None  # None for the first prompt token (nothing predicts it)
    top: list[tuple[str, float]]


@dataclass(frozen=True)
class Delta:
    """New answer text (may be empty while a stop string is still possible) and its tokens' logprobs."""

    text: str
    logprobs: list[TokenLogprob]


@dataclass(frozen=True)
class Finished:
    finish_reason: str  # "stop" (end of turn or a stop string) or "length"
    prompt_tokens: int
    completion_tokens: int
    prompt_logprobs: list[TokenLogprob] | None = None


@dataclass(frozen=True)
class Failed:
    message: str


Event = Delta | Finished | Failed


@dataclass
class Job:
    """One prompt to answer with one served model; ``emit`` receives its events (from the worker thread)."""

    model: str
    prompt_ids: list[int]
    sampling: Sampling
    emit: Callable[[Event], None]
    cancelled: bool = False  # set by the HTTP side when the client went away
    finished: bool = False
    prompt_logprobs: list[TokenLogprob] | None = field(default=None, repr=False)

    def finish(self, event: Finished | Failed) -> None:
        self.finished = True
        self.emit(event)

    def can_join(self) -> bool:
        """Whether it can enter a running decode: it only decodes (no prompt scoring first)."""
        return not self.cancelled and not self.sampling.echo and self.sampling.max_tokens > 0


# ---------------------------------------------------------------- what is served


@dataclass(frozen=True)
class Served:
    """A name clients ask for: the base model (adapter None) or one adapter, with its chat template."""

    name: str
    adapter: str | None
    template: str | None
    source: str  # the target it came from


@dataclass(frozen=True)
class _Target:
    name: str | None  # NAME= given by the user
    base: str | None  # the base model ref it needs (None: it is the base)
    adapter: Path | None
    template: str | None
    source: str
    full_run: Path | None = None  # a full fine-tuning run: served as the base


def parse_target(text: str) -> _Target:
    """``[NAME=]TARGET``: a registry key or HF folder (the base), a train run, or a PEFT adapter folder."""
    from sectune.evaluate.targets import adapter_base, check_target, hosted_target, is_endpoint
    from sectune.models.load import RUN_ADAPTER, RUN_MODEL, is_train_run, run_base_model, run_template

    name, sep, ref = text.partition("=")
    if not sep or "/" in name or not name:
        name, ref = "", text
    if is_endpoint(ref):
        raise UserError("serve loads local models, not endpoints", field=ref, fix="pass a model, run or adapter")
    check_target(ref)
    hosted = hosted_target(ref)
    if hosted is not None:
        raise UserError(
            f"this run's model stays at {hosted.backend}: serve loads local weights",
            file=ref,
            fix=f"ask it at {hosted.url} (model {hosted.model}) with sectune chat {ref}",
        )
    path = Path(ref).expanduser()
    if is_train_run(path):
        if (path / RUN_MODEL).is_dir():
            return _Target(name or None, None, None, run_template(path), ref, full_run=path)
        return _Target(name or None, run_base_model(path), path / RUN_ADAPTER, run_template(path), ref)
    if (path / "adapter_config.json").is_file():
        return _Target(name or None, adapter_base(path), path, None, ref)
    return _Target(name or None, None, None, None, ref)


def plan_targets(texts: Sequence[str]) -> tuple[_Target, list[_Target]]:
    """(the base, the adapters): at most one base target; every adapter on that same base."""
    from sectune.models.load import resolve_model

    targets = [parse_target(text) for text in texts]
    bases = [t for t in targets if t.adapter is None]
    adapters = [t for t in targets if t.adapter is not None]
    if len(bases) > 1:
        raise UserError(
            f"serve holds one base model, given {len(bases)}: {', '.join(t.source for t in bases)}",
            field="target",
            fix="start one server per base model; pass the others' adapters or train runs",
        )
    base = bases[0] if bases else _Target(None, None, None, None, str(adapters[0].base))
    if base.full_run is not None and adapters:
        raise UserError(
            "a full fine-tuning run cannot carry adapters",
            file=base.source,
            fix="serve it alone, or serve the adapters with their base model",
        )
    where = resolve_model(base.source).path if base.full_run is None else None
    for adapter in adapters:
        if where is not None and resolve_model(str(adapter.base)).path != where:
            raise UserError(
                f"its base model {adapter.base} is not the served base {base.source}",
                file=adapter.source,
                fix="serve adapters of one base model per server",
            )
    return base, adapters


def served_names(base: _Target, adapters: Sequence[_Target]) -> list[str]:
    """Unique names: NAME= when given, else the registry key or folder name (as eval labels targets)."""
    from sectune.evaluate.targets import target_label

    used: set[str] = {t.name for t in (base, *adapters) if t.name}
    names = []
    for target in (base, *adapters):
        names.append(target.name or target_label(target.source, used))
    if len(set(names)) != len(names):
        raise UserError(f"two served models are named alike: {names}", field="target", fix="give each NAME=TARGET")
    return names


# ---------------------------------------------------------------- the engine


class Engine:
    """A loaded base model (with its adapters) that answers batches of jobs for one served name at a time."""

    def __init__(self, model: Any, tokenizer: Any, served: Sequence[Served]) -> None:
        from sectune.models.generation import end_token_ids

        self.model = model
        self.tokenizer = tokenizer
        self.served = {s.name: s for s in served}
        self.stop_ids = end_token_ids(tokenizer, model)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.context_length = int(getattr(_base_config(model), "max_position_embeddings", 2048) or 2048)

    @classmethod
    def load(cls, targets: Sequence[str], *, dtype: Any = None) -> Engine:
        from sectune.models.load import load_for_inference, load_model, load_tokenizer

        base, adapters = plan_targets(targets)
        names = served_names(base, adapters)
        if base.full_run is not None:
            model, tokenizer = load_for_inference(base.full_run, dtype=dtype)
        else:
            model = load_model(base.source, dtype=dtype)
            tokenizer = load_tokenizer(base.source, template=base.template)
            model = _with_adapters(model, [(name, t.adapter) for name, t in zip(names[1:], adapters, strict=True)])
        model.eval()
        served = [Served(names[0], None, base.template or tokenizer.chat_template, base.source)]
        served += [
            Served(name, name, t.template or tokenizer.chat_template, t.source)
            for name, t in zip(names[1:], adapters, strict=True)
        ]
        return cls(model, tokenizer, served)

    # ------------------------------------------------------------ prompts

    def chat_prompt_ids(self, name: str, messages: list[dict[str, str]]) -> list[int]:
        """The served model's chat template applied to ``messages`` (a final assistant turn is continued)."""
        template = self.served[name].template
        if not template:
            raise UserError(
                f"model {name} has no chat template",
                field="model",
                fix="use /v1/completions, or serve a model whose tokenizer carries a chat template",
            )
        continue_final = bool(messages) and messages[-1]["role"] == "assistant"
        text = self.tokenizer.apply_chat_template(
            messages,
            chat_template=template,
            tokenize=False,
            add_generation_prompt=not continue_final,
            continue_final_message=continue_final,
        )
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def text_ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])

    # ------------------------------------------------------------ running jobs

    def run(self, jobs: Sequence[Job], join: Joiner | None = None) -> None:
        """Answer jobs that all ask for the same served model; every job ends with Finished or Failed.

        ``join(running)`` (from the batcher) hands over jobs for the same model that arrived meanwhile.
        """
        live = [job for job in jobs if not job.cancelled]
        involved = list(live)

        def joining(running: int) -> list[Job]:
            arrivals = join(running) if join is not None else []
            involved.extend(arrivals)
            return arrivals

        try:
            with self._selected(live[0].model if live else ""):
                self._score_prompts([job for job in live if job.sampling.echo])
                decoding = [job for job in live if job.sampling.max_tokens > 0]
                if decoding:
                    self._decode(decoding, joining)
            for job in live:
                if job.sampling.max_tokens == 0:
                    job.finish(Finished("length", len(job.prompt_ids), 0, job.prompt_logprobs))
        except Exception as exc:  # one bad batch must not stop the server: its jobs fail, the next batch runs
            log.exception("batch failed")
            for job in involved:
                if not job.finished:
                    job.finish(Failed(f"{type(exc).__name__}: {exc}".splitlines()[0]))

    @contextmanager
    def _selected(self, name: str) -> Iterator[None]:
        served = self.served.get(name)
        if served is None or not hasattr(self.model, "peft_config"):
            yield
        elif served.adapter is None:
            with self.model.disable_adapter():
                yield
        else:
            self.model.set_adapter(served.adapter)
            yield

    def _score_prompts(self, jobs: Sequence[Job]) -> None:
        """Each echo job's prompt logprobs, in right-padded batches of at most SCORING_TOKENS tokens."""
        import torch

        for batch in _token_budget_batches(list(jobs), SCORING_TOKENS):
            width = max(len(job.prompt_ids) for job in batch)
            input_ids = torch.full((len(batch), width), self.pad_id, dtype=torch.long)
            attention = torch.zeros((len(batch), width), dtype=torch.long)
            for row, job in enumerate(batch):
                input_ids[row, : len(job.prompt_ids)] = torch.tensor(job.prompt_ids)
                attention[row, : len(job.prompt_ids)] = 1
            with torch.inference_mode():
                logits = self.model(
                    input_ids=input_ids.to(self.model.device), attention_mask=attention.to(self.model.device)
                ).logits
            for row, job in enumerate(batch):
                n = len(job.prompt_ids)
                logprobs = torch.log_softmax(logits[row, : n - 1].float(), dim=-1).cpu()
                first = TokenLogprob(job.prompt_ids[0], self.token_text(job.prompt_ids[0]), None, [])
                rest = [
                    self._token_logprob(job.prompt_ids[i + 1], logprobs[i], job.sampling.logprobs or 0)
                    for i in range(n - 1)
                ]
                job.prompt_logprobs = [first, *rest]

    def _token_logprob(self, token_id: int, logprobs: Any, top_k: int) -> TokenLogprob:
        top: list[tuple[str, float]] = []
        if top_k > 0:
            values, ids = logprobs.topk(top_k)
            top = [(self.token_text(int(i)), float(v)) for v, i in zip(values, ids, strict=True)]
        return TokenLogprob(token_id, self.token_text(token_id), float(logprobs[token_id]), top)

    def _decode(self, jobs: Sequence[Job], join: Joiner | None = None) -> None:
        """Decode all jobs together; a row leaves the batch (and the KV cache) when it finishes.

        ``join(running)`` hands over jobs that arrived since (same served model): they are prefilled and
        merged into the running batch at the next step, so a request never waits for a whole batch to finish
        (continuous batching).
        """
        import torch

        with torch.inference_mode():
            batch = self._prefill(list(jobs))
            while batch is not None:
                batch = batch.advance()
                arrivals = join(len(batch.rows) if batch else 0) if join is not None else []
                if arrivals:
                    batch = self._joined(batch, arrivals)
                if batch is None:
                    return
                batch.logits = self._step(batch)

    def _joined(self, batch: _Batch | None, arrivals: list[Job]) -> _Batch | None:
        """The running batch with ``arrivals`` prefilled, their first token chosen, and merged in."""
        prefilled = self._prefill(arrivals)
        assert prefilled is not None
        new = prefilled.advance()
        if batch is None or new is None:
            return batch or new
        return batch.merged(new)

    def _prefill(self, jobs: list[Job]) -> _Batch | None:
        """Left-padded prompts through the model: a batch whose logits give each row's first token."""
        import torch
        from transformers import DynamicCache

        if not jobs:
            return None
        width = max(len(job.prompt_ids) for job in jobs)
        input_ids = torch.full((len(jobs), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(jobs), width), dtype=torch.long)
        for i, job in enumerate(jobs):
            input_ids[i, width - len(job.prompt_ids) :] = torch.tensor(job.prompt_ids)
            attention[i, width - len(job.prompt_ids) :] = 1
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        batch = _Batch([_Row(job, self) for job in jobs], DynamicCache(), attention, positions[:, -1:], [])
        batch.logits = self._forward(input_ids, attention, positions, batch.cache)
        return batch

    def _step(self, batch: _Batch) -> Any:
        import torch

        batch.attention = torch.cat([batch.attention, torch.ones((len(batch.rows), 1), dtype=torch.long)], dim=1)
        batch.positions = batch.positions + 1
        step = torch.tensor(batch.next_tokens, dtype=torch.long)[:, None]
        return self._forward(step, batch.attention, batch.positions, batch.cache)

    def _forward(self, input_ids: Any, attention: Any, positions: Any, cache: Any) -> Any:
        device = self.model.device
        out = self.model(
            input_ids=input_ids.to(device),
            attention_mask=attention.to(device),
            position_ids=positions.to(device),
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1, :].float().cpu()


Joiner = Callable[[int], list[Job]]


@dataclass
class _Batch:
    """Rows decoding together: their KV cache, attention mask (left padding), last positions, next tokens."""

    rows: list[_Row]
    cache: Any
    attention: Any
    positions: Any  # (rows, 1): the position of each row's last token
    next_tokens: list[int]
    logits: Any = None

    def advance(self) -> _Batch | None:
        """Each row takes its next token from ``logits``; the rows that did not finish, or None."""
        tokens = [row.choose(self.logits[i]) for i, row in enumerate(self.rows)]
        keep = [i for i, row in enumerate(self.rows) if not row.push(tokens[i], self.logits[i])]
        return self.select(keep, [tokens[i] for i in keep])

    def select(self, keep: list[int], tokens: list[int]) -> _Batch | None:
        """Only the rows in ``keep`` (their next tokens given), or None when none is left."""
        import torch

        if not keep:
            return None
        if len(keep) < len(self.rows):
            index = torch.tensor(keep, dtype=torch.long)
            self.cache.batch_select_indices(index.to(_cache_device(self.cache)))
            self.attention, self.positions = self.attention[index], self.positions[index]
            self.rows = [self.rows[i] for i in keep]
        self.next_tokens = tokens
        return self

    def merged(self, other: _Batch) -> _Batch:
        """Both batches as one: the shorter cache is padded on the left (masked), then rows are stacked."""
        import torch

        width = max(self.attention.shape[1], other.attention.shape[1])
        for batch in (self, other):
            missing = width - batch.attention.shape[1]
            if missing:
                batch.attention = torch.nn.functional.pad(batch.attention, (missing, 0))
                for layer in batch.cache.layers:
                    layer.keys = torch.nn.functional.pad(layer.keys, (0, 0, missing, 0))
                    layer.values = torch.nn.functional.pad(layer.values, (0, 0, missing, 0))
        for mine, theirs in zip(self.cache.layers, other.cache.layers, strict=True):
            mine.keys = torch.cat([mine.keys, theirs.keys], dim=0)
            mine.values = torch.cat([mine.values, theirs.values], dim=0)
        self.attention = torch.cat([self.attention, other.attention], dim=0)
        self.positions = torch.cat([self.positions, other.positions], dim=0)
        self.rows += other.rows
        self.next_tokens = self.next_tokens + other.next_tokens
        return self


def _cache_device(cache: Any) -> Any:
    return cache.layers[0].keys.device


class _Row:
    """One job in a decode batch: its sampler, its answer so far and what has been sent of it."""

    def __init__(self, job: Job, engine: Engine) -> None:
        import torch

        self.job, self.engine = job, engine
        self.ids: list[int] = []
        self.sent = 0  # characters of the answer already emitted
        self.pending: list[TokenLogprob] = []  # logprobs of tokens whose text is not emitted yet
        self.budget = min(job.sampling.max_tokens, engine.context_length - len(job.prompt_ids))
        self.generator = None
        if job.sampling.temperature > 0:
            self.generator = torch.Generator()
            if job.sampling.seed is not None:
                self.generator.manual_seed(job.sampling.seed)
            else:
                self.generator.seed()

    def choose(self, logits: Any) -> int:
        import torch

        sampling = self.job.sampling
        if self.generator is None:
            return int(torch.argmax(logits))
        probs = torch.softmax(logits / sampling.temperature, dim=-1)
        if sampling.top_p < 1.0:
            ordered, order = torch.sort(probs, descending=True)
            outside = ordered.cumsum(-1) - ordered > sampling.top_p  # tokens after the nucleus is full
            ordered[outside] = 0.0
            probs = torch.zeros_like(probs).scatter(0, order, ordered)
        return int(torch.multinomial(probs, 1, generator=self.generator))

    def push(self, token: int, logits: Any) -> bool:
        """Take the chosen token; True when the row is finished (its Finished event sent)."""
        import torch

        job = self.job
        if job.sampling.logprobs is not None:
            logprobs = torch.log_softmax(logits, dim=-1)
            self.pending.append(self.engine._token_logprob(token, logprobs, job.sampling.logprobs))
        if token in self.engine.stop_ids:
            return self._finish("stop", self._text(), counted=len(self.ids) + 1)
        self.ids.append(token)
        text = self._text()
        for stop in job.sampling.stop:
            at = text.find(stop, max(0, self.sent - len(stop)))
            if at >= 0:
                return self._finish("stop", text[:at], counted=len(self.ids))
        if job.cancelled or len(self.ids) >= self.budget:
            return self._finish("length", text, counted=len(self.ids))
        self._send(text[: len(text) - self._held_back(text)])
        return False

    def _text(self) -> str:
        return self.engine.tokenizer.decode(self.ids, skip_special_tokens=True)

    def _held_back(self, text: str) -> int:
        """Trailing characters not sent yet: a half-decoded character, or what could begin a stop string."""
        held = 1 if text.endswith("\ufffd") else 0
        for stop in self.job.sampling.stop:
            for n in range(min(len(stop) - 1, len(text)), 0, -1):
                if text.endswith(stop[:n]):
                    held = max(held, n)
                    break
        return held

    def _send(self, upto: str) -> None:
        if len(upto) > self.sent or self.pending:
            self.job.emit(Delta(upto[self.sent :], self.pending))
            self.sent, self.pending = max(self.sent, len(upto)), []

    def _finish(self, reason: str, text: str, *, counted: int) -> bool:
        self._send(text)
        self.job.finish(Finished(reason, len(self.job.prompt_ids), counted, self.job.prompt_logprobs))
        return True


def _token_budget_batches(jobs: list[Job], budget: int) -> Iterator[list[Job]]:
    batch: list[Job] = []
    for job in sorted(jobs, key=lambda j: len(j.prompt_ids)):
        width = max([len(j.prompt_ids) for j in batch] + [len(job.prompt_ids)])
        if batch and width * (len(batch) + 1) > budget:
            yield batch
            batch = []
        batch.append(job)
    if batch:
        yield batch


def _base_config(model: Any) -> Any:
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.config


def _with_adapters(model: Any, adapters: Sequence[tuple[str, Path | None]]) -> Any:
    """The base model with each adapter loaded under its served name (one PeftModel holds them all)."""
    if not adapters:
        return model
    from peft import PeftModel

    (first, first_path), *rest = adapters
    wrapped = PeftModel.from_pretrained(model, str(first_path), adapter_name=first)
    for name, path in rest:
        wrapped.load_adapter(str(path), adapter_name=name)
    return wrapped


# ---------------------------------------------------------------- the batching queue


class Batcher:
    """A worker thread that takes jobs from a queue and runs those that arrive together as one batch.

    The first job waits up to ``wait_ms`` for others (at most ``max_batch``); jobs for the same served model
    that arrive while a batch decodes join it between two steps. Jobs for another model wait for the next
    batch, so one batch uses one adapter.
    """

    def __init__(self, engine: Engine, *, max_batch: int = 16, wait_ms: float = 5.0) -> None:
        self.engine, self.max_batch, self.wait_s = engine, max_batch, wait_ms / 1000
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._held: list[Job] = []
        self._stopping = False
        self._thread = threading.Thread(target=self._work, name="sectune-serve-batcher", daemon=True)
        self.batches = 0  # batches run (for tests and the benchmark)
        self.largest = 0  # the most rows decoded at once
        self.joined = 0  # jobs that entered a running batch

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def submit(self, job: Job) -> None:
        self._queue.put(job)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _work(self) -> None:
        while True:
            jobs = self._collect()
            if jobs is None:
                return
            if jobs:
                self.batches += 1
                self.largest = max(self.largest, len(jobs))
                self.engine.run(jobs, join=functools.partial(self._arrivals, jobs[0].model))

    def _collect(self) -> list[Job] | None:
        """The next batch: held-over jobs first, then what arrives within the wait; None when stopping."""
        waiting = self._held
        self._held = []
        if not waiting:
            if self._stopping:
                return None
            first = self._queue.get()
            if first is None:
                return None
            waiting = [first]
        self._take(waiting, until=time.monotonic() + self.wait_s, limit=self.max_batch * 4)
        model = waiting[0].model
        batch = [job for job in waiting if job.model == model][: self.max_batch]
        self._hold_rest(waiting, batch)
        return batch

    def _arrivals(self, model: str, running: int) -> list[Job]:
        """Jobs for ``model`` that can join a decode of ``running`` rows now (never waits)."""
        free = self.max_batch - running
        if free <= 0:
            return []
        waiting = self._held
        self._held = []
        self._take(waiting)
        joining = [job for job in waiting if job.model == model and job.can_join()][:free]
        self._hold_rest(waiting, joining)
        self.joined += len(joining)
        self.largest = max(self.largest, running + len(joining))
        return joining

    def _take(self, waiting: list[Job], *, until: float | None = None, limit: int | None = None) -> None:
        """Move queued jobs to ``waiting``: those queued now and, with ``until``, those arriving before it.

        The stop marker ends the taking and is remembered, so the worker stops once the held jobs are done.
        """
        while limit is None or len(waiting) < limit:
            remaining = until - time.monotonic() if until is not None else 0.0
            try:
                job = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                return
            if job is None:
                self._stopping = True
                return
            waiting.append(job)

    def _hold_rest(self, waiting: list[Job], taken: list[Job]) -> None:
        ids = {id(job) for job in taken}
        self._held = [job for job in waiting if id(job) not in ids]
