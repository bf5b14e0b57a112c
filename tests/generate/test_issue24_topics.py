"""Issue 24, point 4: a topic answer of prose, fences and punctuation never becomes a topic.

A weak model answered the subtopic prompt with prose and a fenced JSON object; the line fallback took every
line, so the tree's leaves were "A", "```json" and "{". JSON inside fences is parsed, garbage lines are refused
and counted, and the topic step fails with one line when too few usable subtopics remain.
"""

from __future__ import annotations

import json

import pytest
from generate_helpers import make_config, sample_responder

from sectune.errors import IncompleteRunError, NothingUsableError
from sectune.generate.api import generate, topics
from sectune.generate.topics import parse_subtopic_answer, parse_subtopics
from sectune.testing.fake_openai import FakeOpenAI

# What the weak model sent: prose, then a fenced object whose list holds objects, not strings.
PROSE_AND_FENCED_OBJECT = """A good way to split this topic is shown below.

```json
{
  "subtopics": [
    {"name": "Phishing", "description": "fake mails"},
    {"name": "Ransomware", "description": "files held for ransom"},
    {"name": "Insider threats", "description": "staff gone rogue"}
  ]
}
```
"""
ONLY_GARBAGE = "A\n```json\n{\n```\n}\n---\n42"


def test_fenced_json_is_parsed_list_or_object_holding_a_list():
    fenced_list = 'Sure.\n```json\n["Phishing", "Malware", "Spam"]\n```\nHope this helps!'
    assert parse_subtopics(fenced_list, 3) == ["Phishing", "Malware", "Spam"]
    fenced_object = '```\n{"topic": "Email", "subtopics": ["Phishing", "Spam"]}\n```'
    assert parse_subtopics(fenced_object, 3) == ["Phishing", "Spam"]
    assert parse_subtopics(PROSE_AND_FENCED_OBJECT, 3) == ["Phishing", "Ransomware", "Insider threats"]
    numbered_keys = '```json\n{"subtopic_1": "Phishing", "subtopic_2": "Spam"}\n```'
    assert parse_subtopics(numbered_keys, 3) == ["Phishing", "Spam"]


def test_fence_punctuation_and_letterless_lines_are_refused_and_counted():
    names, rejected = parse_subtopic_answer(ONLY_GARBAGE, 3)
    assert names == []
    assert rejected == ["A", "```json", "{", "```", "}", "---", "42"]
    broken = 'Here is my answer:\n```json\n{"subtopics": ["Phishing", "Spam",\n```'  # cut-off JSON
    names, rejected = parse_subtopic_answer(broken, 3)
    assert names == [] and "```json" in rejected and "Here is my answer:" in rejected
    # a good numbered list is untouched; short real names ("AI", "5G") stay topics
    assert parse_subtopics("1. AI\n2. 5G networks\n3. Zero trust", 3) == ["AI", "5G networks", "Zero trust"]


def topic_answers(answer: str):
    """Every topic request gets ``answer``; sample requests get valid samples."""

    def respond(body: dict) -> str:
        if body["messages"][-1]["content"].startswith("Topic path:"):
            return answer
        return sample_responder(body)

    return respond


def test_a_tree_built_from_prose_and_fenced_json_has_real_leaves(tmp_path):
    with FakeOpenAI(responder=topic_answers(PROSE_AND_FENCED_OBJECT)) as fake:
        cfg = make_config(fake.base_url, topics={"root": "Security", "degree": 3, "depth": 1})
        out = topics(cfg, tmp_path / "topics.jsonl")
    leaves = [json.loads(line)["path"][-1] for line in out.read_text().splitlines()]
    assert leaves == ["Phishing", "Ransomware", "Insider threats"]


def test_a_topic_step_with_only_garbage_fails_with_one_line(tmp_path):
    with FakeOpenAI(responder=topic_answers(ONLY_GARBAGE)) as fake:
        cfg = make_config(fake.base_url, num_samples=3, topics={"root": "Security", "degree": 3, "depth": 2})
        with pytest.raises(NothingUsableError) as caught:
            topics(cfg, tmp_path / "topics.jsonl")
        asked = len(fake.requests)
        with pytest.raises(NothingUsableError):
            generate(cfg, tmp_path / "run")
    message = str(caught.value)
    assert "\n" not in message and "0 of 3 subtopics" in message and "7 answer lines refused" in message
    assert "generate.topics" in message and "--topics" in message
    assert asked == 1  # stopped after the first level: no request for the children of garbage
    assert not (tmp_path / "topics.jsonl").exists()
    assert not (tmp_path / "run" / "samples.jsonl").exists()  # no sample was asked for garbage topics


def test_too_few_usable_subtopics_fail_but_enough_pass(tmp_path):
    with FakeOpenAI(responder=topic_answers("1. Phishing\n2. {\n3. ```\n4. ...")) as fake:
        cfg = make_config(fake.base_url, topics={"root": "Security", "degree": 4, "depth": 1})
        with pytest.raises(IncompleteRunError, match="1 of 4 subtopics"):
            topics(cfg, tmp_path / "few.jsonl")
    with FakeOpenAI(responder=topic_answers("1. Phishing\n2. Spam\n3. {")) as fake:
        cfg = make_config(fake.base_url, topics={"root": "Security", "degree": 3, "depth": 1})
        out = topics(cfg, tmp_path / "enough.jsonl")
    assert [json.loads(line)["path"] for line in out.read_text().splitlines()] == [
        ["Security", "Phishing"],
        ["Security", "Spam"],
    ]
