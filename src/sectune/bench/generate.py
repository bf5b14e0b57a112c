"""Generation: sectune's engine, deepfabric and bespokelabs-curator on one fake server; the local provider.

One fake OpenAI-compatible server (``sectune.testing.fake_openai``, in a process of its own so its threads do
not share the engine's GIL, like a real server) answers every tool in turn at a fixed latency. With
``in_flight`` requests at a time and ``latency`` seconds each, no client can beat in-flight ÷ latency samples/s
(64 / 0.2 s = 320/s): that ceiling is sectune's baseline. The bare provider client doing the same calls at the
same concurrency, measured alternately with the engine, tells the engine's overhead from the machine's.
Each peer runs in its own venv (peers.py) with a small script (peer_scripts/) that uses its normal generation
API, concurrency set to the same in-flight count, on the same topics and the same server.

The local provider (sectune.llm.local, the embedded model in process) is measured in tokens/s against a bare
batched ``model.generate`` loop on the same model, prompts, batch size and number of new tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sectune.bench.measure import BenchContext, Measure
from sectune.bench.peers import Peer, PeerEnv, PeerUnavailable, peer_env

AREA = "generate"
RATIO_TARGET = 0.9  # of the ceiling, and local provider / bare generate loop
CPU_MS_TARGET = 2.0  # sectune's own CPU per sample
DEEPFABRIC = Peer("deepfabric", "4.13.0")
CURATOR = Peer("bespokelabs-curator", "0.1.31")
PEER_TARGETS = {DEEPFABRIC.dist: 3.0, CURATOR.dist: 1.0}  # sectune ÷ peer, samples/s
PEER_SCRIPTS = {DEEPFABRIC.dist: "deepfabric_qa.py", CURATOR.dist: "curator_qa.py"}
SCRIPTS_DIR = Path(__file__).with_name("peer_scripts")
TEXT_FIELDS = {"content", "question", "answer", "text", "final_answer"}  # nullable strings that get text


@dataclass(frozen=True)
class Sizes:
    """How much each part does; ``quick()`` is the smoke size (the harness test), the defaults a real run."""

    samples: int = 2560  # per run, sectune and each peer alike
    latency: float = 0.2  # the fake server's seconds per request
    in_flight: int = 64  # requests at a time, for every tool
    repeat: int = 3  # sectune and bare-client runs (alternating); the medians are reported
    topics: int = 64  # topic paths, the same for every tool (deepfabric's concurrency is capped by their count)
    peers: bool = True  # run the peers at all
    install_peers: bool = True  # build a missing peer venv (quick: never)
    peer_timeout_s: float = 150.0
    local: bool = True  # the local-provider measure
    local_model: str = "smollm2-135m"  # "tiny": a random 2-layer model built in the work folder
    local_batch: int = 8
    local_batches: int = 1  # batches per timed run
    local_new_tokens: int = 64
    local_repeat: int = 2

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            samples=64,
            repeat=1,
            install_peers=False,
            peer_timeout_s=120.0,
            local_model="tiny",
            local_batch=4,
            local_batches=1,
            local_new_tokens=16,
            local_repeat=1,
        )

    @property
    def ceiling(self) -> float:
        return self.in_flight / self.latency


def run(ctx: BenchContext) -> list[Measure]:
    sizes = Sizes.quick() if ctx.quick else Sizes()
    return measure_all(sizes, ctx.work, ctx.cache, ctx.say)


def measure_all(sizes: Sizes, work: Path, cache: Path, say: Callable[[str], None] = print) -> list[Measure]:
    """Every generation measure: sectune vs the ceiling, its CPU, each peer, then the local provider."""
    topics = write_topics(work / "topics.jsonl", sizes.topics)
    measures: list[Measure] = []
    with fake_server(sizes.latency) as base_url:
        sectune = measure_sectune(base_url, sizes, work, topics, say)
        measures.extend(sectune_measures(sectune, sizes))
        if sizes.peers:
            for peer in (DEEPFABRIC, CURATOR):
                measures.append(measure_peer(peer, sectune["rate"], base_url, sizes, work, cache, topics, say))
    if sizes.local:
        measures.append(measure_local(sizes, work, say))
    return measures


# --- the fake server -------------------------------------------------------------------------------------
_request_numbers = itertools.count()


def bench_responder(body: dict[str, Any]) -> str:
    """A valid, unique answer to any tool's sample request.

    A request with a ``json_schema`` response format (sectune's default, deepfabric's conversation schema,
    curator's pydantic model, curator's structured-output probe) gets an instance of that schema; any other a
    ``{"question", "answer"}`` object. Texts are hex words from a per-request counter: never a near duplicate.
    """
    seed = str(next(_request_numbers))
    fmt = body.get("response_format") or {}
    schema = (fmt.get("json_schema") or {}).get("schema") if fmt.get("type") == "json_schema" else None
    if isinstance(schema, dict):
        return json.dumps(fill_schema(schema, seed))
    return json.dumps({"question": _text(seed, "question"), "answer": _text(seed, "answer")})


def fill_schema(schema: dict[str, Any], seed: str) -> Any:
    """An instance of a JSON schema: every property present, nullable non-text fields null, arrays of two
    (a role enum alternates user, assistant), strings of unique words."""
    defs = {**schema.get("definitions", {}), **schema.get("$defs", {})}
    return _fill(schema, defs, seed, name="", index=0)


def _fill(node: Any, defs: dict[str, Any], seed: str, name: str, index: int) -> Any:
    if not isinstance(node, dict):
        return None
    if "$ref" in node:
        return _fill(defs.get(node["$ref"].rsplit("/", 1)[-1], {}), defs, seed, name, index)
    if "const" in node:
        return node["const"]
    if "enum" in node:
        values = node["enum"]
        return ("user", "assistant")[index % 2] if {"user", "assistant"} <= set(values) else values[0]
    options = node.get("anyOf") or node.get("oneOf")
    kind = node.get("type")
    if isinstance(kind, list):  # ["string", "null"]
        options = [{**node, "type": k} for k in kind]
    if options:
        return _fill(_pick(options, name), defs, seed, name, index)
    if "allOf" in node:
        return _fill(node["allOf"][0], defs, seed, name, index)
    if kind == "object" or "properties" in node:
        properties = node.get("properties") or {}
        return {key: _fill(sub, defs, f"{seed}.{key}", key, index) for key, sub in properties.items()}
    if kind == "array":
        count = max(2, int(node.get("minItems", 0)))
        count = min(count, int(node.get("maxItems", count)))
        return [_fill(node.get("items", {}), defs, f"{seed}.{i}", name, i) for i in range(count)]
    if kind == "string":
        return _text(seed, name)
    if kind in ("integer", "number"):
        return 1 + index
    if kind == "boolean":
        return True
    return None


def _pick(options: list[Any], name: str) -> Any:
    """Text fields take their string option; other nullable fields null (optional parts stay out)."""
    kinds = [option.get("type") if isinstance(option, dict) else None for option in options]
    if name in TEXT_FIELDS and "string" in kinds:
        return options[kinds.index("string")]
    if "null" in kinds:
        return options[kinds.index("null")]
    return options[0]


def _text(seed: str, name: str) -> str:
    words = [hashlib.sha256(f"{seed}|{name}|{i}".encode()).hexdigest()[:8] for i in range(32)]
    if name == "question":
        return f"How do I handle {' '.join(words[:8])}?"
    return " ".join(words)


SERVE = "import sys; from sectune.bench.generate import serve; serve(float(sys.argv[1]))"


def serve(latency: float) -> None:
    """The fake server's process: print its base URL, serve until stdin closes (the bench ended or died)."""
    import sys

    from sectune.testing.fake_openai import FakeOpenAI

    with FakeOpenAI(responder=bench_responder, latency=latency) as fake:
        print(fake.base_url, flush=True)
        sys.stdin.read()


