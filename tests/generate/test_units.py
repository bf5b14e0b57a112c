"""Pieces of the generate stage: parsing, filters, dedup, topics files, spreadsheets, logs, exports, providers."""

from __future__ import annotations

import asyncio
import csv
import json

import openpyxl
import pytest
from generate_helpers import make_config, sample_responder

from sectune.config.generate import QualityConfig
from sectune.data.export import export_rows, to_alpaca, to_question_answer, to_sharegpt
from sectune.data.jsonl import read_jsonl
from sectune.errors import UserError
from sectune.generate.api import generate
from sectune.generate.quality import Deduplicator, filter_reason
from sectune.generate.samples import parse_json_sample, parse_labelled_sample
from sectune.generate.store import AppendLog
from sectune.generate.topics import load_topics, parse_subtopics, spread_samples
from sectune.llm import ProviderError, get_provider
from sectune.llm.judge import parse_score
from sectune.llm.prices import cost_usd, price_for
from sectune.runs import read_json
from sectune.testing.fake_openai import FakeOpenAI


def test_labelled_parser_reads_local_model_style_text():
    parsed = parse_labelled_sample("**Question:** How do I reset MFA?\n**Answer:** Open settings,\nthen reset.")
    assert parsed.question == "How do I reset MFA?" and parsed.answer == "Open settings,\nthen reset."
    assert parse_labelled_sample("Q: What is TLS?\nA: A protocol.").answer == "A protocol."
    assert parse_labelled_sample("Just some text without labels") is None
    assert parse_labelled_sample("Question: only a question") is None


def test_json_parser_repairs_what_it_can_and_refuses_the_rest():
    assert parse_json_sample('{"question": "q?", "answer": "a"}').repaired is False
    fenced = parse_json_sample('Here:\n```json\n{"question": "q?", "answer": "a",}\n```')
    assert fenced.repaired and fenced.answer == "a"
    assert parse_json_sample('{"question": "q?"}') is None  # schema: answer missing
    assert parse_json_sample('{"question": "q?", "answer": ') is None
    assert parse_json_sample("[1, 2]") is None


def test_multi_turn_json_needs_exactly_the_turns_asked_for():
    turns = [{"question": "How do I a?", "answer": "Do a."}, {"question": "And b?", "answer": "B."}]
    two = json.dumps({"turns": turns})
    parsed = parse_json_sample(two, turns=2)
    assert parsed is not None and parsed.turns == [("How do I a?", "Do a."), ("And b?", "B.")]
    assert parse_json_sample(two, turns=3) is None  # a turn short is not the sample asked for
    assert parse_json_sample('{"question": "q?", "answer": "a"}', turns=2) is None
    assert parse_json_sample(f"Here:\n```json\n{two}\n```", turns=2).repaired


def test_filters_name_their_reason():
    quality = QualityConfig(min_question_chars=5, min_answer_chars=10, max_answer_chars=100)
    assert filter_reason("  ", "long enough answer", quality) == "empty_turn"
    assert filter_reason("Why?", "long enough answer", quality) == "too_short"
    assert filter_reason("Why is it?", "x" * 101, quality) == "too_long"
    assert filter_reason("How to hack?", "I'm sorry, but I can't help with that.", quality) == "refusal"
    assert filter_reason("How to patch?", "Run the updater and reboot.", quality) is None


def test_deduplicator_catches_exact_and_near_duplicates_but_not_different_samples():
    dedup = Deduplicator(threshold=0.8)

    def check_and_add(question: str, answer: str) -> str | None:
        return dedup.check_and_add(dedup.fingerprint(question, answer))

    answer = "Enable multi-factor authentication, rotate the keys every ninety days and audit the access logs weekly."
    assert check_and_add("How do I secure my cloud account?", answer) is None
    assert check_and_add("how do I secure my cloud account", "Something else entirely.") == "duplicate"
    near = answer.replace("weekly", "every week")  # 5-gram Jaccard with the first sample: 0.85
    assert check_and_add("How do I secure my cloud account today?", near) == "near_duplicate"
    assert check_and_add("What is a phishing email?", "A message that tricks you into giving secrets.") is None
    assert len(dedup) == 2
    assert dedup.check(dedup.fingerprint("What is a phishing email?", "Other words.")) == "duplicate"
    assert len(dedup) == 2  # check alone never adds


