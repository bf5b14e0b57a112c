"""The multi-node launch files: the accelerate config parses, and the Slurm script, run with stand-ins for
srun/scontrol/accelerate, starts one `accelerate launch` per node that accelerate's own parser accepts, with
each node's rank, the main node's address and the total process count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SBATCH = ROOT / "configs" / "slurm" / "train-2-nodes.sbatch"
MULTI_NODE = ROOT / "configs" / "accelerate" / "multi-node.yml"

# srun runs its command once per node, as Slurm would, with that node's SLURM_NODEID
SRUN = """#!/bin/bash
while [[ "$1" == --* ]]; do shift; done
for node in 0 1; do SLURM_NODEID=$node SLURM_NNODES=2 "$@" || exit 1; done
"""
SCONTROL = """#!/bin/bash
printf 'gpu-node-07\\ngpu-node-08\\n'
"""
# accelerate: parse the launch with accelerate's own parser and record what each node would start
ACCELERATE = """#!{python}
import json, os, sys
from accelerate.commands.launch import launch_command_parser
assert sys.argv[1] == "launch", sys.argv
args = launch_command_parser().parse_args(sys.argv[2:])
record = {{key: getattr(args, key) for key in ("config_file", "num_machines", "num_processes", "machine_rank",
          "main_process_ip", "main_process_port", "module", "training_script", "training_script_args")}}
with open(os.environ["LAUNCHES"], "a") as handle:
    handle.write(json.dumps(record) + "\\n")
"""


def _stand_ins(folder: Path) -> Path:
    folder.mkdir()
    for name, text in (("srun", SRUN), ("scontrol", SCONTROL), ("accelerate", ACCELERATE)):
        path = folder / name
        path.write_text(text.format(python=sys.executable) if name == "accelerate" else text)
        path.chmod(0o755)
    return folder


def test_the_multi_node_config_is_two_machines_with_a_main_address():
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(MULTI_NODE))
    assert (config.num_machines, config.machine_rank, config.main_process_port) == (2, 0, 29500)
    assert config.main_process_ip and config.num_processes % config.num_machines == 0


def test_the_slurm_script_launches_one_accelerate_per_node_with_its_rank(tmp_path):
    bin_dir = _stand_ins(tmp_path / "bin")
    launches = tmp_path / "launches.jsonl"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "LAUNCHES": str(launches),
           "SLURM_JOB_NODELIST": "gpu-node-[07-08]", "RESUME": "1"}  # fmt: skip
    done = subprocess.run(["bash", str(SBATCH), "runs/data", "configs/exp.yaml", "runs/out"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr

    nodes = [json.loads(line) for line in launches.read_text().splitlines()]
    assert [node["machine_rank"] for node in nodes] == [0, 1]
    for node in nodes:
        assert (ROOT / node["config_file"]).resolve() == MULTI_NODE
        assert (node["num_machines"], node["num_processes"], node["main_process_port"]) == (2, 16, 29500)
        assert node["main_process_ip"] == "gpu-node-07"  # the first host of the allocation
        assert node["module"] and node["training_script"] == "sectune"
        assert node["training_script_args"] == ["train", "runs/data", "--config", "configs/exp.yaml", "--out",
                                                "runs/out", "--resume"]  # fmt: skip


def test_the_slurm_script_refuses_missing_arguments(tmp_path):
    done = subprocess.run(["bash", str(SBATCH)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "usage: sbatch train-2-nodes.sbatch" in done.stderr
