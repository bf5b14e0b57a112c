"""Errors that help (issue 17), generate stage: a malformed-input corpus.

4. A run below its target exits 3 (some samples) or 4 (none) with one line saying why and which flag helps.
5. No part of the API key (any run of 4+ characters, any case) nor any bearer / sk- token is ever stored.
6. A topic sheet's per-topic counts are announced, can be picked, scaled and capped; a repeated topic is
   reported (and merged when its domain type repeats too).

Every CLI case asserts the exit code, a single stderr line, the named file or field, and no traceback.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import openpyxl
import pytest
from generate_helpers import distinct_words, make_config, parse_request, sample_responder

from sectune.errors import IncompleteRunError, NothingUsableError, UserError
from sectune.generate.api import generate
from sectune.generate.samples import sample_prompt
from sectune.generate.summary import shortfall_error
from sectune.generate.topics import Topic, duplicate_topics, load_topics, shape_sheet
from sectune.llm.cache import cache_key
from sectune.llm.keys import redact
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeHTTPError, FakeOpenAI

KEY = "sk-Qz7WvXkLpJrTnHmYgFdB"  # letters outside hex: no fragment can appear by chance in a sha256 key
FRAGMENTS = (KEY[-4:], KEY[6:16].lower(), KEY[3:11])  # "key ending in", a lower-cased middle part, a prefix
FAST = {
    "provider": "openai",
    "model": "fake-model",
    "timeout_s": 2.0,
    "max_retries": 1,
    "backoff_initial_s": 0.01,
    "backoff_max_s": 0.02,
    "max_in_flight": 4,
    "formats": ["jsonl"],
}


# --- helpers ---------------------------------------------------------------------------------------------------
def sets(base_url: str | None = None, **generate) -> list[str]:
    settings = {**FAST, **({"base_url": base_url} if base_url else {}), **generate}
    return [arg for key, value in settings.items() for arg in ("--set", f"generate.{key}={json.dumps(value)}")]


@pytest.fixture
def cli(monkeypatch, tmp_path, sectune_cli):
    """Run `sectune ARGS` in process: (exit code, stdout, stderr), in an empty folder with no key set."""
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    for name in (
        "SECTUNE_PROGRESS",
        "TQDM_DISABLE",
        "HF_HUB_DISABLE_PROGRESS_BARS",
        "HF_DATASETS_DISABLE_PROGRESS_BARS",
    ):
        monkeypatch.setenv(name, "off" if name == "SECTUNE_PROGRESS" else "1")  # restored after the test

    return sectune_cli


def run_subprocess(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    clean.update({"SECTUNE_PROGRESS": "off", "COLUMNS": "1000", **env})
    return subprocess.run(
        [sys.executable, "-m", "sectune", *args], capture_output=True, text=True, env=clean, cwd=cwd, check=False
    )


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_sheet(path: Path, rows: list[list]) -> Path:
    workbook = openpyxl.Workbook()
    for row in rows:
        workbook.active.append(row)
    workbook.save(path)
    return path


def by_domain_responder(body: dict) -> str:
    """Valid samples unique per (topic, domain type, variation): two rows of one topic do not collide."""
    topic, variation = parse_request(body)
    domain = re.search(r"^Domain type: (.+)$", body["messages"][-1]["content"], re.MULTILINE)
    seed = f"{topic}|{domain.group(1) if domain else ''}|{variation}"
    return json.dumps(
        {"question": f"How do I handle {distinct_words('q' + seed, 8)}?", "answer": distinct_words("a" + seed, 30)}
    )


def folder_bytes(folder: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file())


# --- 4. a run below its target: exit 3 or 4, one line, the flag that helps -------------------------------------
def malformed(body):
    return "Sure! Here is a question about security, and its answer."


def refuse(status: int, message: str):
    def responder(body):
        raise FakeHTTPError(status, message)

    return responder


@pytest.mark.parametrize(
    ("responder", "fault", "code", "says", "field", "helps"),
    [
        (malformed, None, 4, "3 of 3 requests rejected as malformed", "generate.output", "--retry-failed"),
        (sample_responder, "500", 4, "3 of 3 requests failed with server_error", "generate.base_url", "--retry-failed"),
        (sample_responder, "400", 4, "the provider refused every request", "generate.output", "--resume"),
        (
            refuse(422, "model fake-model does not exist"),
            None,
            4,
            '3 of 3 requests failed with bad_request (e.g. "bad_request: Error code: 422',
            "generate.model",
            "--retry-failed",
        ),
    ],
    ids=["all-malformed", "all-500", "all-400", "all-422-unknown-model"],
)
def test_a_run_that_produced_nothing_exits_4_with_why_and_fix(
    cli, tmp_path, responder, fault, code, says, field, helps
):
    faults = {"fault_rate": 1.0, "faults": (fault,)} if fault else {}
    run = tmp_path / "run"
    with FakeOpenAI(responder=responder, **faults) as fake:
        # 3 slots each; all-400: 12, so that 10 refusals stop the run
        factor = {} if fault == "400" else {"max_requests_factor": 1.0}
        extra = sets(fake.base_url, num_samples=3 if factor else 4, topics={"depth": 0}, max_in_flight=2, **factor)
        exit_code, out, err = cli("generate", *extra, "--out", str(run), "--no-progress")
    line = one_error_line(err)
    assert exit_code == code, err
    assert says in line and field in line and helps in line and str(run / "summary.json") in line
    assert "nothing usable: 0 of" in line
    summary = read_json(run / "summary.json")
    assert summary["accepted"] == 0 and summary["shortfall"]["exit_code"] == 4 and summary["counts_add_up"]
    if responder is malformed:
        assert summary["status"] == "incomplete" and summary["rejected"] == {"malformed": 3}
        assert "Sure! Here is a question" in summary["rejection_examples"]["malformed"]
        assert "--resume" not in line  # a finished run: continuing it would do nothing
        assert "next: " in out and "--retry-failed" in out


def test_some_samples_exit_3_and_retry_failed_really_helps(cli, tmp_path):
    broken = {"on": True}

    def second_is_malformed(body):
        if broken["on"] and parse_request(body)[1] == 2:
            return "not json at all"
        return sample_responder(body)

    run = tmp_path / "run"
    with FakeOpenAI(responder=second_is_malformed) as fake:
        args = [*sets(fake.base_url, num_samples=3, max_requests_factor=1.0, topics={"depth": 0}), "--out", str(run)]
        code, out, err = cli("generate", *args, "--no-progress")
        line = one_error_line(err)
        assert code == 3 and "incomplete: 2 of 3 samples; 1 of 3 requests rejected as malformed" in line
        assert '(e.g. "not json at all")' in line and "--retry-failed" in line
        assert read_json(run / "summary.json")["rejection_examples"] == {"malformed": "not json at all"}
        broken["on"] = False
        code, out, err = cli("generate", *args, "--retry-failed", "--no-progress")
    assert code == 0 and err == "" and "complete: 3/3 samples" in out
    summary = read_json(run / "summary.json")
    assert summary["status"] == "complete" and "shortfall" not in summary and summary["rejection_examples"] == {}


def test_budget_stop_exits_3_and_points_to_resume(cli, tmp_path):
    run = tmp_path / "run"
    with FakeOpenAI(responder=sample_responder) as fake:
        extra = sets(
            fake.base_url, num_samples=20, max_in_flight=2, budget_usd=0.5, prices={"fake-model": [1000.0, 1000.0]}
        )
        code, _out, err = cli(
            "generate", *extra, "--set", "generate.topics.depth=0", "--out", str(run), "--no-progress"
        )
    line = one_error_line(err)
    assert code == 3 and "stopped by the budget" in line and "generate.budget_usd" in line and "--resume" in line
    assert (run / "INCOMPLETE").exists()


def test_connection_refused_is_reported_as_such_in_a_subprocess(tmp_path):
    port = closed_port()
    run = tmp_path / "run"
    env = {"OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1", "OPENAI_API_KEY": KEY}
    args = ["generate", *sets(None, num_samples=2, topics={"depth": 0}), "--out", str(run), "--no-progress"]
    done = run_subprocess(args, env, tmp_path)
    line = one_error_line(done.stderr)
    assert done.returncode == 4, done.stderr
    assert "failed with connection" in line and "ConnectionRefusedError" in line and "timeout" not in line
    assert f"nothing answers at http://127.0.0.1:{port}/v1" in line and "generate.base_url" in line
    summary = read_json(run / "summary.json")
    assert set(summary["failed"]) == {"connection"} and set(summary["errors_this_session"]) == {"connection"}


def test_missing_key_exits_4_naming_the_variable_in_a_subprocess(tmp_path):
    with FakeOpenAI(responder=sample_responder, require_key=KEY) as fake:
        env = {"OPENAI_BASE_URL": fake.base_url}  # OPENAI_API_KEY not set
        args = ["generate", *sets(None, num_samples=2, topics={"depth": 0}), "--out", str(tmp_path / "run")]
        done = run_subprocess([*args, "--no-progress"], env, tmp_path)
    line = one_error_line(done.stderr)
    assert done.returncode == 4, done.stderr
    assert "the provider refused the API key (OPENAI_API_KEY is not set)" in line
    assert "generate.api_key_env=OPENAI_API_KEY" in line and "--resume" in line
    assert read_json(tmp_path / "run" / "summary.json")["status"] == "stopped_auth"


def test_the_api_returns_the_folder_of_an_incomplete_run_and_names_its_error(tmp_path):
    with FakeOpenAI(responder=malformed) as fake:
        cfg = make_config(fake.base_url, num_samples=2, max_requests_factor=1.0, max_retries=0, topics={"depth": 0})
        run = generate(cfg, tmp_path / "run")  # no exception: the folder, with its summary
    summary = read_json(run / "summary.json")
    error = shortfall_error(summary, run)
    assert isinstance(error, NothingUsableError) and isinstance(error, UserError) and error.exit_code == 4
    assert IncompleteRunError.exit_code == 3 and shortfall_error({"status": "complete"}, run) is None


# --- 5. no fragment of a key, no token, anywhere stored ---------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, f"invalid key: key ending in ...{KEY[-4:]}"),  # retried, then failed
        (400, f"project key {KEY[6:16].lower()} is not allowed here"),  # a lower-cased middle part
        (401, f"header was Authorization: Bearer {KEY}; also tried sk-otherProject0123456789"),  # bearer + sk-
    ],
    ids=["last-4", "lower-cased-middle", "bearer-header"],
)
def test_no_fragment_of_the_key_is_stored_or_printed(cli, monkeypatch, tmp_path, status, message):
    run = tmp_path / "run"
    with FakeOpenAI(responder=refuse(status, message)) as fake:
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        code, out, err = cli("generate", *sets(fake.base_url, num_samples=2, topics={"depth": 0}), "--out", str(run))
    line = one_error_line(err)
    assert code == 4
    stored = folder_bytes(run).lower()
    for fragment in (*FRAGMENTS, "sk-otherproject"):
        assert fragment.lower().encode() not in stored, fragment
        assert fragment.lower() not in (out + err).lower(), fragment
    lines = (run / "requests.jsonl").read_text().splitlines()
    assert lines and all("***" in json.loads(row)["error"] for row in lines)
    assert "***" in line


def test_redact_hides_any_run_of_four_characters_in_any_case_and_tokens():
    text = f"key {KEY[-4:]}, {KEY[2:9].upper()}, Bearer abc.def-123, sk-live_ABCDEF12, ok {KEY[-3:]}"
    hidden = redact(text, KEY)
    assert KEY[-4:] not in hidden and KEY[2:9].upper() not in hidden and "abc.def" not in hidden
    assert "sk-live" not in hidden and "Bearer ***" in hidden and hidden.endswith(f"ok {KEY[-3:]}")
    assert redact("nothing secret here", KEY) == "nothing secret here" and redact("abc", None) == "abc"


# --- 6. topic sheets: counts announced, picked, scaled, capped; repeated topics -------------------------------
HEADER = ["Id", "Domain Topic", "Samples Count", "Domain Type"]


def test_sheet_counts_override_num_samples_and_the_plan_says_so(cli, tmp_path):
    sheet = write_sheet(tmp_path / "t.xlsx", [HEADER, [1, "Firewalls", 2, "Cybersecurity"], [2, "VPN", 1, "IT"]])
    run = tmp_path / "run"
    with FakeOpenAI(responder=by_domain_responder) as fake:
        code, out, err = cli(
            "generate", *sets(fake.base_url, num_samples=50), "--topics", str(sheet), "--out", str(run)
        )
    assert code == 0 and err == ""
    assert "3 of 3 samples to go" in out and "per-topic counts from the topics file, not generate.num_samples=50" in out
    counts = read_json(run / "summary.json")["topic_counts"]
    assert counts["requested"] == counts["asked"] == 3 and counts["num_samples_ignored"] == 50
    assert counts["duplicate_topics"] == {}


def test_sheet_rows_scale_and_cap(cli, tmp_path):
    rows = [HEADER, [1, "Firewalls", 10, "Sec"], [2, "VPN", 4, "IT"], [3, "Backups", 6, "IT"], [4, "Printers", 1, "IT"]]
    sheet = write_sheet(tmp_path / "t.xlsx", rows)
    run = tmp_path / "run"
    sheet_sets = ["--set", "generate.topics.sheet_rows=1-3", "--set", "generate.topics.sheet_scale=0.5"]
    sheet_sets += ["--set", "generate.topics.sheet_max_per_topic=4"]
    with FakeOpenAI(responder=by_domain_responder) as fake:
        code, out, err = cli("generate", *sets(fake.base_url), *sheet_sets, "--topics", str(sheet), "--out", str(run))
    assert code == 0 and err == ""
    assert "the sheet asks for 20; rows 1-3, scale 0.5, max_per_topic 4: 9" in out
    topics = load_topics(run / "topics.jsonl")
    assert [(t.name, t.samples, t.sheet_samples) for t in topics] == [
        ("Firewalls", 4, 10),
        ("VPN", 2, 4),
        ("Backups", 3, 6),
    ]
    assert read_json(run / "summary.json")["accepted"] == 9
    picked = shape_sheet(load_topics(sheet), rows=[4, "2"], scale=0.01)
    assert [(t.name, t.samples) for t in picked] == [("VPN", 1), ("Printers", 1)]  # any asked: at least one


@pytest.mark.parametrize(
    ("setting", "with_sheet", "names"),
    [
        ("generate.topics.sheet_rows=7,9-12", True, "generate.topics.sheet_rows: no sheet row has Id 7"),
        ("generate.topics.sheet_rows=5-9", True, "no sheet row has an Id in 5-9"),
        ("generate.topics.sheet_scale=0.5", False, "generate.topics.sheet_scale: applies to a topics spreadsheet"),
        ("generate.topics.sheet_max_per_topic=0", True, "sheet_max_per_topic"),
    ],
    ids=["unknown-id", "empty-range", "scale-without-sheet", "cap-zero"],
)
def test_bad_sheet_settings_exit_2_before_anything_is_written(cli, tmp_path, setting, with_sheet, names):
    sheet = write_sheet(tmp_path / "t.xlsx", [HEADER, [1, "Firewalls", 2, "Sec"], [2, "VPN", 1, "IT"]])
    run = tmp_path / "run"
    topics = ["--topics", str(sheet)] if with_sheet else ["--set", "generate.topics.depth=0"]
    with FakeOpenAI(responder=by_domain_responder) as fake:
        code, _out, err = cli("generate", *sets(fake.base_url), "--set", setting, *topics, "--out", str(run))
        assert not fake.requests
    line = one_error_line(err)
    assert code == 2 and names in line and not run.exists()
    if "sheet_rows" in setting:
        assert str(sheet) in line


def test_a_repeated_topic_is_reported_kept_apart_by_domain_type_or_merged(cli, tmp_path):
    rows = [
        HEADER,
        [8, "Identity and Access Management (IAM)", 2, "IT Support"],
        [9, "Firewalls", 1, "Cybersecurity"],
        [59, "Identity and Access Management (IAM)", 2, "Cybersecurity"],
        [60, "firewalls ", 2, "cybersecurity"],
    ]
    sheet = write_sheet(tmp_path / "t.xlsx", rows)
    run = tmp_path / "run"
    with FakeOpenAI(responder=by_domain_responder) as fake:
        code, out, err = cli("generate", *sets(fake.base_url), "--topics", str(sheet), "--out", str(run))
        prompts = [body["messages"][-1]["content"] for body in fake.requests]
    assert code == 0 and err == "", err
    warnings = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: topic 'Identity and Access Management (IAM)' is listed 2 times in the topics file (ids 8, 59): "
        "kept as 2 topics, told apart by domain type (IT Support, Cybersecurity)",
        "warning: topic 'Firewalls' is listed 2 times in the topics file (ids 9, 60): merged into one topic "
        "(same domain type)",
    ]
    summary = read_json(run / "summary.json")
    assert summary["status"] == "complete" and summary["accepted"] == 7 and summary["topics"] == 3
    duplicates = summary["topic_counts"]["duplicate_topics"]
    assert len(duplicates) == 2 and duplicates["Firewalls"]["ids"] == ["9", "60"]
    assert sum("Domain type: IT Support" in p for p in prompts) == 2  # the domain type is in the prompt
    assert sum("Domain type: Cybersecurity" in p for p in prompts) == 2 + 3
    firewalls = next(t for t in load_topics(run / "topics.jsonl") if t.name == "Firewalls")
    assert firewalls.samples == 3 and firewalls.merged_ids == ["60"]
    assert duplicate_topics(load_topics(run / "topics.jsonl")) == duplicates  # a resume reports the same


def test_cache_key_of_a_topic_without_domain_type_is_unchanged():
    # pinned: a prompt change must be deliberate (it invalidates every cache). Last changed by issue 24, which took
    # the pydantic schema (and its docstrings) out of the JSON prompt; the embedded model's text prompt is untouched
    messages = sample_prompt(Topic(["Firewalls"]), 3, json_output=True)
    key = cache_key(provider="openai", model="m", messages=messages, params={"temperature": 0.9, "seed": 45})
    assert key == "de5567f4195bbc7c2a848e6ca8b100313605a85701f2314850e744f2a3163329"
    typed = sample_prompt(Topic(["Firewalls"], domain_type="Cybersecurity"), 3, json_output=True)
    assert typed != messages and "Domain type: Cybersecurity" in typed[-1]["content"]


def test_a_run_started_before_the_sheet_settings_still_resumes():
    from sectune.config import load_config
    from sectune.generate.resume import content_changes

    cfg = load_config(None, [])
    earlier = cfg.model_dump(mode="json")
    for key in ("sheet_rows", "sheet_scale", "sheet_max_per_topic"):
        del earlier["generate"]["topics"][key]
    assert content_changes(earlier, cfg) == []
    scaled = load_config(None, ["generate.topics.sheet_scale=0.5"])
    assert content_changes(earlier, scaled) == ["generate.topics"]


def test_a_run_started_before_response_format_still_resumes():
    from sectune.config import load_config
    from sectune.generate.resume import content_changes

    cfg = load_config(None, [])
    earlier = cfg.model_dump(mode="json")
    del earlier["generate"]["response_format"]
    assert content_changes(earlier, cfg) == []
    assert content_changes(cfg.model_dump(mode="json"), load_config(None, ["generate.response_format=json_object"]))