def test_dedup_against_an_existing_dataset(tmp_path):
    existing = tmp_path / "old.jsonl"
    with FakeOpenAI(responder=sample_responder) as fake:
        first = generate(make_config(fake.base_url, num_samples=4, topics={"depth": 0}), tmp_path / "first")
        existing.write_text((first / "samples.jsonl").read_text())
        cfg = make_config(
            fake.base_url,
            num_samples=4,
            topics={"depth": 0},
            quality={"against": [str(existing)]},
            max_requests_factor=3.0,
            temperature=0.9,
        )
        second = generate(cfg, tmp_path / "second")
    summary = read_json(second / "summary.json")
    assert summary["rejected"]["duplicate"] == 4  # the same prompts give the same answers: all caught
    old = {json.loads(line)["messages"][1]["content"] for line in existing.read_text().splitlines()}
    new = {json.loads(line)["messages"][1]["content"] for line in (second / "samples.jsonl").read_text().splitlines()}
    assert len(new) == 4 and not old & new


def test_subtopic_parser_handles_json_and_numbered_lists():
    assert parse_subtopics('["A", "B", "A", "C"]', 3) == ["A", "B", "C"]
    assert parse_subtopics("1. Firewalls\n2) VPNs\n- **Root**\n3. Firewalls.", 5, exclude={"Root"}) == [
        "Firewalls",
        "VPNs",
    ]


def write_sheet(path, rows):
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path


def test_spreadsheet_topics_give_their_own_counts_and_domain_type(tmp_path):
    sheet = write_sheet(
        tmp_path / "topics.xlsx",
        [
            ["Id", "Domain Topic", "Samples Count", "Domain Type"],
            [1, "Firewalls", 2, "Cybersecurity"],
            [2, "Cloud IAM", 3, "Cloud"],
            [3, "Printers", 0, "IT Support"],
            [None, None, None, None],
        ],
    )
    topics = load_topics(sheet)
    assert [t.path for t in topics] == [["Firewalls"], ["Cloud IAM"], ["Printers"]]
    assert spread_samples(topics, 100) == [2, 3, 0]
    with FakeOpenAI(responder=sample_responder) as fake:
        run = generate(make_config(fake.base_url, num_samples=99, topics={"file": str(sheet)}), tmp_path / "run")
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 5
    by_type = sorted((r["meta"]["domain_type"], r["meta"]["topic"]) for r in rows)
    assert by_type == [("Cloud", "Cloud IAM")] * 3 + [("Cybersecurity", "Firewalls")] * 2
    assert read_json(run / "summary.json")["requested"] == 5


def test_bad_spreadsheet_names_row_and_column(tmp_path):
    sheet = write_sheet(tmp_path / "bad.xlsx", [["Id", "Domain Topic", "Samples Count"], [1, "Firewalls", "many"]])
    with pytest.raises(UserError, match=r"row 2, Samples Count"):
        load_topics(sheet)
    sheet = write_sheet(tmp_path / "bad2.xlsx", [["Id", "Topic"], [1, "Firewalls"]])
    with pytest.raises(UserError, match="Domain Topic"):
        load_topics(sheet)


def test_shared_topics_spreadsheet_loads(shared_dir):
    sheet = shared_dir / "data" / "seed" / "Synthetic-Data-Topics.xlsx"
    if not sheet.is_file():
        pytest.skip("seed spreadsheet absent")
    topics = load_topics(sheet)
    assert len(topics) > 50 and all(t.samples is not None and t.domain_type for t in topics)


