"""Atomic writes: a failed write leaves the old file, final files follow the umask, errors are one line."""

import errno
import os
import stat

import numpy as np
import pytest

from harmonization import files


def test_files_are_whole_and_get_the_umask_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        files.write_text(tmp_path / "a" / "x.txt", "hello")
        files.write_json(tmp_path / "x.json", {"b": float("nan"), "a": 1})
        files.write_npy(tmp_path / "x.npy", np.arange(3))
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "x.txt").read_text() == "hello"
    assert (tmp_path / "x.json").read_text().startswith('{\n "a": 1')
    assert np.load(tmp_path / "x.npy").tolist() == [0, 1, 2]
    for name in ("a/x.txt", "x.json", "x.npy"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "x.json", "x.npy"]  # no temporaries


def test_a_full_disk_keeps_the_old_file_and_names_the_path(tmp_path, monkeypatch):
    target = tmp_path / "summary.json"
    files.write_text(target, "old")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(files.OutputError) as caught:
        files.write_text(target, "new")
    message = str(caught.value)
    assert message == f"cannot write {target}: No space left on device" and "\n" not in message
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_folder_or_a_file_in_the_way_is_one_line(tmp_path):
    (tmp_path / "dir").mkdir()
    with pytest.raises(files.OutputError, match=r"cannot write .*dir: Is a directory$"):
        files.write_text(tmp_path / "dir", "x")
    (tmp_path / "file").write_text("keep")
    with pytest.raises(files.OutputError, match=r"cannot write .*file/x.txt: "):
        files.write_text(tmp_path / "file" / "x.txt", "x")
    assert (tmp_path / "file").read_text() == "keep"


def test_temporary_path_renames_on_success_and_removes_on_failure(tmp_path):
    target = tmp_path / "model.keras"
    with files.temporary_path(target, suffix=".keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path
        tmp.write_bytes(b"weights")
    assert target.read_bytes() == b"weights"
    with pytest.raises(RuntimeError):
        with files.temporary_path(target, suffix=".keras") as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("killed")
    assert target.read_bytes() == b"weights"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]
