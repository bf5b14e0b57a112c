"""Where a sectune training step spends its time: torch.profiler over sectune's own training path.

Trains the embedded model with sectune's defaults (the seed's rows when ../shared has them, else synthetic
rows shaped like them) and profiles the optimizer steps after the first (the first warms the allocator and
the kernels). Prints the ops by self CPU time, and trl's/sectune's LM head inclusive time beside them.
Usage: .venv/bin/python benchmarks/profile_train.py [--method lora] [--steps 3] [--set train.x=y ...] [--top 15]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from sectune.bench.train import Job, Sizes, train_sectune, write_dataset

HEADS = ("ChunkedLogProbFunction", "_Function")  # trl's fused head, sectune's kept-gradient head (lm_head.py)


def profiled_train(make_trainer, warmup_steps: int):
    """sectune.train.run.make_trainer, with the trainer's steps after ``warmup_steps`` under the profiler."""
    import torch
    from transformers import TrainerCallback

    box: dict = {}

    class Profile(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == warmup_steps and "profiler" not in box:
                box["profiler"] = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
                box["profiler"].__enter__()

        def on_train_end(self, args, state, control, **kwargs):
            if "profiler" in box:
                box["profiler"].__exit__(None, None, None)

    def wrapped(*args, **kwargs):
        trainer = make_trainer(*args, **kwargs)
        trainer.add_callback(Profile())
        return trainer

    return wrapped, box


def report(profiler, top: int) -> None:
    events = profiler.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"self CPU {total / 1e6:.1f} s over the profiled steps")
    for event in sorted(events, key=lambda e: e.self_cpu_time_total, reverse=True)[:top]:
        print(f"  {event.key:48s} {event.self_cpu_time_total / 1e6:7.2f} s  {event.self_cpu_time_total / total:6.1%}")
    for event in events:
        if any(head in event.key for head in HEADS):
            share = event.cpu_time_total / total
            print(f"  [inclusive] {event.key:36s} {event.cpu_time_total / 1e6:7.2f} s  {share:6.1%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--method", default="lora", choices=["lora", "qlora", "full"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--rows", type=int, default=Sizes().rows)
    parser.add_argument("--set", dest="sets", action="append", default=[], help="a config override, k=v")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()

    import sectune.train.run as run

    run.make_trainer, box = profiled_train(run.make_trainer, warmup_steps=1)
    with tempfile.TemporaryDirectory() as tmp:
        dataset, source = write_dataset(Path(tmp) / "data", Sizes(rows=args.rows))
        result = train_sectune(Job(args.method, dataset, Path(tmp) / "out", args.steps, sets=tuple(args.sets)))
    speed = f"{result['tokens_per_s']:.1f} tok/s over all {args.steps} steps"
    print(f"{args.method}: {speed} ({source}; {result['settings']})")
    report(box["profiler"], args.top)


if __name__ == "__main__":
    main()