def test_torn_last_line_is_dropped_and_cut_off(tmp_path):
    path = tmp_path / "log.jsonl"
    log = AppendLog(path)
    log.append({"a": 1})
    log.append({"a": 2})
    log.close()
    with path.open("a") as handle:
        handle.write('{"a": 3, "b"')  # the process died mid-line
    assert read_jsonl(path, tolerant=True) == [{"a": 1}, {"a": 2}]
    AppendLog(path).append({"a": 4})
    assert read_jsonl(path, tolerant=True) == [{"a": 1}, {"a": 2}, {"a": 4}]


def test_converters_find_turns_by_role_even_when_one_is_missing(tmp_path):
    rows = [
        {"messages": [{"role": "user", "content": 'Say "hi", then\nbye'}, {"role": "assistant", "content": "a,b"}]},
        {"messages": [{"role": "system", "content": "sys"}, {"role": "assistant", "content": "only answer"}]},
        {"messages": [{"role": "system", "content": "sys"}, {"role": "user", "content": "q"},
                      {"role": "assistant", "content": "ans"}], "meta": {"domain_type": "Cloud"}},
    ]  # fmt: skip
    assert to_question_answer(rows[1]) == ("", "only answer")
    assert to_question_answer(rows[2]) == ("q", "ans")
    assert to_alpaca(rows[2]) == {"instruction": "q", "input": "", "output": "ans", "system": "sys"}
    assert [t["from"] for t in to_sharegpt(rows[2])["conversations"]] == ["system", "human", "gpt"]
    files = export_rows(rows, tmp_path, ["csv", "xlsx", "parquet", "hf", "sharegpt", "alpaca"])
    with (tmp_path / files["csv"]).open(newline="") as handle:
        table = list(csv.reader(handle))
    assert table == [["Question", "Answer"], ['Say "hi", then\nbye', "a,b"], ["", "only answer"], ["q", "ans"]]
    sheet = openpyxl.load_workbook(tmp_path / files["xlsx"]).active
    assert [c.value for c in sheet[4]] == ["q", "ans", None, "Cloud"]
    import pyarrow.parquet as pq
    from datasets import load_from_disk

    assert pq.read_table(tmp_path / files["parquet"]).to_pylist()[2]["messages"] == rows[2]["messages"]
    assert load_from_disk(str(tmp_path / files["hf"]))[0]["messages"] == rows[0]["messages"]
    assert json.loads((tmp_path / files["alpaca"]).read_text())[1]["output"] == "only answer"


def test_judge_score_parser_never_guesses():
    assert parse_score('{"score": 4}') == 4
    assert parse_score(" 5 ") == 5
    assert parse_score("It is great, 10/10") is None
    assert parse_score('{"score": 9}') is None


def test_llm_judge_rejects_low_scores_and_unparseable_verdicts(tmp_path):
    def responder(body):
        text = body["messages"][-1]["content"]
        if text.startswith("Rate this"):
            if "keyaudit" in text:
                return "garbage verdict"
            return '{"score": 2}' if "scanwall" in text else '{"score": 5}'
        return sample_responder(body)

    with FakeOpenAI(responder=responder) as fake:
        cfg = make_config(
            fake.base_url,
            num_samples=10,
            topics={"depth": 0},
            quality={"judge": {"enabled": True}},
            max_requests_factor=6.0,
        )
        run = generate(cfg, tmp_path / "run")
    summary = read_json(run / "summary.json")
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and summary["counts_add_up"]
    assert summary["rejected"].get("judge_low", 0) > 0 and summary["rejected"].get("judge_unparseable", 0) > 0
    assert all("scanwall" not in m["content"] and "keyaudit" not in m["content"] for r in rows for m in r["messages"])


