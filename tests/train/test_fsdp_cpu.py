"""2-process FSDP training (``accelerate launch`` with configs/accelerate/fsdp.yml, gloo on CPU) of `sectune train`.

Before training, a probe launched the same way runs one step of transformers' Trainer (the path `sectune train`
takes) and reports whether FSDP really wrapped the model, or the exception's first line. The test skips with
that finding when FSDP does not engage on CPU here, so a run that silently fell back to plain data parallel
(or to two independent processes) can never pass as an FSDP run. Where FSDP engages, LoRA and full training
must give the 1-process losses (FSDP's reduce-scatter sums the same gradients as one process, in another order;
every AdamW update is elementwise on the shard; clipping uses the norm over all shards), rank 0 alone writes
the run folder, and the saved adapter/model is whole (FULL_STATE_DICT gathered, not a shard).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.train.test_multiprocess import COMMON, _free_port, assert_two_processes_match_one

pytestmark = [
    pytest.mark.slow,
]

REPO = Path(__file__).resolve().parents[2]
ACCELERATE_CONFIGS = REPO / "configs" / "accelerate"

PROBE = """
import json, os, sys
from pathlib import Path

out = Path(sys.argv[2]) / f"probe-{os.environ.get('RANK', '0')}.json"
try:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments

    model = AutoModelForCausalLM.from_pretrained(sys.argv[1], dtype=torch.float32)
    ids = list(range(1, 9))
    rows = [{"input_ids": ids, "attention_mask": [1] * 8, "labels": ids}] * 4
    args = TrainingArguments(output_dir=sys.argv[2] + "/trainer", max_steps=1, per_device_train_batch_size=1,
                             report_to=[], save_strategy="no", logging_strategy="no")
    trainer = Trainer(model=model, args=args, train_dataset=rows)
    trainer.train()
    found = {
        "distributed_type": trainer.accelerator.distributed_type.value,
        "fsdp": bool(trainer.is_fsdp_enabled),
        "wrapped": type(trainer.model_wrapped).__name__,
    }
except Exception as error:
    found = {"error": f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"}
out.write_text(json.dumps(found))
"""


def cpu_variant(folder: Path, name: str = "fsdp.yml", **fsdp_settings) -> Path:
    """The shipped accelerate config, rewritten for this CPU run into ``folder``.

    mixed_precision: no, since the 1-process reference is fp32 (and this CPU has no native bf16). use_cpu stays
    false: with it, accelerate launch takes its simple launcher and starts one process.
    """
    config = yaml.safe_load((ACCELERATE_CONFIGS / name).read_text(encoding="utf-8"))
    config["mixed_precision"] = "no"
    config["num_processes"] = 2
    config["main_process_port"] = _free_port()
    config.get("fsdp_config", {}).update(fsdp_settings)
    target = folder / f"cpu-{len(fsdp_settings)}-{name}"
    target.write_text(yaml.safe_dump(config), encoding="utf-8")
    return target


def launch_command(config: Path, *script: str) -> list[str]:
    """`accelerate launch --config_file CONFIG SCRIPT...` (a file, or ``-m module`` and its arguments)."""
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), *script]


def sectune_train(dataset: Path, out: Path, sets: list[str]) -> list[str]:
    train = ["-m", "sectune", "train", str(dataset), "--out", str(out)]
    for item in sets:
        train += ["--set", item]
    return train


def run(command: list[str], **env: str) -> subprocess.CompletedProcess:
    """Run a launch to its end (OMP_NUM_THREADS=1: two ranks on two cores); fail with its stderr's tail."""
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_CONFIG_FILE": os.devnull, **env}
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def probe_fsdp(config: Path, model_dir: Path, folder: Path) -> dict:
    """One Trainer step under ``config``; what rank 0 found (or its exception's first line)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    environment = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_CONFIG_FILE": os.devnull}
    done = subprocess.run(launch_command(config, str(script), str(model_dir), str(folder)),
                          capture_output=True, text=True, timeout=300, env=environment)  # fmt: skip
    report = folder / "probe-0.json"
    if not report.is_file():  # the launcher itself failed: its last error line
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "Exception" in line]
        return {"error": errors[-1].strip() if errors else f"the launch exited {done.returncode}, no report"}
    return json.loads(report.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def fsdp_config(tiny_model_dir, tmp_path_factory) -> Path:
    """The FSDP config that engages on CPU here, or a skip that says what each attempt gave."""
    import accelerate
    import torch

    folder = tmp_path_factory.mktemp("fsdp-probe")
    attempts = {
        "fsdp.yml as shipped": {},
        # accelerate's FSDP plugin asks a GPU-type device for its current index when it syncs module states
        # (and RAM-efficient loading needs that sync): both off is the only CPU-capable setting
        "fsdp_sync_module_states and fsdp_cpu_ram_efficient_loading off": {
            "fsdp_sync_module_states": False,
            "fsdp_cpu_ram_efficient_loading": False,
        },
    }
    found = []
    for index, (label, settings) in enumerate(attempts.items()):
        config = cpu_variant(folder, **settings)
        result = probe_fsdp(config, tiny_model_dir, folder / f"attempt-{index}")
        if result.get("fsdp") and result.get("wrapped") == "FullyShardedDataParallel":
            return config
        what = result.get("error") or (
            f"no error, but FSDP is off: distributed_type {result['distributed_type']}, "
            f"Trainer.is_fsdp_enabled {result['fsdp']}, model wrapped as {result['wrapped']}"
        )
        found.append(f"{label} -> {what}")
    versions = f"torch {torch.__version__}, accelerate {accelerate.__version__}"
    pytest.skip(f"FSDP does not engage on CPU with gloo ({versions}): " + "; ".join(found))


def _listing(run: Path) -> set[str]:
    return {str(path.relative_to(run)) for path in run.rglob("*")}


def _tensor_shapes(folder: Path) -> dict[str, tuple[int, ...]]:
    from safetensors import safe_open

    shapes = {}
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), framework="pt") as tensors:
            shapes.update({key: tuple(tensors.get_slice(key).get_shape()) for key in tensors.keys()})  # noqa: SIM118
    return shapes


@pytest.mark.parametrize("method", ["lora", "full"])
def test_fsdp_two_processes_match_one_process(method, fsdp_config, tiny_model_dir, train_only_dataset, tmp_path):
    sets = [f"model={tiny_model_dir}", "seed=7", f"train.method={method}", *COMMON]
    single, double = tmp_path / "one", tmp_path / "two"
    run([sys.executable, *sectune_train(train_only_dataset, single, [*sets, "train.batch_size=4"])])
    run(launch_command(fsdp_config, *sectune_train(train_only_dataset, double, [*sets, "train.batch_size=2"])))

    assert_two_processes_match_one(single, double)
    assert _listing(double) == _listing(single)  # rank 0 alone wrote it: nothing extra, nothing per rank
    saved = "model" if method == "full" else "adapter"
    shapes = _tensor_shapes(double / saved)
    assert shapes and shapes == _tensor_shapes(single / saved)  # gathered whole, not rank 0's shard
