"""iai_mcp.fs: the one atomic write (whole or streamed) and the one flock."""
from __future__ import annotations

import os

import pytest

from iai_mcp import fs


def test_write_atomic_replaces_with_the_mode_asked_for(tmp_path):
    target = tmp_path / "f.json"
    target.write_text("old")
    target.chmod(0o644)
    fs.write_atomic(target, "new", mode=0o600)
    assert target.read_text() == "new" and target.stat().st_mode & 0o777 == 0o600
    assert list(fs.stray_temps(tmp_path)) == []


def test_a_failed_streamed_write_leaves_the_target_and_no_temp(tmp_path):
    target = tmp_path / "backup.jsonl"
    target.write_text("yesterday\n")
    with pytest.raises(RuntimeError):
        with fs.atomic_writer(target) as out:
            out.write(b"half of today")
            raise RuntimeError("the export failed midway")
    assert target.read_text() == "yesterday\n"
    assert list(fs.stray_temps(tmp_path)) == []
    with fs.atomic_writer(target) as out:
        out.write(b"today\n")
    assert target.read_text() == "today\n" and target.stat().st_mode & 0o777 == 0o600


def test_a_file_planted_at_the_temp_name_is_neither_written_through_nor_removed(tmp_path, monkeypatch):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("not yours")
    target = tmp_path / "export.jsonl"
    planted = fs.temp_path(target)
    planted.symlink_to(elsewhere)
    monkeypatch.setattr(fs, "temp_path", lambda _target: planted)  # as if its name were guessed
    with pytest.raises(FileExistsError):
        fs.write_atomic(target, "plaintext memories")
    assert elsewhere.read_text() == "not yours" and not target.exists() and planted.is_symlink()


def test_two_writers_of_one_target_never_share_a_temp_file(tmp_path):
    target = tmp_path / "daemon.json"
    assert fs.temp_path(target) != fs.temp_path(target)


def test_open_locked_is_exclusive_until_closed(tmp_path):
    path = tmp_path / "x.lock"
    fd = fs.open_locked(path)
    assert fd is not None
    assert fs.open_locked(path) is None  # another open file description: refused
    os.close(fd)
    again = fs.open_locked(path)
    assert again is not None
    os.close(again)
