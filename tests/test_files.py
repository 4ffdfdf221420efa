"""explorer.files: writes are whole or absent, server folders private, uploads content-addressed and bounded."""

from __future__ import annotations

import gc
import hashlib
import io
import os
import stat
import time
import zipfile
from pathlib import Path

import pytest

from explorer.errors import ExplorerError
from explorer.files import (
    FilesError,
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    private_dir,
    remove_stale,
    save_upload,
    temporary_dir,
    trim,
    zip_members,
)
from explorer.resources import BudgetError


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


# -- atomic writes ----------------------------------------------------------------------------------

def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = atomic_write_text(tmp_path / "results.json", "old")
    with pytest.raises(RuntimeError, match="disk gone"):
        with atomic_path(path) as temporary, open(temporary, "w") as f:
            f.write("half of the new")
            raise RuntimeError("disk gone")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_write_replaces_the_file_and_keeps_no_temporary(tmp_path):
    path = tmp_path / "sub" / "out.bin"  # the folder is made
    atomic_write_bytes(path, b"one")
    atomic_write_bytes(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["out.bin"]


def test_modes_private_by_default_umask_on_request(tmp_path):
    assert mode_of(atomic_write_bytes(tmp_path / "a", b"x")) == 0o600
    old = os.umask(0o027)
    try:
        assert mode_of(atomic_write_bytes(tmp_path / "b", b"x", mode=None)) == 0o640
    finally:
        os.umask(old)
    open_made = tmp_path / "c"
    open_made.write_bytes(b"x")  # the oracle: what open() gives under the test's umask
    assert mode_of(atomic_write_bytes(tmp_path / "d", b"x", mode=None)) == mode_of(open_made)


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    (tmp_path / "link").symlink_to(victim)
    atomic_write_text(tmp_path / "link", "new")
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "link").is_symlink() and (tmp_path / "link").read_text() == "new"


# -- private folders --------------------------------------------------------------------------------

def test_private_dir_is_0700_and_narrows_a_wider_one(tmp_path):
    assert mode_of(private_dir(tmp_path / "p")) == 0o700
    wide = tmp_path / "wide"
    wide.mkdir()
    wide.chmod(0o777)
    assert mode_of(private_dir(wide)) == 0o700


def test_private_dir_refuses_a_symlink_and_a_file(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "uploads").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(FilesError, match="is a symlink"):
        private_dir(tmp_path / "uploads")
    (tmp_path / "plain").write_text("x")
    with pytest.raises(FilesError, match="is not a folder"):
        private_dir(tmp_path / "plain")
    assert issubclass(FilesError, ExplorerError)


@pytest.mark.skipif(os.getuid() != 0, reason="making a folder owned by someone else needs root")
def test_private_dir_refuses_someone_elses_folder(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 12345, 12345)
    with pytest.raises(FilesError, match="belongs to another user"):
        private_dir(theirs)


# -- uploads ----------------------------------------------------------------------------------------

def test_an_upload_is_private_and_named_by_its_content(tmp_path):
    data = b"weights" * 100
    path = save_upload(data, "model.pth", tmp_path / "uploads")
    assert path.read_bytes() == data and mode_of(path) == 0o600 and mode_of(path.parent) == 0o700
    assert path.name == hashlib.sha256(data).hexdigest()[:16] + "-model.pth"
    assert save_upload(data, "model.pth", tmp_path / "uploads") == path


def test_the_default_upload_folder_is_private_and_a_symlink_there_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    path = save_upload(b"x", "a.pth")
    assert path.parent == tmp_path / "explorer-uploads" and mode_of(path.parent) == 0o700
    path.unlink()
    path.parent.rmdir()
    (tmp_path / "planted").mkdir()
    (tmp_path / "explorer-uploads").symlink_to(tmp_path / "planted")
    with pytest.raises(FilesError, match="symlink"):
        save_upload(b"x", "a.pth")
    assert list((tmp_path / "planted").iterdir()) == []


