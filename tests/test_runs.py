import pytest

from sectune.errors import UserError, unknown_name_error
from sectune.registry.models import get_model
from sectune.runs import atomic_output_dir, fingerprint_files, read_json, write_json, write_run_metadata


def test_atomic_output_dir_appears_only_on_success(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError), atomic_output_dir(out) as tmp:
        (tmp / "half.jsonl").write_text("{}")
        raise RuntimeError("boom")
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []
    with atomic_output_dir(out) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert (out / "done.txt").read_text() == "ok"


def test_atomic_output_dir_refuses_to_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(UserError, match="already exists"), atomic_output_dir(tmp_path / "out"):
        pass


def test_run_metadata_and_fingerprint(tmp_path):
    write_run_metadata(tmp_path, {"a": 1}, {"rows": 3})
    assert read_json(tmp_path / "summary.json") == {"rows": 3}
    assert "torch" in read_json(tmp_path / "versions.json")
    assert (tmp_path / "config.yaml").read_text().strip() == "a: 1"
    data = tmp_path / "data.jsonl"
    data.write_text("x")
    before = fingerprint_files([data])
    data.write_text("y")
    assert fingerprint_files([data]) != before


def test_write_json_roundtrip_unicode(tmp_path):
    write_json(tmp_path / "x.json", {"q": "pare-feu — réseau"})
    assert read_json(tmp_path / "x.json") == {"q": "pare-feu — réseau"}


def test_unknown_model_suggests_closest_key():
    with pytest.raises(UserError) as err:
        get_model("smollm2-135")
    assert "smollm2-135m" in str(err.value)
    assert "valid:" in str(unknown_name_error("thing", "zzz", ["a", "b"]))
