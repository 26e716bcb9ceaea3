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


def _loosen(top: Path) -> None:
    """What an earlier release left: 0755 directories and 0644 files."""
    for path in [top, *top.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() else 0o644)


def test_doctor_names_loose_paths_an_earlier_release_left_and_repair_narrows_them(cli, _isolate_home):
    """Review of issue 13 item 5: make_private_dir leaves an existing
    directory as it is, so a store or spill directory made before stays
    0755/0644 until doctor --repair narrows it."""
    assert cli("capture", "a memory from an earlier release")[0] == 0
    hook_state = make_private_dir(cli.store / "hook-state")
    (hook_state / "s-1.json").write_text("{}")
    spill = SpillDir(config.overflow_dir(), "store-id")
    spill.write([(1, b"sealed bytes")])
    spill_top = _isolate_home / ".iai-mcp"
    _loosen(cli.store)
    _loosen(spill_top)
    assert loose_entries(cli.store) and loose_entries(spill_top)

    code, out, _ = cli("doctor")
    warn = [line for line in out.splitlines() if line.startswith("WARN modes:")]
    assert code == 1 and "FAIL key:" in out and len(warn) == 1, out  # the loose key file fails
    assert f"{cli.store} (755)" in warn[0] and "doctor --repair" in warn[0]

    code, out, _ = cli("doctor", "--repair", "--dry-run")
    assert code == 0 and "would make" in out and "path(s) owner-only" in out
    assert loose_entries(cli.store)  # a dry run changes nothing

    code, out, _ = cli("doctor", "--repair", "--yes")
    assert code == 0 and "made the key file mode 0600" in out and "path(s) owner-only" in out, out
    assert loose_entries(cli.store) == [] and loose_entries(spill_top) == []
    code, out, _ = cli("doctor")
    assert code == 0 and any(line.startswith("PASS modes:") for line in out.splitlines()), out
    assert cli("doctor", "--repair")[1].strip().splitlines()[-1] == "nothing to repair"


def test_loose_paths_skips_links_and_missing_tops(tmp_path):
    from iai_mcp.fs_modes import loose_paths, make_owner_only

    top = make_private_dir(tmp_path / "top")
    outside = tmp_path / "outside.txt"
    outside.write_text("not ours")
    outside.chmod(0o644)
    (top / "link").symlink_to(outside)
    (top / "loose.txt").write_text("x")
    (top / "loose.txt").chmod(0o640)
    (top / "tight.txt").write_text("x")
    (top / "tight.txt").chmod(0o400)  # narrower than 0600 is not loose
    found = loose_paths(top, tmp_path / "missing")
    assert found == [(top / "loose.txt", 0o640)]
    assert make_owner_only(found) == []
    assert loose_paths(top) == [] and outside.stat().st_mode & 0o777 == 0o644
