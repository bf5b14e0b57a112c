"""`sectune prep` end to end: JSONL and a seed-style xlsx → train/validation/test for every registry model."""

from __future__ import annotations

import json
import sys

import pytest
from prep_samples import SYSTEM

from sectune.registry.models import REGISTRY


def _read(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.parametrize("key", sorted(REGISTRY))
def test_prep_jsonl_for_every_registry_model(key, tmp_path, chat_jsonl, cfg, family_tokenizer):
    from sectune.data.api import prepare

    spec = REGISTRY[key]
    out = prepare(cfg(f"model={key}"), chat_jsonl, tmp_path / "ds", tokenizer=family_tokenizer(spec.family))
    splits = {name: _read(out / f"{name}.jsonl") for name in ("train", "validation", "test")}
    assert [len(rows) for rows in splits.values()] == [20, 2, 2]
    assert all(row["messages"][0] == {"role": "system", "content": SYSTEM} for rows in splits.values() for row in rows)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == key
    assert summary["counts"] == {"train": 20, "validation": 2, "test": 2}
    assert summary["tokens"]["all"]["rows"] == 24
    assert sum(summary["tokens"]["all"]["histogram"]["bins"].values()) == 24
    checks = summary["checks"]
    assert (
        checks["ok"] and checks["end_of_turn"]["turns_ending_trained"] == checks["end_of_turn"]["assistant_turns"] == 20
    )
    assert 0 < checks["masks"]["trained_fraction_min"] <= checks["masks"]["trained_fraction_max"] < 1
    pairs = _read(out / "prompt_completion" / "train.jsonl")
    assert len(pairs) == 20
    first = splits["train"][0]["messages"]
    assert pairs[0]["completion"].removeprefix(" ").startswith(first[-1]["content"])  # Mistral v0.3: " answer</s>"
    assert first[1]["content"] in pairs[0]["prompt"]
    for name in ("config.yaml", "versions.json", "chat_template.jinja"):
        assert (out / name).is_file()


def test_prep_seed_style_xlsx_through_the_cli(tmp_path, seed_xlsx, monkeypatch, capsys, family_tokenizer):
    """The CLI with a local tokenizer folder, stratified by the Domain Type column."""
    from sectune.cli.main import main

    tokenizer_dir = tmp_path / "tok"
    family_tokenizer("llama3").save_pretrained(str(tokenizer_dir))
    out = tmp_path / "ds"
    argv = [
        "sectune",
        "prep",
        str(seed_xlsx),
        "--out",
        str(out),
        "--tokenizer",
        str(tokenizer_dir),
        "--set",
        "model=llama-3.2-1b-instruct",
        "--set",
        "prep.stratify_by=domain_type",
        "--set",
        "prep.system_prompt=Be precise.",
    ]
    monkeypatch.setattr(sys, "argv", argv)
    main()  # returns normally on success
    assert "train 18, validation 3, test 3 rows" in capsys.readouterr().out  # 1 + 1 of each 8-row domain held out
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dedup"]["strata"] == {"Cloud Computing": 8, "Cybersecurity": 8, "IT Support": 8}
    assert summary["validation"]["system_prompt_added"] == 24
    test_rows = _read(out / "test.jsonl")
    assert sorted(row["meta"]["domain_type"] for row in test_rows) == ["Cloud Computing", "Cybersecurity", "IT Support"]
    assert test_rows[0]["messages"][0] == {"role": "system", "content": "Be precise."}
    assert (out / "prompt_completion" / "test.jsonl").read_text().count("<|start_header_id|>assistant") == 3


def test_prep_for_a_model_folder_uses_its_tokenizer(tmp_path, chat_jsonl, cfg, tiny_model_dir):
    """A local HF model folder (not in the registry): its own tokenizer and template, loaded offline."""
    from sectune.data.api import prepare

    out = prepare(cfg(f"model={tiny_model_dir}"), chat_jsonl, tmp_path / "ds")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["model"] == str(tiny_model_dir) and summary["checks"]["ok"]
    assert (out / "chat_template.jinja").read_text() == (tiny_model_dir / "chat_template.jinja").read_text()


def test_passed_tokenizer_is_not_modified(tmp_path, chat_jsonl, cfg, family_tokenizer):
    from sectune.data.api import prepare

    tokenizer = family_tokenizer("gemma")
    before = tokenizer.chat_template
    prepare(cfg("model=smollm2-135m"), chat_jsonl, tmp_path / "ds", tokenizer=tokenizer)
    assert tokenizer.chat_template == before


def test_same_seed_same_dataset(tmp_path, chat_jsonl, cfg, family_tokenizer):
    from sectune.data.api import prepare

    tok = family_tokenizer("smollm2")
    a = prepare(cfg("seed=5"), chat_jsonl, tmp_path / "a", tokenizer=tok)
    b = prepare(cfg("seed=5"), chat_jsonl, tmp_path / "b", tokenizer=tok)
    c = prepare(cfg("seed=6"), chat_jsonl, tmp_path / "c", tokenizer=tok)
    assert (a / "test.jsonl").read_bytes() == (b / "test.jsonl").read_bytes()
    assert (a / "test.jsonl").read_bytes() != (c / "test.jsonl").read_bytes()


def test_existing_output_refused_unless_overwrite(tmp_path, chat_jsonl, cfg, family_tokenizer):
    from sectune.data.api import prepare
    from sectune.errors import UserError

    tok = family_tokenizer("smollm2")
    out = prepare(cfg(), chat_jsonl, tmp_path / "ds", tokenizer=tok)
    with pytest.raises(UserError, match="already exists"):
        prepare(cfg(), chat_jsonl, out, tokenizer=tok)
    prepare(cfg(), chat_jsonl, out, tokenizer=tok, overwrite=True)


def long_answer_rows(tmp_path):
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question number {i} about firewalls and VPNs?"},
                {"role": "assistant", "content": f"Answer {i}: firewalls filter traffic."},
            ]
        }
        for i in range(10)
    ]
    rows.append(
        {
            "messages": [
                {"role": "user", "content": "What is a firewall? " * 30},
                {"role": "assistant", "content": "Short answer about firewalls."},
            ]
        }
    )
    rows.append(
        {
            "messages": [
                {"role": "user", "content": "Explain everything."},
                {"role": "assistant", "content": "Firewalls filter network traffic. " * 40},
            ]
        }
    )
    path = tmp_path / "long.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("policy", "kept", "counts"),
    [
        ("drop", 10, {"dropped_over_length": 2}),
        ("truncate-prompt", 11, {"prompt_truncated": 1, "dropped_answer_too_long": 1}),
    ],
)
def test_length_policies_never_cut_an_answer(policy, kept, counts, tmp_path, cfg, family_tokenizer):
    from sectune.data.api import prepare

    out = prepare(
        cfg("prep.max_length=120", f"prep.length_policy={policy}", "prep.test_size=0", "prep.validation_size=0"),
        long_answer_rows(tmp_path),
        tmp_path / "ds",
        tokenizer=family_tokenizer("smollm2"),
    )
    rows = _read(out / "train.jsonl")
    assert len(rows) == kept
    summary = json.loads((out / "summary.json").read_text())
    assert summary["tokens"]["rows_over_max_length_before_policy"] == 2
    for key, value in counts.items():
        assert summary["tokens"][key] == value
    assert summary["tokens"]["all"]["max"] <= 120
    answers = {row["messages"][-1]["content"] for row in rows}
    assert "Short answer about firewalls." in answers or policy == "drop"
    assert not any(a.startswith("Firewalls filter network traffic. Firewalls") for a in answers)


