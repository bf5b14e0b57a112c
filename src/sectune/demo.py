"""`sectune demo`: the whole pipeline on the embedded model with small sizes (offline, 2-core CPU).

generate (a few samples from a small topic tree) → prep → study (train LoRA for a few steps, then
evaluate base vs LoRA on held-out rows and the packaged cyber MCQ set) → report. Each stage writes its
own folder under ``out``; a finished stage (``sectune.runs.is_finished``) is reused, so re-running the demo
continues where it stopped.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from sectune.config import ExperimentConfig, apply_override, read_yaml, validate_config
from sectune.registry.refs import check_model_refs
from sectune.runs import is_finished

DEMO_CONFIG = Path(str(resources.files("sectune") / "resources" / "demo.yaml"))
# A small hand-written topic tree (3 domains × 4 subtopics): the 135M model builds poor trees itself.
DEMO_TOPICS = Path(str(resources.files("sectune") / "resources" / "demo-topics.jsonl"))


def demo_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """The packaged demo experiment, with the user's YAML (deep-merged) and --set overrides on top."""
    data = read_yaml(DEMO_CONFIG)
    if path:
        deep_merge(data, read_yaml(path))
    for item in overrides:
        apply_override(data, item)
    cfg = validate_config(data, source=path or DEMO_CONFIG, overrides=overrides)
    return check_model_refs(cfg, source=path or DEMO_CONFIG, overrides=overrides)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value


def _say(text: str) -> None:
    print(text, flush=True)  # flushed: a log file shows each stage as it starts


def run_demo(cfg: ExperimentConfig, out: str | Path, *, say: Callable[[str], None] | None = None) -> Path:
    """Run every stage into ``out`` and return the report folder."""
    from sectune.api import generate, prepare, study
    from sectune.generate.store import SAMPLES_FILE
    from sectune.study.api import REPORT_DIR

    say = say or _say
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    # --- 1. generate: samples for each leaf of a topic tree, with the in-process embedded model -------------
    samples_dir = out / "generate"
    if not is_finished(samples_dir):
        say(f"[1/3] generate → {samples_dir}")
        resume = (samples_dir / "config.yaml").is_file()
        topics = None if cfg.generate.topics.file else DEMO_TOPICS
        generate(cfg, samples_dir, resume=resume, topics_file=topics)
        gc.collect()  # the generation model is released: give its memory back before training
    samples = samples_dir / SAMPLES_FILE

    # --- 2. prep: validate, dedup, split, render for the model ---------------------------------------------
    dataset = out / "dataset"
    if not is_finished(dataset):
        say(f"[2/3] prep → {dataset}")
        prepare(cfg, samples, dataset)

    # --- 3. study: train LoRA (reused when finished), evaluate base and LoRA, write the report --------------
    say(f"[3/3] train + evaluate + report → {out / 'study'}")
    report = study(cfg, dataset, out / "study") / REPORT_DIR
    say(f"demo finished in {time.perf_counter() - started:.0f} s: {report}")
    return report