@contextmanager
def fake_server(latency: float) -> Iterator[str]:
    """The base URL of a fake server in a child process, up for the whole block (every tool uses it).

    A plain subprocess, not multiprocessing: no fork of a process that may hold torch's threads, and no
    re-import of the caller's main module (spawn would need an ``if __name__ == "__main__"`` guard there).
    """
    server = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(latency)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert server.stdout is not None and server.stdin is not None
    try:
        url = server.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"the fake server did not start (exit {server.wait(timeout=10)})")
        yield url
    finally:
        server.stdin.close()  # its signal to stop
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def write_topics(path: Path, count: int) -> Path:
    """``count`` topic paths in sectune's topics.jsonl shape (deepfabric's ``Tree.from_dict_list`` reads it too)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    areas = ("Network security", "Identity", "Cloud", "Endpoints", "Incident response", "Backups", "Email", "Logs")
    lines = [json.dumps({"path": ["Security", areas[i % len(areas)], f"Area {i}"]}) for i in range(count)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


# --- sectune ---------------------------------------------------------------------------------------------
def warm_up() -> None:
    """Import what a run imports (openai, datasketch: seconds on a busy 2-core machine) before timing."""
    import datasketch.lsh  # noqa: F401
    import openai  # noqa: F401

    from sectune.generate.engine import Engine  # noqa: F401


def engine_run(base_url: str, sizes: Sizes, folder: Path, topics: Path) -> tuple[float, float, dict]:
    """One ``sectune generate`` run through the Python API: (samples/s, CPU ms per sample, summary)."""
    from sectune.config import load_config
    from sectune.generate.api import generate
    from sectune.runs import read_json

    sets = {
        "provider": "openai",
        "model": "fake-model",
        "base_url": base_url,
        "num_samples": sizes.samples,
        "max_in_flight": sizes.in_flight,
        "topics": {"file": str(topics)},
        "formats": ["jsonl"],
    }
    cfg = load_config(None, [f"generate.{k}={json.dumps(v)}" for k, v in sets.items()])
    _fresh(folder)  # a run folder left by an earlier bench would be resumed, not generated
    start, cpu_start = time.perf_counter(), time.process_time()
    run_dir = generate(cfg, folder / "run")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    summary = read_json(run_dir / "summary.json")
    return summary["accepted"] / elapsed, 1000 * cpu / max(1, summary["accepted"]), summary


async def raw_client_rate(base_url: str, samples: int, in_flight: int) -> float:
    """Baseline: the same number of bare provider calls at the same concurrency, no engine around them."""
    from sectune.llm import get_provider

    provider = get_provider("openai", model="fake-model", base_url=base_url)
    semaphore = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with semaphore:
            await provider.complete([{"role": "user", "content": f"Topic: raw\nVariation: {i}"}], max_tokens=512)

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(samples)))
    elapsed = time.perf_counter() - start
    await provider.aclose()
    return samples / elapsed


def measure_sectune(base_url: str, sizes: Sizes, work: Path, topics: Path, say: Callable[[str], None]) -> dict:
    """Engine and bare client alternately ``repeat`` times (a noisy neighbour hits both): medians and runs."""
    warm_up()
    runs = []
    for repeat in range(sizes.repeat):
        folder = work / f"sectune-{repeat + 1}"
        rate, cpu_ms, summary = engine_run(base_url, sizes, folder, topics)
        raw = asyncio.run(raw_client_rate(base_url, sizes.samples, sizes.in_flight))
        runs.append({"rate": rate, "cpu_ms": cpu_ms, "raw_rate": raw, "accepted": summary["accepted"]})
        say(
            f"generate: sectune run {repeat + 1}/{sizes.repeat}: {summary['accepted']}/{summary['requested']} "
            f"samples, {summary['http_requests_this_session']} requests, {rate:.1f} samples/s = "
            f"{rate / sizes.ceiling:.3f} of the ceiling; bare client {raw:.1f}/s; CPU {cpu_ms:.2f} ms per sample"
        )
    return {
        "rate": statistics.median(r["rate"] for r in runs),
        "cpu_ms": statistics.median(r["cpu_ms"] for r in runs),
        "raw_rate": statistics.median(r["raw_rate"] for r in runs),
        "runs": runs,
    }


def sectune_measures(result: dict, sizes: Sizes) -> list[Measure]:
    rate, raw, cpu_ms = result["rate"], result["raw_rate"], result["cpu_ms"]
    setup = (
        f"{sizes.samples} samples, {sizes.in_flight} in flight, {sizes.latency * 1000:.0f} ms latency, "
        f"median of {sizes.repeat}"
    )
    details = {**result, "samples": sizes.samples, "latency_s": sizes.latency, "in_flight": sizes.in_flight}
    return [
        Measure(
            AREA,
            "samples/s vs ceiling",
            rate,
            "samples/s",
            baseline="ceiling (in-flight ÷ latency)",
            baseline_value=sizes.ceiling,
            target=f"≥ {RATIO_TARGET}",
            met=rate / sizes.ceiling >= RATIO_TARGET,
            note=f"{setup}; bare client {raw / sizes.ceiling:.3f} of the ceiling, engine/bare {rate / raw:.3f}",
            details=details,
        ),
        Measure(
            AREA,
            "CPU per sample",
            cpu_ms,
            "ms",
            target=f"< {CPU_MS_TARGET} ms",
            met=cpu_ms < CPU_MS_TARGET,
            note=f"one free core sustains ~{1000 / cpu_ms:.0f} samples/s; load {os.getloadavg()[0]:.1f}",
        ),
    ]


# --- peers -----------------------------------------------------------------------------------------------
def measure_peer(
    peer: Peer,
    sectune_rate: float,
    base_url: str,
    sizes: Sizes,
    work: Path,
    cache: Path,
    topics: Path,
    say: Callable[[str], None],
) -> Measure:
    """sectune's samples/s ÷ the peer's, same server, samples, topics and concurrency; met=None if it can't run."""
    target = PEER_TARGETS[peer.dist]
    row = Measure(
        AREA, f"samples/s vs {peer.dist}", sectune_rate, "samples/s", baseline=peer.label, target=f"≥ {target:g}×"
    )
    try:
        env = peer_env(cache, peer, install=sizes.install_peers, say=say)
        say(f"generate: {peer.label}: {sizes.samples} samples, {sizes.in_flight} in flight …")
        figures = run_peer(env, base_url, sizes, work, topics)
    except PeerUnavailable as exc:
        return replace(row, note=str(exc))
    rate = figures["samples"] / figures["seconds"] if figures["samples"] else 0.0
    cpu_ms = 1000 * figures["cpu_s"] / max(1, figures["samples"])
    say(f"generate: {peer.label}: {figures['samples']} samples in {figures['seconds']:.1f} s = {rate:.1f}/s")
    if not figures["samples"]:
        return replace(row, baseline_value=0.0, note=f"{peer.label} produced no sample: {figures['setting']}")
    ratio = sectune_rate / rate
    cpu = f"its process CPU {cpu_ms:.1f} ms/sample (imports included)"
    note = f"{figures['samples']}/{sizes.samples} samples; {cpu}; {figures['setting']}"
    return replace(row, baseline_value=rate, ratio=ratio, met=ratio >= target, note=note, details=figures)


