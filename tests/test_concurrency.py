"""Many sessions, one memory: processes capturing and recalling at once lose nothing.

Three worker processes (long-lived clients, as ``iai-mcp serve`` is) and a
hook-like process (a new connection for every call) start together on one
empty store, race to start its daemon, and each capture unique texts and
recall with real cues (no ``cue_embedding``: the real MiniLM model embeds in
the daemon). Afterwards the store, opened directly, must hold every capture
exactly once and, for every hit any recall returned, exactly one provenance
entry with that cue and session.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from pathlib import Path
from uuid import UUID

import pytest

from iai_mcp.daemon import lifecycle as daemon
from iai_mcp.daemon import wire
from iai_mcp.store import MemoryStore

pytestmark = pytest.mark.slow  # four processes, the real model, about 12 s

WORKERS = 3
CALLS = 200  # captures and recalls per worker
HOOK_CALLS = 40
TIMEOUT_S = 240

_CLIENT = textwrap.dedent(
    """
    import json, sys
    from iai_mcp import backend as composition

    root, name, calls, mode, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
    colours = ["red", "green", "blue", "amber", "violet"]
    captures, returned = [], []
    backend = composition.connect(root) if mode == "persistent" else None
    for i in range(calls):
        if mode == "per-call":  # a hook or a CLI command: connect, one call, gone
            backend = composition.connect(root)
        text = f"{name} note {i}: the {colours[i % 5]} kettle number {i} whistles at dawn"
        result = backend.call("memory_capture", {"text": text, "session_id": name})
        captures.append({"text": text, **result})
        if mode == "per-call":
            backend.close()
            backend = composition.connect(root)
        cue = f"which kettle whistles, {name} {i} {colours[(i + 2) % 5]}"
        hits = backend.call("memory_recall", {"cue": cue, "session_id": name})["hits"]
        returned += [[hit["record_id"], cue, name] for hit in hits]
        if mode == "per-call":
            backend.close()
    if mode == "persistent":
        backend.close()
    with open(out, "w") as fh:
        json.dump({"captures": captures, "returned": returned}, fh)
    """
)


def _start(root: Path, name: str, calls: int, mode: str, out: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _CLIENT, str(root), name, str(calls), mode, str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )


def test_concurrent_clients_lose_no_capture_and_no_provenance(tmp_path, monkeypatch):
    root = tmp_path / "store"
    monkeypatch.delenv("IAI_MCP_TEST_EMBEDDER", raising=False)  # the real model
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    monkeypatch.setenv("IAI_MCP_DAEMON_IDLE_TIMEOUT", "120")
    env = dict(os.environ)
    jobs = {f"w{i}": ("persistent", CALLS) for i in range(WORKERS)} | {"hook": ("per-call", HOOK_CALLS)}
    procs = {name: _start(root, name, calls, mode, tmp_path / f"{name}.json", env)
             for name, (mode, calls) in jobs.items()}
    stderr = {}
    try:
        for name, proc in procs.items():
            _, stderr[name] = proc.communicate(timeout=TIMEOUT_S)
            assert proc.returncode == 0, f"{name} failed:\n{stderr[name][-3000:]}"
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
        assert daemon.stop(root, timeout=60) is True

    log = (root / wire.LOG_FILE).read_text()
    events = Counter(json.loads(line)["event"] for line in log.splitlines())
    assert events["starting"] == events["listening"] == 1  # one daemon served everyone
    assert events["fatal"] == events["request_failed"] == 0
    for text in [log, *stderr.values()]:
        assert "database is locked" not in text
        assert "Traceback" not in text

    results = {name: json.loads((tmp_path / f"{name}.json").read_text()) for name in jobs}
    captures = [c for r in results.values() for c in r["captures"]]
    returned = Counter(tuple(p) for r in results.values() for p in r["returned"])
    assert len(captures) == WORKERS * CALLS + HOOK_CALLS
    assert {c["status"] for c in captures} == {"inserted"}
    assert sum(returned.values()) > len(captures)  # recalls found plenty to leave provenance on

    logged: Counter = Counter()
    with MemoryStore(path=root) as store:
        stored = Counter(row.literal_surface for row in store.rows())
        assert stored == Counter(c["text"] for c in captures)  # each exactly once, nothing else
        for capture in captures:
            assert store.row(UUID(capture["record_id"])).literal_surface == capture["text"]
        for row in store.rows():
            for entry in store.provenance_of(row.id):
                logged[(str(row.id), entry["cue"], entry["session_id"])] += 1
    assert logged == returned
