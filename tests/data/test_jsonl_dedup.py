"""The shared pieces of the data floor: one JSONL reader/writer, one near-duplicate definition."""

from __future__ import annotations

import datetime
import json

import pytest

from sectune.config.prep import PrepConfig
from sectune.data.dedup import NearDuplicateIndex, normalise, shingles, signature
from sectune.data.jsonl import JsonlError, encode_line, iter_jsonl, iter_jsonl_text, read_jsonl, write_jsonl
from sectune.data.rows import SourcedRow
from sectune.data.split import find_duplicates
from sectune.generate.quality import Deduplicator


def test_rows_round_trip_byte_for_byte_and_a_line_separator_inside_a_string_is_no_line_break(tmp_path):
    rows = [{"q": "Line\u2028separator, NEL\x85 and é 日本"}, {"meta": {"day": datetime.date(2026, 1, 2)}}]
    path = write_jsonl(tmp_path / "rows.jsonl", rows, default=str)
    expected = "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows)
    assert path.read_bytes() == expected.encode("utf-8")
    assert encode_line(rows[0]) == json.dumps(rows[0], ensure_ascii=False) + "\n"
    assert read_jsonl(path) == [rows[0], {"meta": {"day": "2026-01-02"}}]
    assert len(path.read_text(encoding="utf-8").splitlines()) == 4  # what the old readers would have split
    assert [p.name for p in tmp_path.iterdir()] == ["rows.jsonl"]  # the temporary sibling is gone


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = write_jsonl(tmp_path / "rows.jsonl", [{"a": 1}])
    with pytest.raises(TypeError):
        write_jsonl(path, [{"a": 2}, {"b": object()}])
    assert read_jsonl(path) == [{"a": 1}] and len(list(tmp_path.iterdir())) == 1


def test_line_numbers_count_blank_lines_crlf_and_a_bom(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\r\n{"a": 2}\n  \n{"a": 3}')
    assert list(iter_jsonl(path)) == [(1, {"a": 1}), (3, {"a": 2}), (5, {"a": 3})]
    assert list(iter_jsonl_text('{"a": 1}\r{"a": 2}\n')) == [(1, {"a": 1}), (2, {"a": 2})]
    path.write_text('{"a": 1}\n\n{"a": \n', encoding="utf-8")
    with pytest.raises(JsonlError, match=r"line 3: not valid JSON") as caught:
        read_jsonl(path)
    assert caught.value.line == 3 and caught.value.msg == "Expecting value"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(JsonlError, match=r"line 2.*not UTF-8"):
        read_jsonl(path)


def test_tolerant_reading_cuts_a_torn_last_line_but_not_a_bad_middle_one(tmp_path):
    path = tmp_path / "log.jsonl"
    assert read_jsonl(path, tolerant=True) == []  # a log not started yet
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "b', encoding="utf-8")
    assert read_jsonl(path, tolerant=True) == [{"a": 1}, {"a": 2}]
    assert path.read_text(encoding="utf-8") == '{"a": 1}\n{"a": 2}\n'
    path.write_text('{"a": 1}\n{"a": \n', encoding="utf-8")  # garbled but terminated: the same case
    assert read_jsonl(path, tolerant=True) == [{"a": 1}]
    path.write_text('{"a": 1}\n{"a": \n{"a": 3}\n', encoding="utf-8")
    with pytest.raises(JsonlError, match="line 2"):
        read_jsonl(path, tolerant=True)


def test_the_definition_normalises_and_slices_bytes():
    assert normalise("  How do I *reset*\nMFA?! ") == "how do i reset mfa"
    assert shingles("Ab, cdef") == {b"ab cd", b"b cde", b" cdef"}
    assert shingles("a!") == {b"a"} and shingles("") == {b""}
    assert signature("Same text.").hashvalues.tolist() == signature("same   TEXT").hashvalues.tolist()


def test_the_numpy_signature_is_datasketchs_minhash_of_the_crc32_shingles():
    """signature() hashes all windows at once and permutes in numpy: it must stay datasketch's MinHash of
    zlib.crc32 over shingles(), byte for byte (a datasketch scheme change, or a wrong CRC table, fails here)."""
    import random
    import zlib

    from datasketch import MinHash

    rng = random.Random(0)
    alphabet = "abc def,ghé!\n✓日本"
    texts = ["", "a", "abcd", "abcde", "abcdef", "Ab, cdef", "x" * 100]
    texts += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 600))) for _ in range(100)]
    for text in texts:
        for num_perm in (128, 16):
            expected = MinHash(num_perm=num_perm, seed=1, hashfunc=zlib.crc32, scheme="affine32")
            expected.update_batch(shingles(text))
            got = signature(text, num_perm)
            assert got.hashvalues.tolist() == expected.hashvalues.tolist(), (text, num_perm)
            assert got.jaccard(expected) == 1.0


def test_generate_and_prep_call_the_same_pairs_near_duplicates():
    answer = "Enable multi-factor authentication, rotate the keys every ninety days and audit the access logs weekly."
    pairs = [
        ("How do I secure my cloud account?", answer),
        ("How do I secure my cloud account today?", answer.replace("weekly", "every week")),  # Jaccard 0.85
        ("What is a phishing email?", "A message that tricks you into giving secrets."),
    ]
    rows = [SourcedRow([{"role": "user", "content": q}, {"role": "assistant", "content": a}], {}, "") for q, a in pairs]
    prep = find_duplicates(rows, PrepConfig(near_dup_threshold=0.8))
    dedup = Deduplicator(threshold=0.8)
    generate = [dedup.check_and_add(dedup.fingerprint(q, a)) for q, a in pairs]
    assert prep.clusters == [[0, 1], [2]] and generate == [None, "near_duplicate", None]
    index = NearDuplicateIndex(0.8)
    index.add(7, signature(f"{pairs[0][0]} {pairs[0][1]}"))
    assert index.query(signature(f"{pairs[1][0]}\n{pairs[1][1]}")) == [7] and len(index) == 1
