import pytest

from sectune.errors import UserError, unknown_name_error
from sectune.registry.models import get_model
from sectune.runs import (
    INCOMPLETE_MARKER,
    atomic_output_dir,
    fingerprint_files,
    is_finished,
    read_json,
    write_json,
    write_run_metadata,
)


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


def test_one_is_finished_for_every_stage(tmp_path):
    from sectune.models.load import is_train_run
    from sectune.train.api import is_finished as train_is_finished

    run = tmp_path / "run"
    assert not is_finished(run) and not is_finished(tmp_path)  # no folder; a folder without summary.json
    run.mkdir()
    write_run_metadata(run, {}, {"rows": 1})
    assert is_finished(run)  # prep, eval, a study folder: summary.json is written last
    (run / INCOMPLETE_MARKER).write_text("generation has not finished")
    assert not is_finished(run)  # generate writes in place and marks the folder until the run ends
    (run / INCOMPLETE_MARKER).unlink()
    assert not is_finished(run, needs_one_of=("adapter", "model"))
    assert not train_is_finished(run) and not is_train_run(run)  # a train run also needs its weights
    (run / "model").mkdir()
    assert is_finished(run, needs_one_of=("adapter", "model")) and train_is_finished(run) and is_train_run(run)


def test_write_json_roundtrip_unicode(tmp_path):
    write_json(tmp_path / "x.json", {"q": "pare-feu — réseau"})
    assert read_json(tmp_path / "x.json") == {"q": "pare-feu — réseau"}


def test_unknown_model_suggests_closest_key():
    with pytest.raises(UserError) as err:
        get_model("smollm2-135")
    assert "smollm2-135m" in str(err.value)
    assert "valid:" in str(unknown_name_error("thing", "zzz", ["a", "b"]))


def _dead_pid() -> int:
    import subprocess
    import sys

    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_hidden_siblings_of_a_killed_run_are_removed_and_a_live_ones_kept(tmp_path):
    import os

    out = tmp_path / "data"
    stale = tmp_path / f".data.tmp-{_dead_pid()}"
    (stale / "train.jsonl").parent.mkdir()
    (stale / "train.jsonl").write_text("{}")
    live = tmp_path / f".data.tmp-{os.getppid()}"  # another run of the same --out, still going
    live.mkdir()
    with atomic_output_dir(out) as tmp:
        (tmp / "done.txt").write_text("ok")
    assert not stale.exists() and live.is_dir() and (out / "done.txt").is_file()


def test_a_run_killed_while_replacing_gets_its_old_folder_back(tmp_path):
    from sectune.runs import remove_stale_siblings

    out = tmp_path / "data"
    moved_aside = tmp_path / f".data.old-{_dead_pid()}"
    moved_aside.mkdir()
    (moved_aside / "old.txt").write_text("old")
    remove_stale_siblings(out)
    assert (out / "old.txt").read_text() == "old" and not moved_aside.exists()


def test_a_failed_overwrite_keeps_the_old_folder_and_leaves_no_hidden_sibling(tmp_path, monkeypatch):
    from pathlib import Path

    out = tmp_path / "data"
    out.mkdir()
    (out / "old.txt").write_text("old")
    real_rename = Path.rename

    def failing_rename(self, target):
        if ".tmp-" in self.name:
            raise OSError(28, "No space left on device", str(target))
        return real_rename(self, target)

    monkeypatch.setattr(Path, "rename", failing_rename)
    with pytest.raises(UserError, match="disk is full"), atomic_output_dir(out, overwrite=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in tmp_path.iterdir()] == ["data"] and (out / "old.txt").read_text() == "old"


def test_os_errors_on_user_paths_are_one_line_user_errors_with_exit_2(tmp_path, monkeypatch, capsys):
    import errno
    import sys
    from pathlib import Path

    from sectune.cli.main import main

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    samples = tmp_path / "samples.jsonl"
    samples.write_text('{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}\n')
    cases = {
        "a part of the path is a file": ["prep", str(samples), "--out", str(blocker / "sub" / "data")],
        "check its permissions": ["prep", str(samples), "--out", str(tmp_path / "locked" / "data")],
    }
    real_mkdir = Path.mkdir

    def locked_mkdir(self, *args, **kwargs):  # root ignores chmod: refuse like a folder without write permission
        if "locked" in str(self):
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", locked_mkdir)
    for fix, argv in cases.items():
        monkeypatch.setattr(sys, "argv", ["sectune", *argv])
        with pytest.raises(SystemExit) as exited:
            main()
        err = capsys.readouterr().err.strip()
        assert exited.value.code == 2 and len(err.splitlines()) == 1 and fix in err and "Traceback" not in err
        assert err.startswith("error: ") and str(tmp_path) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "samples.jsonl"]  # nothing partial left
