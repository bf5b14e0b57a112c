"""The `sectune bench` harness: areas, the table, bench.json, a failing area. No figure is asserted here."""

import json
import subprocess
import sys
import types

import pytest

from sectune.bench import Measure, runner
from sectune.errors import UserError


def test_areas_come_in_table_order_and_unknown_ones_are_refused():
    assert runner.parse_areas(None) == runner.AREAS
    assert runner.parse_areas("train, startup") == ("startup", "train")
    with pytest.raises(UserError, match=r"--only: unknown area bogus; choose from startup"):
        runner.parse_areas("train,bogus")


def test_an_unknown_area_is_one_line_exit_2_and_writes_nothing(tmp_path):
    out = tmp_path / "bench"
    result = subprocess.run(
        [sys.executable, "-m", "sectune", "bench", "--only", "gpu,nope", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown area nope" in result.stderr
    assert not out.exists()


def test_ratio_is_value_over_baseline_unless_the_area_set_it():
    assert Measure("x", "m", 6.0, "t/s", baseline="b", baseline_value=2.0).with_ratio().ratio == 3.0
    assert Measure("x", "m", 6.0, "t/s", baseline_value=2.0, ratio=0.5).with_ratio().ratio == 0.5
    assert Measure("x", "m", None, "t/s", baseline_value=2.0).with_ratio().ratio is None


def test_a_failing_area_is_a_row_and_the_others_still_run(tmp_path, monkeypatch):
    def broken(ctx):
        raise RuntimeError("peer venv could not be created\nsecond line")

    def working(ctx):
        (ctx.work / "scratch.txt").write_text("x")
        return [Measure("generate", "samples/s", 300.0, "samples/s", baseline="ceiling", baseline_value=320.0)]

    areas = {"sectune.bench.train": broken, "sectune.bench.generate": working}
    monkeypatch.setattr(runner.importlib, "import_module", lambda name: types.SimpleNamespace(run=areas[name]))
    result = runner.run_bench(tmp_path / "out", areas=("generate", "train"), cache=tmp_path / "cache")

    written = json.loads((tmp_path / "out" / runner.RESULT_FILE).read_text())
    assert written == result
    generate, train = written["measures"]
    assert generate["ratio"] == pytest.approx(300 / 320)
    assert train["name"] == "(failed)" and train["met"] is None
    assert train["note"].startswith("peer venv could not be created (traceback: ")
    assert "RuntimeError" in (tmp_path / "out" / "train" / "error.txt").read_text()
    assert (tmp_path / "out" / "generate" / "scratch.txt").is_file()


def test_the_machine_is_described_beside_the_figures():
    machine = runner.describe_machine()
    assert machine["cores"] >= 1 and machine["cpu"]
    assert machine["precision"]["train_precision"] in {"bf16", "fp16", "fp32"}
    assert "torch" in machine["versions"]


def test_startup_area_measures_help_and_checks_the_api_imports_no_torch(tmp_path, capsys):
    result = runner.run_bench(tmp_path, areas=("startup",), quick=True, cache=tmp_path / "cache")
    help_row, import_row = result["measures"]
    assert help_row["name"] == "sectune --help"
    assert help_row["value"] > 0 and help_row["baseline_value"] > 0  # measured, not judged: no timed assertion
    assert import_row["met"] is True, import_row["note"]  # sectune.api must not pull torch in
    runner.print_table(result)
    shown = capsys.readouterr().out
    assert result["machine"]["cpu"] in shown and "sectune --help" in shown
    assert f"training in {result['machine']['precision']['train_precision']}" in shown


@pytest.mark.slow
def test_quick_generate_and_eval_areas_measure_without_installing_a_peer(tmp_path):
    """Every row of the two areas comes back; with no peer venv in the cache, the peers are skipped, saying so."""
    result = runner.run_bench(tmp_path / "out", areas=("generate", "eval"), quick=True, cache=tmp_path / "cache")
    rows = {(m["area"], m["name"]): m for m in result["measures"]}
    assert not [m for m in result["measures"] if m["name"] == "(failed)"], result["measures"]
    engine = [m for m in rows.values() if m["area"] == "generate" and (m["baseline"] or "").startswith("ceiling")]
    assert engine and engine[0]["value"] > 0 and 0 < engine[0]["ratio"] <= 1.0  # nobody beats the ceiling
    peer_names = ("deepfabric", "bespokelabs-curator", "lm-eval")
    peers = [m for m in rows.values() if (m["baseline"] or "").startswith(peer_names)]
    assert len(peers) == 6 and all(m["met"] is None and m["note"] for m in peers)  # not installed by --quick
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").rglob("pyvenv.cfg"))
    heldout = [m for m in rows.values() if m["area"] == "eval" and m["baseline"] == "one at a time"]
    assert heldout and heldout[0]["value"] > 0


def test_the_gpu_areas_random_folder_trains_with_its_overrides_and_is_planned(tmp_path):
    """The gpu area's plumbing on the CPU: a random-init folder of a (tiny) architecture, rows fitted to a token
    length under its tokenizer, one sectune LoRA step with the area's overrides, and the plan of that run."""
    from sectune.bench import gpu
    from sectune.bench.train import Job, longest_row_tokens, plan_for, run_variant
    from sectune.registry.models import Architecture

    arch = Architecture(
        params_b=0.000245, hidden_size=64, num_layers=2, intermediate_size=128, vocab_size=512, num_heads=4,
        num_kv_heads=2,
    )  # fmt: skip
    model = gpu.random_model("tiny", tmp_path / "cache", arch)
    assert gpu.random_model("tiny", tmp_path / "cache", arch) == model  # kept between runs
    dataset = gpu.fitted_dataset(tmp_path / "data", model, rows=4, tokens=200)
    longest = longest_row_tokens(str(model), dataset)
    assert 180 <= longest <= 200  # fitted to 200 tokens
    job = Job("lora", dataset, tmp_path / "lora", steps=1, model=str(model), sets=gpu.folder_sets())
    result = run_variant(job, say=lambda _: None)
    assert result["global_step"] == 1 and result["trainable_params"] > 0
    planned = plan_for(job, result, longest, arch)["for_longest_row"]
    assert planned["max_length"] == longest and planned["method"] == "lora" and planned["batch_size"] == 1
    assert planned["total_gb"] >= planned["overhead_gb"] > 0
