"""`sectune eval http://.../v1` scores the packaged MCQ set through `sectune serve` like in-process scoring."""

from __future__ import annotations

import json
import os

import pytest
from tests.serve.test_serve import KEY, start_server


@pytest.fixture(scope="module")
def served_base(tiny_model_dir):
    proc, url = start_server(f"tiny={tiny_model_dir}", env={"SECTUNE_API_KEY": KEY})
    yield url
    proc.terminate()
    proc.communicate(timeout=30)


def _mcq(summary_dir) -> dict:
    summary = json.loads((summary_dir / "summary.json").read_text())
    [result] = summary["targets"].values()
    return result["mcq"]["cyber-mini"]


def test_endpoint_mcq_predictions_are_the_in_process_ones(served_base, tiny_model_dir, tmp_path, monkeypatch):
    from sectune.api import evaluate
    from sectune.config import load_config

    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # the endpoint's key, as for held-out generation
    sets = ["eval.dtype=float32", "eval.bootstrap_samples=50", "eval.mcq_scoring=[letter,option]"]
    remote_cfg = load_config(None, [*sets, "eval.endpoint_model=tiny", f"eval.endpoint_tokenizer={tiny_model_dir}"])
    remote = _mcq(evaluate(remote_cfg, served_base, tmp_path / "remote"))
    local = _mcq(evaluate(load_config(None, sets), tiny_model_dir, tmp_path / "local"))
    assert remote["questions"] == local["questions"] > 0
    for method in ("letter", "option"):
        assert remote["methods"][method]["predictions"] == local["methods"][method]["predictions"]
        assert remote["methods"][method]["accuracy"] == local["methods"][method]["accuracy"]


def test_endpoint_scores_equal_in_process_scores(served_base, tiny_model_dir):
    """The per-candidate numbers, not only the argmax: the server computes the same log-likelihoods."""
    from sectune.evaluate.mcq import load_benchmark, option_scores
    from sectune.llm.scoring import EndpointScorer
    from sectune.models.load import load_for_inference

    os.environ["OPENAI_API_KEY"] = KEY
    try:
        model, tokenizer = load_for_inference(tiny_model_dir)
        questions = load_benchmark("cyber-mini", limit=4).questions
        scorer = EndpointScorer(served_base, "tiny")
        for method in ("letter", "option"):
            remote = option_scores(scorer, tokenizer, questions, method, multi=False)
            local = option_scores(model, tokenizer, questions, method, multi=False)
            for got, want in zip(remote, local, strict=True):
                assert got.keys() == want.keys()
                assert list(got.values()) == pytest.approx(list(want.values()), abs=1e-4)
        assert scorer.requests > 0
    finally:
        del os.environ["OPENAI_API_KEY"]


def test_an_endpoint_without_dataset_or_tokenizer_is_one_line(tmp_path):
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "sectune", "eval", "http://127.0.0.1:9/v1", "--out", str(tmp_path / "e"),
         "--set", "eval.endpoint_model=tiny"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2 and "eval.endpoint_tokenizer" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "e").exists()
