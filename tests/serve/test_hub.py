"""`--push-to-hub`: the dry run lists the files, the token comes from HF_TOKEN only, the upload is one call."""

from __future__ import annotations

import pytest

from sectune.errors import UserError
from sectune.serve.hub import push_to_hub


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "merged"
    (out / "sub").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(b"x" * 100)
    (out / "README.md").write_text("card")
    (out / "sub" / "extra.json").write_text("{}")
    (out / ".DS_Store").write_text("junk")
    return out


class RecordingApi:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.fail = fail

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        if self.fail:
            raise self.fail
        return type("Commit", (), {"commit_url": "https://huggingface.co/me/model/commit/1"})()


def test_the_dry_run_lists_the_files_and_needs_no_token(folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    upload = push_to_hub(folder, "me/model", dry_run=True, api=RecordingApi())
    assert upload.files == [("README.md", 4), ("model.safetensors", 100), ("sub/extra.json", 2)]
    assert upload.total_bytes == 106 and upload.url is None


def test_without_a_token_nothing_is_sent(folder, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.chdir(folder.parent)  # no .env here
    api = RecordingApi()
    with pytest.raises(UserError, match="HF_TOKEN"):
        push_to_hub(folder, "me/model", api=api)
    assert api.calls == []


def test_the_upload_creates_a_private_repo_and_uploads_the_folder(folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_1234")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    api = RecordingApi()
    upload = push_to_hub(folder, "me/model", api=api)
    assert [name for name, _ in api.calls] == ["create_repo", "upload_folder"]
    assert api.calls[0][1]["private"] is True and api.calls[0][1]["exist_ok"] is True
    assert api.calls[1][1]["folder_path"] == str(folder) and api.calls[1][1]["repo_id"] == "me/model"
    assert upload.url and upload.url.endswith("/commit/1")


def test_an_upload_error_is_one_line_without_the_token(folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_1234")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    api = RecordingApi(fail=RuntimeError("401 for token hf_secret_token_1234\nmore"))
    with pytest.raises(UserError) as error:
        push_to_hub(folder, "me/model", api=api)
    assert "hf_secret_token_1234" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("repo", ["model", "a/b/c", "/model", "me/"])
def test_a_bad_repo_id_is_refused(folder, repo):
    with pytest.raises(UserError, match="OWNER/NAME"):
        push_to_hub(folder, repo, dry_run=True)


def test_offline_mode_refuses_the_upload(folder, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_1234")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="HF_HUB_OFFLINE"):
        push_to_hub(folder, "me/model", api=RecordingApi())
