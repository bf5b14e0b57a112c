"""A prep killed with SIGKILL leaves no partial dataset and no hidden sibling once it is run again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time


def _prep_command(samples, out, model_dir):
    return [sys.executable, "-m", "sectune", "prep", str(samples), "--out", str(out), "--set", f"model={model_dir}"]


def _samples(path, count):
    with path.open("w", encoding="utf-8") as handle:
        for n in range(count):
            words = " ".join(f"t{n}w{i}" for i in range(30))
            row = {"messages": [{"role": "user", "content": f"Q{n} {words}?"},
                                {"role": "assistant", "content": f"A{n} {words}."}]}  # fmt: skip
            handle.write(json.dumps(row) + "\n")
    return path


def test_killed_prep_leaves_nothing_behind_after_a_rerun(tmp_path, tiny_model_dir):
    samples = _samples(tmp_path / "samples.jsonl", 3000)
    work = tmp_path / "work"
    work.mkdir()
    out = work / "dataset"
    process = subprocess.Popen(
        _prep_command(samples, out, tiny_model_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while not list(work.glob(".dataset.tmp-*")):  # the hidden sibling exists while prep works
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "prep never started its output folder"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=30)
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    assert not out.exists() and list(work.glob(".dataset.tmp-*"))  # killed: only the hidden sibling is left

    done = subprocess.run(_prep_command(samples, out, tiny_model_dir), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert sorted(p.name for p in work.iterdir()) == ["dataset"]
    assert (out / "summary.json").is_file()
