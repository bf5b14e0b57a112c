"""LoRA on SmolLM2-135M (CPU): sectune's training defaults vs trl's defaults, same data, same steps.

Each variant runs in its own subprocess so that its peak RSS is its own. Prints tokens/s, peak RSS and
the ratio against trl's defaults. Data: the seed's rows from ../shared when present, else synthetic rows of the
same shape. Usage: .venv/bin/python benchmarks/bench_train.py [--steps 8] [--rows 100]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SEED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "seed" / "output_01.jsonl"


def write_dataset(folder: Path, rows: int) -> tuple[Path, str]:
    """The seed's GPT-4o rows when ../shared is there, else synthetic rows of the same shape and lengths."""
    if SEED_DATA.is_file():
        lines, source = SEED_DATA.read_text(encoding="utf-8").splitlines()[:rows], f"{SEED_DATA.name} (seed)"
    else:
        lines, source = [json.dumps(row) for row in synthetic_rows(rows)], "synthetic rows shaped like the seed's"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder, source


def synthetic_rows(count: int, seed: int = 0) -> list[dict]:
    """Two-turn rows like the seed's (questions ~16 words, answers 60-230 words), words from the packaged MCQ set.

    Throughput depends on lengths and turns, not on meaning; this keeps the benchmark runnable without ../shared.
    """
    import random
    from importlib.resources import files

    questions = json.loads((files("sectune.resources") / "benchmarks" / "cyber-mini.json").read_text())["questions"]
    words = sorted({w for q in questions for text in [q["question"], *q["answers"].values()] for w in text.split()})
    rng = random.Random(seed)

    def turn() -> list[dict]:
        question = rng.choice(questions)["question"]
        answer = " ".join(rng.choices(words, k=rng.randint(60, 230)))
        return [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]

    system = {"role": "system", "content": "You are a helpful cybersecurity and IT support assistant."}
    return [{"messages": [system, *turn(), *turn()]} for _ in range(count)]


def run_sectune(dataset: Path, out: Path, steps: int) -> dict:
    from sectune.config import load_config
    from sectune.train.api import train

    cfg = load_config(None, ["train.method=lora", f"train.max_steps={steps}", "train.stop_check.enabled=false"])
    run = train(cfg, dataset, out)
    summary = json.loads((run / "summary.json").read_text())
    return {"tokens_per_s": summary["tokens_per_s"], "settings": _settings(cfg.train)}


def _settings(train) -> str:
    from sectune.train.model import resolve_batch

    batch, accum = resolve_batch(train.batch_size, train.grad_accum)
    return (
        f"batch {batch}×{accum}, padding_free={train.padding_free}, "
        f"precision={train.precision}, checkpointing={train.gradient_checkpointing}"
    )


def run_trl_defaults(dataset: Path, out: Path, steps: int) -> dict:
    """The same model and LoRA through trl with its own defaults (checkpointing on, padded batches of 8 rows:
    the same 8 rows per update as sectune's default)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from sectune.config import load_config
    from sectune.train.data import read_dataset
    from sectune.train.model import build_model, resolve_precision

    cfg = load_config(None, ["train.method=lora"])
    from sectune.models.load import load_tokenizer

    tokenizer = load_tokenizer(cfg.model)
    built = build_model(cfg.model, cfg.train, precision=resolve_precision("auto"), gradient_checkpointing=True)
    rows, _, _ = read_dataset(dataset)
    args = SFTConfig(
        output_dir=str(out),
        max_steps=steps,
        learning_rate=cfg.train.learning_rate,
        assistant_only_loss=True,
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        include_num_input_tokens_seen="non_padding",
    )
    trainer = SFTTrainer(
        model=built.model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )
    started = time.perf_counter()
    trainer.train()
    runtime = time.perf_counter() - started
    settings = (
        f"trl SFTConfig defaults: batch {args.per_device_train_batch_size}×{args.gradient_accumulation_steps}, "
        f"checkpointing={args.gradient_checkpointing}, bf16={args.bf16}, padded"
    )
    return {"tokens_per_s": trainer.state.num_input_tokens_seen / runtime, "settings": settings}


def child(variant: str, dataset: Path, out: Path, steps: int) -> None:
    result = (run_sectune if variant == "sectune" else run_trl_defaults)(dataset, out, steps)
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--child", choices=["sectune", "trl"])
    parser.add_argument("--dataset", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.dataset, args.out, args.steps)
        return
    with tempfile.TemporaryDirectory() as tmp:
        dataset, source = write_dataset(Path(tmp) / "dataset", args.rows)
        print(f"data: {args.rows} rows, {source}; {args.steps} steps each")
        results = {}
        for variant in ("trl", "sectune"):
            command = [sys.executable, __file__, "--child", variant, "--dataset", str(dataset)]
            command += ["--out", str(Path(tmp) / variant), "--steps", str(args.steps)]
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
            results[variant] = json.loads(line[len("RESULT ") :])
    base = results["trl"]
    for variant, result in results.items():
        print(
            f"{variant:8s} {result['tokens_per_s']:7.1f} tok/s ({result['tokens_per_s'] / base['tokens_per_s']:.2f}×)"
            f"  peak RSS {result['peak_rss_mb'] / 1024:.2f} GB  [{result['settings']}]"
        )


if __name__ == "__main__":
    main()