def test_prices_unknown_is_none_not_zero():
    assert price_for("openai", "gpt-4o-mini") == (0.15, 0.60)
    assert price_for("litellm", "openai/gpt-4o-mini") == (0.15, 0.60)
    assert price_for("openai", "my-own-model") is None
    assert cost_usd(None, 10, 10) is None
    assert price_for("local", "anything") == (0.0, 0.0)
    assert price_for("openai", "my-own-model", {"my-own-model": (1.0, 2.0)}) == (1.0, 2.0)


def test_provider_errors_are_classified(monkeypatch):
    async def ask(fake, **kw):
        provider = get_provider("openai", model="m", base_url=fake.base_url, **kw)
        try:
            return await provider.complete([{"role": "user", "content": "x"}], max_tokens=5)
        finally:
            await provider.aclose()

    with FakeOpenAI(fault_rate=1.0, faults=("429",), retry_after=3) as fake, pytest.raises(ProviderError) as err:
        asyncio.run(ask(fake))
    assert err.value.kind == "rate_limit" and err.value.retry_after == 3 and err.value.retryable
    with FakeOpenAI(require_key="right") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "wrong-key-xyz")
        with pytest.raises(ProviderError) as err:
            asyncio.run(ask(fake))
    assert err.value.kind == "auth" and not err.value.retryable and "wrong-key-xyz" not in str(err.value)


def test_the_openai_provider_posts_what_the_sdk_would_and_maps_its_errors(monkeypatch):
    """Chat completions go out on sectune's own aiohttp session (the SDK's POST path costs ~2 ms CPU each):
    the same headers and body, a session per event loop, and the SDK's error kinds."""
    monkeypatch.setenv("OPENAI_ORG_ID", "org-bench")
    messages = [{"role": "user", "content": "x"}]

    async def ask(provider, close=True, **params):
        try:
            return await provider.complete(messages, max_tokens=5, **params)
        finally:
            if close:
                await provider.aclose()

    with FakeOpenAI(require_key="sk-right-key") as fake:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-right-key")
        provider = get_provider("openai", model="m", base_url=fake.base_url)
        first = asyncio.run(ask(provider, close=False, temperature=0.5))  # two event loops: a session each
        second = asyncio.run(ask(provider))
    assert first.text and second.text and first.finish_reason == "stop" and first.prompt_tokens > 0
    headers = fake.headers[0]
    assert headers["authorization"] == "Bearer sk-right-key" and headers["openai-organization"] == "org-bench"
    assert headers["content-type"] == "application/json" and headers["user-agent"].startswith("sectune/")
    assert fake.requests[0] == {"model": "m", "messages": messages, "max_tokens": 5, "temperature": 0.5}

    with FakeOpenAI(fault_rate=1.0, faults=("500",), retry_after=2) as fake, pytest.raises(ProviderError) as err:
        provider = get_provider("openai", model="m", base_url=fake.base_url)
        asyncio.run(ask(provider))
    assert err.value.kind == "server_error" and err.value.status == 500 and "Error code: 500" in str(err.value)
    with FakeOpenAI(latency=2.0) as fake, pytest.raises(ProviderError) as err:
        provider = get_provider("openai", model="m", base_url=fake.base_url)
        asyncio.run(ask(provider, timeout=0.2))
    assert err.value.kind == "timeout" and err.value.retryable


def test_unknown_or_uninstalled_providers_fail_with_a_fix():
    with pytest.raises(UserError, match="did you mean 'openai'"):
        get_provider("opnai", model="m")
    with pytest.raises(UserError, match="needs a model name"):
        get_provider("openai")
    try:
        import litellm  # noqa: F401
    except ImportError:
        with pytest.raises(UserError, match=r"pip install 'sectune\[litellm\]'"):
            get_provider("litellm", model="openai/gpt-4o-mini")


