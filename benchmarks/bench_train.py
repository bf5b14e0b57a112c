"""LoRA on SmolLM2-135M (CPU): sectune's training defaults vs trl's defaults, same data, same steps.

A thin wrapper over ``sectune.bench.train`` (``sectune bench --only train`` runs the same code and also
measures QLoRA, full fine-tuning, MFU and the memory plan). Each variant runs in its own subprocess so that its
peak RSS is its own. Prints tokens/s, peak RSS and the ratio against trl's defaults. Data: the seed's rows from
../shared when present, else synthetic rows of the same shape.
Usage: .venv/bin/python benchmarks/bench_train.py [--steps 8] [--rows 100] [--variants trl,lora,qlora,full]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from sectune.bench.train import VARIANTS, Job, Sizes, compare, run_variant

DEFAULT_VARIANTS = ("trl", "lora")  # what this script always compared; --variants adds the others


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=Sizes().steps)
    parser.add_argument("--rows", type=int, default=Sizes().rows)
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"any of {', '.join(VARIANTS)}")
    parser.add_argument("--child", choices=["sectune", "trl"], help="one variant only (with --dataset, --out)")
    parser.add_argument("--dataset", type=Path, help="with --child: a dataset folder (train.jsonl)")
    parser.add_argument("--out", type=Path, help="with --child: that variant's folder")
    args = parser.parse_args()
    if args.child:  # one variant in its own process: prints one RESULT line
        if not (args.dataset and args.out):
            parser.error("--child sectune|trl needs --dataset and --out")
        job = Job("lora" if args.child == "sectune" else "trl", args.dataset, args.out, args.steps)
        print("RESULT " + json.dumps(run_variant(job)))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory() as tmp:
        compared = compare(Path(tmp), Sizes(steps=args.steps, rows=args.rows), variants=variants)
    results = compared["variants"]
    base = results.get("trl")
    for variant, result in results.items():
        ratio = f" ({result['tokens_per_s'] / base['tokens_per_s']:.2f}×)" if base else ""
        print(
            f"{variant:6s} {result['tokens_per_s']:7.1f} tok/s{ratio}  peak RSS {result['peak_rss_gb']:.2f} GB"
            f"  [{result['settings']}]"
        )


if __name__ == "__main__":
    main()
