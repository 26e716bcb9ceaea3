"""Issue 13 item 5: everything iai-mcp creates is owner-only (0700 / 0600),
whichever process creates it: a local store, the daemon, the hooks, a spill.

Each test starts from the common 0022 umask (the one that gave 0755/0644
before), so a pass means the project narrowed it, not the test runner.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from iai_mcp import config
from iai_mcp.fs import make_private_dir
from iai_mcp.provenance_queue.spill import SpillDir
from iai_mcp.store import MemoryStore

SAMPLE = Path(__file__).parent / "data" / "sample_transcript.jsonl"
SRC = str(Path(__file__).resolve().parent.parent / "src")


@pytest.fixture(autouse=True)
def _loose_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def loose_entries(top: Path) -> list[str]:
    """Every directory not 0700 and every file not 0600 under (and including) ``top``;
    sockets are checked too (0600)."""
    found = []
    for path in [top, *sorted(top.rglob("*"))]:
        info = path.lstat()
        mode = stat.S_IMODE(info.st_mode)
        if stat.S_ISLNK(info.st_mode):
            continue
        want = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if mode != want:
            found.append(f"{path.relative_to(top.parent)} {mode:o}")
    return found


def test_a_store_opened_directly_is_owner_only(tmp_path, fake_embedder):
    root = tmp_path / "a" / "store"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        from iai_mcp.core import dispatch

        for i in range(3):
            dispatch(store, "memory_capture", {"text": f"memory number {i}", "cue": f"cue {i}", "tags": ["t"]})
        dispatch(store, "memory_recall", {"cue": "memory"})
        store.compact()
    assert loose_entries(tmp_path / "a") == []


def test_the_local_cli_and_the_stop_hook_leave_owner_only_files(cli, tmp_path):
    transcript = tmp_path / "t" / "session.jsonl"
    transcript.parent.mkdir()
    shutil.copy(SAMPLE, transcript)
    code, _, err = cli("capture", "a memory made by the CLI")
    assert code == 0, err
    payload = {"session_id": "s-1", "transcript_path": str(transcript), "hook_event_name": "Stop"}
    code, _, err = cli("hook", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    assert (cli.store / "hook-state").is_dir()
    assert loose_entries(cli.store) == []


def test_a_spill_directory_and_its_files_are_owner_only(_isolate_home):
    spill = SpillDir(config.overflow_dir(), "store-id")
    spill.write([(1, b"sealed bytes")])
    assert spill.files()
    assert loose_entries(_isolate_home / ".iai-mcp") == []


def test_make_private_dir_creates_every_missing_parent_0700(tmp_path):
    made = make_private_dir(tmp_path / "x" / "y" / "z")
    assert made.is_dir()
    assert loose_entries(tmp_path / "x") == []
    (tmp_path / "plain").write_text("")
    with pytest.raises(NotADirectoryError):
        make_private_dir(tmp_path / "plain")


@pytest.mark.slow
def test_a_store_made_by_the_daemon_is_owner_only(tmp_path):
    """The real daemon, spawned by a real client process with a 0022 umask."""
    root = tmp_path / "d" / "store"
    env = {**os.environ, "PYTHONPATH": SRC, "IAI_MCP_TEST_EMBEDDER": "hash", "IAI_MCP_STORE": str(root)}
    env.pop("IAI_MCP_LOCAL", None)
    for argv in (["capture", "made through the daemon", "--tag", "x"], ["recall", "daemon"]):
        proc = subprocess.run([sys.executable, "-m", "iai_mcp", *argv], env=env, capture_output=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr.decode()
    from iai_mcp.daemon import lifecycle

    assert lifecycle.stop(root, timeout=30)
    assert loose_entries(tmp_path / "d") == []