def test_cli_refuses_an_existing_run_with_exit_code_2(tmp_path):
    import subprocess
    import sys

    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("name: x\n")
    out = subprocess.run(
        [sys.executable, "-m", "sectune", "generate", "--out", str(tmp_path / "run"), "--no-progress"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2 and "--resume" in out.stderr and "Traceback" not in out.stderr


def test_rate_limit_holds_requests_back_and_retry_after_is_obeyed():
    from types import SimpleNamespace

    from sectune.llm.requests import Caller, Limits

    async def two_calls(base_url):
        provider = get_provider("openai", model="m", base_url=base_url)
        caller = Caller(provider, Limits(rpm=1, max_retries=0))
        try:
            first = await caller.call([{"role": "user", "content": "a"}], {})
            with pytest.raises(TimeoutError):  # the second request of the minute waits for the limiter
                await asyncio.wait_for(caller.call([{"role": "user", "content": "b"}], {}), 0.5)
            return first, caller.sent
        finally:
            await provider.aclose()

    with FakeOpenAI() as fake:
        first, sent = asyncio.run(two_calls(fake.base_url))
    assert first.completion.text == "echo: a" and sent == 1 and len(fake.requests) == 1

    caller = Caller(SimpleNamespace(name="x", model="m"), Limits(backoff_initial_s=0.5, backoff_max_s=2.0))

    def state(exc, attempt=1):
        return SimpleNamespace(outcome=SimpleNamespace(exception=lambda: exc), attempt_number=attempt)

    assert caller._wait(state(ProviderError("rate_limit", "slow down", retry_after=7))) == 7
    waits = [caller._wait(state(ProviderError("server_error", "boom"), attempt)) for attempt in range(1, 8)]
    assert all(0 < w <= 2.0 for w in waits) and waits[0] < 1.5


def test_cli_topics_and_generate_with_progress(tmp_path):
    from typer.testing import CliRunner

    from sectune.cli.main import app

    with FakeOpenAI(responder=sample_responder) as fake:
        sets = ["generate.provider=openai", "generate.model=fake-model", f"generate.base_url={fake.base_url}"]
        args = [arg for item in sets for arg in ("--set", item)]
        topics_out = tmp_path / "topics.jsonl"
        result = CliRunner().invoke(
            app, ["topics", *args, "--set", "generate.topics.depth=1", "--out", str(topics_out)]
        )
        assert result.exit_code == 0, result.output
        assert len(topics_out.read_text().splitlines()) == 3
        run = tmp_path / "run"
        cmd = ["generate", *args, "--set", "generate.num_samples=4", "--topics", str(topics_out), "--out", str(run)]
        result = CliRunner().invoke(app, cmd)
    assert result.exit_code == 0, result.output
    assert "complete: 4/4 samples" in result.output and "3 topics" in result.output
    assert read_json(run / "summary.json")["files"] == {"csv": "samples.csv", "jsonl": "samples.jsonl"}


def test_public_api_reexports_the_stage_functions():
    import sectune.api
    import sectune.generate.api

    assert sectune.api.generate is sectune.generate.api.generate
    assert sectune.api.topics is sectune.generate.api.topics


def test_prefilled_question_prompt_ends_with_an_assistant_start_the_model_continues(tiny_model_dir):
    from transformers import AutoTokenizer

    from sectune.generate.samples import QUESTION_STARTS, prefilled_question_prompt
    from sectune.generate.topics import Topic
    from sectune.models.generation import render_prompt

    topic = Topic(["IT support", "Password resets"])
    prompts = [prefilled_question_prompt(topic, k) for k in range(len(QUESTION_STARTS))]
    assert {p[-1]["content"] for p in prompts} == set(QUESTION_STARTS)  # one opener per variation
    assert all(p[-1]["role"] == "assistant" and "Password resets (IT support)" in p[0]["content"] for p in prompts)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = render_prompt(tokenizer, prompts[0])
    assert text.endswith("<|im_start|>assistant\nHow do I")  # continued, not closed with <|im_end|>
    plain = render_prompt(tokenizer, prompts[0][:1])
    assert plain.endswith("<|im_start|>assistant\n")


def test_completion_from_plain_json_answers_and_malformed_ones():
    from sectune.llm import ProviderError
    from sectune.llm.openai_compat import completion_from_json

    ok = completion_from_json(
        {"choices": [{"message": {"content": "hi"}, "finish_reason": "length"}], "usage": {"prompt_tokens": 3}}
    )
    assert (ok.text, ok.finish_reason, ok.prompt_tokens, ok.completion_tokens) == ("hi", "length", 3, 0)
    bare = completion_from_json({"choices": [{"message": None}]})
    assert (bare.text, bare.finish_reason) == ("", "unknown")
    for broken in ({"choices": []}, {}, ["not", "a", "dict"], {"choices": ["x"]}):
        with pytest.raises(ProviderError, match="no choices"):
            completion_from_json(broken)


def test_gc_frozen_freezes_during_the_run_and_restores_only_its_own_freeze():
    import gc

    from sectune.generate.engine import gc_frozen

    assert gc.get_freeze_count() == 0
    with gc_frozen():
        assert gc.get_freeze_count() > 0  # objects that existed before the run are out of every GC pass
    assert gc.get_freeze_count() == 0
    gc.freeze()  # someone else (a server embedding sectune) froze first: leave their freeze in place
    try:
        with gc_frozen():
            pass
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


class InstantProvider:
    """An in-process provider answering at once with valid, unique samples."""

    name = "openai"
    model = "fake-model"
    supports_json = True

    def __init__(self, batches_requests: bool = False):
        self.batches_requests = batches_requests
        self.requests = 0

    async def complete(self, messages, **params):
        from sectune.llm.base import Completion

        self.requests += 1
        return Completion(sample_responder({"messages": messages}), "stop", 10, 10)

    async def aclose(self):
        return None


def test_first_requests_start_spread_over_the_ramp_up_unless_the_provider_batches(tmp_path, monkeypatch):
    from sectune.generate.engine import start_delays

    waits: list[float] = []
    real_sleep = asyncio.sleep

    async def recorded_sleep(delay, result=None):  # no clock involved: record each wait, then just yield
        if delay > 0:
            waits.append(delay)
        return await real_sleep(0, result)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    topics = tmp_path / "topics.jsonl"
    topics.write_text("".join(json.dumps({"path": ["Security", f"Area {i}"]}) + "\n" for i in range(4)))
    cfg = make_config("http://127.0.0.1:9", num_samples=4, max_in_flight=4, ramp_up_s=0.3, topics={"file": str(topics)})
    spread = InstantProvider()
    generate(cfg, tmp_path / "spread", provider=spread)
    assert start_delays(4, 0.3) == pytest.approx([0.0, 0.075, 0.15, 0.225])
    assert waits == pytest.approx([0.075, 0.15, 0.225]) and spread.requests == 4  # workers 1-3 wait their turn

    waits.clear()
    batching = InstantProvider(batches_requests=True)  # the local model answers requests sent together at once
    generate(cfg, tmp_path / "together", provider=batching)
    assert waits == [] and batching.requests == 4  # nobody waits: requests go out together


def test_slot_outcomes_keep_the_json_lines_of_earlier_runs():
    from sectune.generate.store import SlotOutcome

    head = '{"slot": "1:0", "topic": 1, "k": 0, "cached": false, "prompt_tokens": 107, "completion_tokens": 297, '
    accepted = head + '"cost_usd": 0.0, "status": "accepted", "reason": null}'
    failed = head + '"status": "failed", "reason": "bad_request", "error": "bad_request: 400", "cost_usd": null}'
    for line in (accepted, failed):
        outcome = SlotOutcome.from_dict(json.loads(line))
        assert json.dumps(outcome.to_dict(), ensure_ascii=False) == line
    assert SlotOutcome.from_dict(json.loads(failed)).error == "bad_request: 400"
    sparse = SlotOutcome.from_dict({"slot": "0:3", "topic": 0, "k": 3, "status": "rejected", "reason": "too_short"})
    assert (sparse.cached, sparse.prompt_tokens, sparse.cost_usd) == (False, 0, None)
