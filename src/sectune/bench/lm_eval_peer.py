"""Score sectune's MCQ prompts with lm-evaluation-harness; run by ``sectune.bench.eval`` inside lm-eval's venv.

This file imports nothing from sectune (lm-eval's venv has no sectune). Usage: ``python lm_eval_peer.py SPEC OUT``.

SPEC (JSON): ``{"model": dir, "batch_size": 8, "repeats": 3, "tasks": {name: [doc, ...]}}``; each doc holds
sectune's exact ``prompt`` (the rendered chat prompt), its continuation strings ``choices``, the gold index
``target`` and ``tokens``, the number of continuation tokens sectune scores per choice.

Each task is a programmatic ``ConfigurableTask`` over those docs (``doc_to_text``/``doc_to_choice``/
``doc_to_target`` read the fields as they are; ``target_delimiter`` is empty), run with ``evaluator.evaluate``
on an ``HFLM`` (fp32, CPU, no BOS: sectune adds no special tokens). What is timed: each ``evaluate`` call
(building the requests, tokenising, the forward passes, the metrics), and inside it ``lm.loglikelihood``
alone; the model load is timed apart.

lm-eval moves a context's trailing whitespace into the continuation (``"\\n" + "A"`` after a chat prompt that
ends with a newline), so its log-likelihoods include that newline's log-prob. Per question it is the same for
every choice; it is measured once (one more ``loglikelihood`` request, untimed) and subtracted, so that the
per-token mean ranks the choices by exactly sectune's definition. lm-eval's own ``acc`` (sum) and
``acc_norm`` (per byte) picks are reported beside it.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import metadata
from typing import Any


def main(spec_path: str, out_path: str) -> None:
    with open(spec_path, encoding="utf-8") as handle:
        spec = json.load(handle)
    import datasets
    import torch
    from lm_eval import evaluator
    from lm_eval.api.instance import Instance
    from lm_eval.api.task import ConfigurableTask
    from lm_eval.models.huggingface import HFLM

    datasets.disable_progress_bars()
    started = time.perf_counter()
    lm = HFLM(
        pretrained=spec["model"],
        backend="causal",
        dtype="float32",
        device="cpu",
        batch_size=int(spec["batch_size"]),
        add_bos_token=False,
    )
    load_s = time.perf_counter() - started
    inner: list[float] = []
    original = lm.loglikelihood

    def timed(requests: list[Any], *args: Any, **kwargs: Any) -> Any:
        begin = time.perf_counter()
        try:
            return original(requests, *args, **kwargs)
        finally:
            inner.append(time.perf_counter() - begin)

    def request(context: str, continuation: str) -> Any:
        return Instance(request_type="loglikelihood", doc={}, arguments=(context, continuation), idx=0)

    first = next(iter(spec["tasks"].values()))[0]
    original([request(first["prompt"], first["choices"][0])], disable_tqdm=True)  # warm-up, untimed
    lm.loglikelihood = timed

    result: dict[str, Any] = {
        "versions": {name: metadata.version(name) for name in ("lm_eval", "torch", "transformers", "datasets")},
        "threads": torch.get_num_threads(),
        "load_s": load_s,
        "tasks": {},
    }
    for name, docs in spec["tasks"].items():
        seconds, inner_seconds, task = [], [], None
        for _ in range(int(spec["repeats"])):
            task = _task(ConfigurableTask, datasets, f"sectune_mcq_{name}", docs)  # built before the clock
            inner.clear()
            begin = time.perf_counter()
            evaluator.evaluate(lm, {task.config.task: task}, bootstrap_iters=0, log_samples=True)
            seconds.append(time.perf_counter() - begin)
            inner_seconds.append(sum(inner))
        result["tasks"][name] = {
            "seconds": seconds,
            "loglikelihood_seconds": inner_seconds,
            **_predictions(lm, original, request, task, docs),
        }
    with open(out_path, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1)


def _task(task_class: Any, datasets: Any, name: str, docs: list[dict[str, Any]]) -> Any:
    def dataset(**_: Any) -> Any:
        return datasets.DatasetDict({"test": datasets.Dataset.from_list(docs)})

    return task_class(
        config={
            "task": name,
            "custom_dataset": dataset,
            "test_split": "test",
            "output_type": "multiple_choice",
            "doc_to_text": "prompt",
            "doc_to_choice": "choices",
            "doc_to_target": "target",
            "target_delimiter": "",
            "num_fewshot": 0,
            "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
        }
    )


def _predictions(lm: Any, loglikelihood: Any, request: Any, task: Any, docs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per question: the choice log-likelihoods lm-eval computed, its picks, and the sectune-rule pick."""
    scores: list[list[float]] = [[0.0] * len(doc["choices"]) for doc in docs]
    mismatched_prompts = 0
    for instance in task.instances:
        doc = docs[instance.doc_id]
        context, continuation = instance.arguments
        mismatched_prompts += context != doc["prompt"] or continuation != doc["choices"][instance.idx]
        scores[instance.doc_id][instance.idx] = float(instance.resps[0][0])
    cores = [doc["prompt"].rstrip() for doc in docs]
    tails = [doc["prompt"][len(core) :] for doc, core in zip(docs, cores, strict=True)]
    moved = [request(core, tail) for core, tail in zip(cores, tails, strict=True) if tail]
    moved_ll = iter(ll for ll, _ in loglikelihood(moved, disable_tqdm=True))
    newline = [next(moved_ll) if tail else 0.0 for tail in tails]
    token_mismatches = 0
    means, picks, acc, acc_norm = [], [], [], []
    for doc, core, tail, lls, offset in zip(docs, cores, tails, scores, newline, strict=True):
        extra = len(lm._encode_pair(core, tail)[1]) if tail else 0  # the tokens of the moved whitespace
        for choice, count in zip(doc["choices"], doc["tokens"], strict=True):
            token_mismatches += len(lm._encode_pair(doc["prompt"], choice)[1]) - extra != count
        row = [(ll - offset) / max(count, 1) for ll, count in zip(lls, doc["tokens"], strict=True)]
        means.append(row)
        picks.append(_argmax(row))
        acc.append(_argmax(lls))
        acc_norm.append(_argmax([ll / len(c.encode("utf-8")) for ll, c in zip(lls, doc["choices"], strict=True)]))
    return {
        "loglikelihoods": scores,
        "moved_whitespace_loglikelihood": newline,
        "mean_logprob": means,
        "predictions": picks,
        "acc_predictions": acc,
        "acc_norm_predictions": acc_norm,
        "prompt_mismatches": int(mismatched_prompts),
        "token_count_mismatches": int(token_mismatches),
    }


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # ties: the first, as sectune picks


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    main(sys.argv[1], sys.argv[2])