def run_peer(env: PeerEnv, base_url: str, sizes: Sizes, work: Path, topics: Path) -> dict:
    """The peer's script in its venv; its JSON line plus wall and CPU seconds of the whole process."""
    folder = _fresh(work / env.peer.dist)  # curator's cache from an earlier bench would answer everything
    script = SCRIPTS_DIR / PEER_SCRIPTS[env.peer.dist]
    args = ["--base-url", base_url, "--samples", sizes.samples, "--in-flight", sizes.in_flight, "--topics", topics]
    isolated = {
        "OPENAI_API_KEY": "sk-bench-dummy",
        "OPENAI_BASE_URL": base_url,  # deepfabric 4.13 drops its base_url for provider openai; the client reads this
        "CURATOR_CACHE_DIR": str(folder / "curator-cache"),  # fresh each run: no answer comes from a cache
        "XDG_DATA_HOME": str(folder / "data-home"),  # deepfabric writes an id file there
        "HF_HOME": str(folder / "hf-home"),  # datasets' cache (curator builds its rows with from_generator)
    }
    # curator counts tokens with tiktoken, which downloads its encoding unless it finds litellm's bundled copy
    bundled = sorted(env.root.glob("lib/python*/site-packages/litellm/litellm_core_utils/tokenizers"))
    if bundled:
        isolated["TIKTOKEN_CACHE_DIR"] = str(bundled[0])
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        done = env.run([script, *map(str, args)], timeout=sizes.peer_timeout_s, env=isolated, cwd=folder)
    except subprocess.TimeoutExpired:
        raise PeerUnavailable(f"{env.peer.label} ran over {sizes.peer_timeout_s:.0f} s") from None
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    (folder / "stdout.txt").write_text(done.stdout, encoding="utf-8")
    (folder / "stderr.txt").write_text(done.stderr, encoding="utf-8")
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
        raise PeerUnavailable(f"{env.peer.label} failed (exit {done.returncode}): {last} (log: {folder})")
    figures = json.loads(lines[-1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {**figures, "process_wall_s": wall, "cpu_s": cpu}


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


# --- the local provider ----------------------------------------------------------------------------------
def local_prompts(count: int) -> list[list[dict[str, str]]]:
    subjects = ("a firewall rule", "phishing", "a VPN", "MFA", "ransomware", "backups", "IAM roles", "TLS")
    return [
        [{"role": "user", "content": f"Question {i}: explain {subjects[i % len(subjects)]} in two sentences."}]
        for i in range(count)
    ]


def measure_local(sizes: Sizes, work: Path, say: Callable[[str], None]) -> Measure:
    """Local provider tokens/s ÷ a bare batched ``generate`` loop, alternating, medians of ``local_repeat``."""
    row = Measure(
        AREA,
        "local provider tokens/s",
        None,
        "tokens/s",
        baseline=f"bare model.generate (batch {sizes.local_batch})",
        target=f"≥ {RATIO_TARGET}",
    )
    try:
        model_dir = _local_model_dir(sizes, work)
    except Exception as exc:  # no embedded model here (it is built from a PyPI wheel): a row, not a failure
        return replace(row, note=f"no local model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
    prompts = local_prompts(sizes.local_batch * sizes.local_batches)
    bare_model = _bare_load(model_dir)
    provider_rates, bare_rates = [], []
    provider_tokens = bare_tokens = 0
    _bare_generate(*bare_model, prompts[: sizes.local_batch], sizes)  # warm-up (first-call allocations)
    for repeat in range(sizes.local_repeat):  # alternating: a noisy neighbour hits both
        provider_tokens, seconds = asyncio.run(_provider_generate(model_dir, prompts, sizes))
        provider_rates.append(provider_tokens / seconds)
        bare_tokens, seconds = _bare_generate(*bare_model, prompts, sizes)
        bare_rates.append(bare_tokens / seconds)
        say(
            f"generate: local run {repeat + 1}/{sizes.local_repeat}: provider {provider_rates[-1]:.1f} tokens/s "
            f"({provider_tokens} tokens), bare generate {bare_rates[-1]:.1f} tokens/s ({bare_tokens} tokens)"
        )
    value, base = statistics.median(provider_rates), statistics.median(bare_rates)
    model_name = "tiny random model" if sizes.local_model == "tiny" else sizes.local_model
    note = (
        f"{model_name}, {len(prompts)} prompts, batch {sizes.local_batch}, {sizes.local_new_tokens} new tokens, "
        f"greedy, median of {sizes.local_repeat}; tokens {provider_tokens} vs {bare_tokens}"
    )
    details = {"provider_rates": provider_rates, "bare_rates": bare_rates, "model": str(model_dir)}
    return replace(row, value=value, baseline_value=base, met=value / base >= RATIO_TARGET, note=note, details=details)


def _local_model_dir(sizes: Sizes, work: Path) -> Path:
    if sizes.local_model == "tiny":
        from sectune.testing.tiny import build_tiny_model

        return build_tiny_model(work / "tiny-model")
    from sectune.models.load import resolve_model

    return Path(resolve_model(sizes.local_model).path)


async def _provider_generate(model_dir: Path, prompts: list, sizes: Sizes) -> tuple[int, float]:
    """All prompts to sectune's LocalProvider at once (it batches them); (completion tokens, seconds)."""
    from sectune.llm.local import LocalProvider

    provider = LocalProvider(model_dir, batch_size=sizes.local_batch)
    await provider._model()  # load before timing: the bare loop's load is not timed either
    try:
        start = time.perf_counter()
        done = await asyncio.gather(
            *(provider.complete(p, max_tokens=sizes.local_new_tokens, temperature=0.0) for p in prompts)
        )
        seconds = time.perf_counter() - start
    finally:
        await provider.aclose()
    return sum(c.completion_tokens for c in done), seconds


def _bare_load(model_dir: Path) -> tuple[Any, Any]:
    """The model as a plain transformers user loads it, in the dtype sectune picks for generation here."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sectune.hardware import fast_dtypes, torch_dtype

    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=torch_dtype(fast_dtypes().generation))
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    tokenizer.padding_side = "left"
    return model, tokenizer


def _bare_generate(model: Any, tokenizer: Any, prompts: list, sizes: Sizes) -> tuple[int, float]:
    """A bare loop: chat template, left-padded batches, greedy ``generate``; tokens up to and with the end token."""
    import torch

    texts = [tokenizer.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts]
    eos = model.generation_config.eos_token_id
    stops = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    tokens = 0
    start = time.perf_counter()
    for first in range(0, len(texts), sizes.local_batch):
        chunk = texts[first : first + sizes.local_batch]
        batch = tokenizer(chunk, return_tensors="pt", padding=True, add_special_tokens=False)  # the template has them
        with torch.inference_mode():
            out = model.generate(
                **batch,
                max_new_tokens=sizes.local_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.pad_token_id,
                eos_token_id=sorted(stops),
            )
        for row in out[:, batch["input_ids"].shape[1] :].tolist():
            end = next((i for i, tok in enumerate(row) if tok in stops), None)
            tokens += len(row) if end is None else end + 1
    return tokens, time.perf_counter() - start