def test_a_corrupt_upload_of_the_right_name_is_rewritten(tmp_path):
    data = b"the real checkpoint" * 1000
    path = save_upload(data, "m.safetensors", tmp_path)
    path.write_bytes(data[:100])  # half-written by a process that died
    assert save_upload(data, "m.safetensors", tmp_path) == path
    assert path.read_bytes() == data
    path.unlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_bytes(data)
    path.symlink_to(elsewhere)  # even with the right content, a symlink is not trusted
    save_upload(data, "m.safetensors", tmp_path)
    assert not path.is_symlink() and path.read_bytes() == data


def test_long_and_odd_names_are_sanitized(tmp_path):
    name = "a" * 300 + ".safetensors"
    path = save_upload(b"x", name, tmp_path)
    assert path.exists() and path.suffix == ".safetensors" and len(path.name) < 200
    path = save_upload(b"y", "../../etc/pass wd\x00.pth", tmp_path)
    assert path.parent == tmp_path and path.name.endswith("-pass_wd_.pth")
    assert save_upload(b"z", "..", tmp_path).parent == tmp_path


def test_the_upload_folder_is_trimmed_oldest_first_never_the_new_one(tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_UPLOAD_DIR_BYTES", "2500")
    paths = []
    for i in range(3):
        paths.append(save_upload(bytes([i]) * 1000, f"f{i}.pth", tmp_path))
        os.utime(paths[-1], (time.time() - 100 + i, time.time() - 100 + i))
    # 3000 bytes > 2500: the oldest went when the third came
    assert [p.exists() for p in paths] == [False, True, True]
    again = save_upload(bytes([1]) * 1000, "f1.pth", tmp_path)  # reused: now the newest
    newest = save_upload(b"n" * 1000, "new.pth", tmp_path)
    assert again.exists() and newest.exists() and not paths[2].exists()
    assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 2500
    # a single upload larger than the whole limit is refused, not written
    with pytest.raises(BudgetError, match="upload_dir_bytes"):
        save_upload(b"x" * 3000, "big.pth", tmp_path)
    assert not any("big" in p.name for p in tmp_path.iterdir())


def test_trim_keeps_the_named_file_even_when_it_alone_is_over(tmp_path):
    keep = atomic_write_bytes(tmp_path / "keep", b"k" * 100)
    assert trim(tmp_path, 10, keep=keep) == [] and keep.exists()


# -- temporary folders ------------------------------------------------------------------------------

def test_a_temporary_dir_is_removed_when_done_or_dropped():
    with temporary_dir("explorer-test-") as path:
        (path / "f").write_text("x")
        assert mode_of(path) == 0o700
    assert not path.exists()
    folder = temporary_dir("explorer-test-")
    path = folder.path
    del folder
    gc.collect()
    assert not path.exists()


def test_stale_temporary_dirs_are_removed(tmp_path, monkeypatch):
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    old, fresh, other = tmp_path / "explorer-x-old", tmp_path / "explorer-x-fresh", tmp_path / "unrelated"
    for folder in (old, fresh, other):
        folder.mkdir()
    long_ago = time.time() - 2 * 86400
    os.utime(old, (long_ago, long_ago))
    os.utime(other, (long_ago, long_ago))
    assert remove_stale("explorer-x-") == [old]
    assert not old.exists() and fresh.exists() and other.exists()


# -- zips ---------------------------------------------------------------------------------------------

def _zip(names: list[str]) -> io.BytesIO:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name in names:
            archive.writestr(name, b"x")
    out.seek(0)
    return out


def test_zip_member_count_is_checked_before_the_directory_is_read():
    with pytest.raises(FilesError, match=r"declares 30 files \(at most 20 are read\)"):
        zip_members(_zip([f"f{i}" for i in range(30)]), what="'x.zip'", max_members=20)
    assert len(zip_members(_zip([f"f{i}" for i in range(20)]), what="'x.zip'", max_members=20)) == 20


@pytest.mark.parametrize("name", ["../escape.png", "/etc/passwd", "a/../../b", "c:\\x", "a\\b"])
def test_zip_odd_names_are_refused(name):
    with pytest.raises(FilesError, match="absolute paths, '..' and backslashes are refused"):
        zip_members(_zip(["ok/a.png", name]), what="'x.zip'", max_members=100)
