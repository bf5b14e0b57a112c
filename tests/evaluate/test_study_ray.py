"""`study.executor: ray`: the cells as Ray tasks on a local 2-CPU instance give the local executor's report;
a study killed after one cell reruns only the other; a missing Ray or a wrong executor is refused."""

from __future__ import annotations

import builtins
import json
import os
import re
import shutil

import pytest
from tests.evaluate.test_study import TINY

from sectune.config import load_config
from sectune.errors import UserError

# Two trained variants of the tiny model, fp32 (the same numbers whatever the CPU's bf16 support).
TWO_VARIANTS = [*TINY, "study.variants=[lora,full]", "train.precision=fp32"]
# report.json keys that measure the run rather than the model: training time, throughput, memory, cost.
MEASURED = re.compile(r"runtime|_per_s(econd)?$|memory|cost|time")


def without_measurements(value):
    """``value`` with every key naming a time, rate, memory or cost dropped, at any depth."""
    if isinstance(value, dict):
        return {k: without_measurements(v) for k, v in value.items() if not MEASURED.search(k)}
    if isinstance(value, list):
        return [without_measurements(v) for v in value]
    return value


def test_without_measurements_drops_timings_at_any_depth_and_nothing_else():
    training = {"train_runtime_s": 1.0, "tokens_per_s": 2.0, "peak_memory_mb": 3.0, "peak_memory_kind": "rss"}
    training |= {"estimated_cost_usd": 4.0, "eval_loss": 5.0, "trainable_params": 6}
    report = {"variants": [{"training": training, "log_history": [{"loss": 7.0, "train_samples_per_second": 8.0}]}]}
    kept = {"training": {"eval_loss": 5.0, "trainable_params": 6}, "log_history": [{"loss": 7.0}]}
    assert without_measurements(report) == {"variants": [kept]}


@pytest.fixture
def two_cell_dataset(tiny_dataset):
    test = (tiny_dataset / "test.jsonl").read_text()
    (tiny_dataset / "train.jsonl").write_text(test * 3)
    (tiny_dataset / "validation.jsonl").write_text("".join(test.splitlines(keepends=True)[:2]))
    return tiny_dataset


@pytest.fixture
def ray_two_cpus():
    """A local Ray instance on 2 CPUs in this process (the study uses it as is and leaves it running)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sectune[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _report(out):
    return json.loads((out / "report" / "report.json").read_text())


def _tasks(out):
    return json.loads((out / "summary.json").read_text())["tasks"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_two_variants_as_ray_tasks_at_once_give_the_local_report(
    ray_two_cpus, tiny_model_dir, two_cell_dataset, tmp_path, monkeypatch
):
    import torch

    from sectune.study.api import study

    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))
    sets = [f"model={tiny_model_dir}", *TWO_VARIANTS]
    study(load_config(None, [*sets, "study.executor=ray"]), two_cell_dataset, tmp_path / "ray")
    assert ray_two_cpus.is_initialized()  # a Ray the study did not start is left running

    tasks = _tasks(tmp_path / "ray")
    lora, full = tasks.pop(f"{tiny_model_dir.name}/lora"), tasks.pop(f"{tiny_model_dir.name}/full")
    assert tasks == {}
    assert {lora["executor"], full["executor"]} == {"ray"}
    assert os.getpid() not in {lora["pid"], full["pid"]} and lora["pid"] != full["pid"]  # two Ray workers
    assert max(lora["started"], full["started"]) < min(lora["ended"], full["ended"])  # at the same time
    assert not lora["reused_run"] and not full["reused_run"]

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each Ray task (1 CPU each): the same summation order in every matmul
    try:
        study(load_config(None, sets), two_cell_dataset, tmp_path / "local")
    finally:
        torch.set_num_threads(threads)
    assert {t["executor"] for t in _tasks(tmp_path / "local").values()} == {"local"}
    ray_report, local_report = _report(tmp_path / "ray"), _report(tmp_path / "local")
    assert all(v["training"]["train_runtime_s"] > 0 for v in ray_report["variants"])  # timings were there
    assert ray_report["variants"][0]["log_history"]
    assert without_measurements(ray_report) == without_measurements(local_report)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_killed_ray_study_reruns_only_the_unfinished_cell(tiny_model_dir, two_cell_dataset, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'sectune[ray]')")
    from sectune.study.api import study

    monkeypatch.setenv("SECTUNE_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "study"
    cfg = load_config(None, [f"model={tiny_model_dir}", *TWO_VARIANTS, "study.executor=ray"])
    study(cfg, two_cell_dataset, out)
    assert not ray.is_initialized()  # the local instance the study started is shut down
    first = _report(out)

    # as if killed before the full fine-tune published its run (2 steps: no checkpoint to resume from)
    name = tiny_model_dir.name
    shutil.rmtree(out / "runs" / f"{name}-full")
    shutil.rmtree(out / "evals" / f"{name}-full")
    shutil.rmtree(out / "report")
    kept = {p: p.stat().st_mtime_ns for p in (out / "runs" / f"{name}-lora", out / "evals" / f"{name}-lora")}
    kept |= {p: p.stat().st_mtime_ns for folder in list(kept) for p in folder.rglob("*") if p.is_file()}

    study(cfg, two_cell_dataset, out)
    tasks = _tasks(out)
    assert tasks[f"{name}/lora"]["reused_run"] and tasks[f"{name}/lora"]["reused_eval"]
    assert not tasks[f"{name}/full"]["reused_run"] and not tasks[f"{name}/full"]["reused_eval"]
    assert {p: p.stat().st_mtime_ns for p in kept} == kept  # nothing of the finished cell was rewritten
    assert (out / "runs" / f"{name}-full" / "summary.json").is_file()
    assert without_measurements(_report(out)) == without_measurements(first)


def test_an_unknown_executor_is_refused_with_the_valid_ones():
    with pytest.raises(UserError, match=r"study\.executor.*'local'.*'ray'"):
        load_config(None, ["study.executor=dask"])
    with pytest.raises(UserError, match=r"study\.ray_num_cpus"):
        load_config(None, ["study.executor=ray", "study.ray_num_cpus=0"])


def test_the_ray_executor_without_ray_names_the_key_and_the_install(tiny_dataset, tmp_path, monkeypatch):
    from sectune.study.api import study

    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(UserError) as err:
        study(load_config(None, ["study.executor=ray", "study.variants=[base]"]), tiny_dataset, tmp_path / "out")
    message = str(err.value)
    assert "study.executor" in message and "pip install 'sectune[ray]'" in message and "\n" not in message
    assert not (tmp_path / "out").exists()  # refused before any cell ran