def test_length_policy_error_names_the_row_and_the_fix(tmp_path, cfg, family_tokenizer):
    """Guard: a dataset whose rows exceed max length is caught before training."""
    from sectune.data.api import prepare
    from sectune.errors import UserError

    with pytest.raises(UserError) as caught:
        prepare(
            cfg("prep.max_length=120", "prep.length_policy=error"),
            long_answer_rows(tmp_path),
            tmp_path / "ds",
            tokenizer=family_tokenizer("smollm2"),
        )
    message = str(caught.value)
    assert "long.jsonl" in message and "exceed prep.max_length=120" in message and "line 1" in message
    assert "length_policy" in message
    assert not (tmp_path / "ds").exists()


def test_near_duplicates_reported_in_summary(tmp_path, cfg, family_tokenizer):
    from sectune.data.api import prepare

    long_answer = " ".join(f"word{i}" for i in range(60))
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Q{i} about item {i}?"},
                {"role": "assistant", "content": f"Answer {i} number {i * 7}."},
            ]
        }
        for i in range(10)
    ]
    rows += [
        {
            "messages": [
                {"role": "user", "content": "Explain the list."},
                {"role": "assistant", "content": long_answer + tail},
            ]
        }
        for tail in ("", " end", " fin")
    ]
    rows.append(rows[0])
    path = tmp_path / "dups.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    out = prepare(cfg(), path, tmp_path / "ds", tokenizer=family_tokenizer("smollm2"))
    dedup = json.loads((out / "summary.json").read_text())["dedup"]
    assert (dedup["exact_duplicates_removed"], dedup["near_duplicates_removed"], dedup["leakage_pairs"]) == (1, 2, 0)


@pytest.mark.slow
def test_prep_seed_jsonl_with_the_real_smollm2(tmp_path, shared_dir, cfg):
    from sectune.data.api import prepare

    out = prepare(cfg(), shared_dir / "data" / "seed" / "output_01.jsonl", tmp_path / "ds")
    summary = json.loads((out / "summary.json").read_text())
    assert sum(summary["counts"].values()) == 100
    assert summary["tokens"]["all"]["over_max_length"] == 0
    assert 100 < summary["tokens"]["all"]["median"] < 1024
