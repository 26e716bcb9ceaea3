"""Crash safety: what returned to its caller survives ``kill -9``, and a
clean shutdown (stdin closed, SIGTERM) drains and leaves nothing to replay.

Each kill test runs a child process that works on a store and reports, after
each call returned, what that call produced; the parent SIGKILLs it at a
random moment, many times, then reopens the store and counts. Children come
from a multiprocessing fork server that has imported iai_mcp and LanceDB
once, so a round costs tens of milliseconds instead of seconds of imports.

Rounds are random on purpose; the seed is in every failure message.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iai_mcp.store import MemoryStore

pytestmark = pytest.mark.slow  # SIGKILL loops and real server processes

READY_TIMEOUT_S = 60.0  # the first child waits for the fork server to import LanceDB


# --------------------------------------------------------------- children
# Module-level so the fork server can import them; each reports on `conn`.


def _child_setup(home: str) -> None:
    os.environ["HOME"] = home
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    # The fork server imported LanceDB but never used it: nothing was mid-operation.
    warnings.filterwarnings("ignore", message="lancedb fork support is experimental")


def _capture_child(root: str, home: str, conn: Any, round_no: int) -> None:
    _child_setup(home)
    from iai_mcp.core import dispatch
    from iai_mcp.embed import HashEmbedder

    store = MemoryStore(path=root, embedder=HashEmbedder(), compact_every=40)
    conn.send_bytes(b"ready")
    for i in range(100_000):
        result = dispatch(store, "memory_capture", {
            "text": f"round {round_no} capture {i}: the deploy key rotates on Fridays",
            "session_id": f"s{round_no}",
        })
        assert result["status"] == "inserted", result
        conn.send_bytes(result["record_id"].encode())


def _recall_child(root: str, home: str, conn: Any, round_no: int) -> None:
    _child_setup(home)
    from iai_mcp.core import dispatch
    from iai_mcp.embed import HashEmbedder

    store = MemoryStore(path=root, embedder=HashEmbedder())
    store.enable_provenance_queue(coalesce_ms=20)  # replays what the last round left
    conn.send_bytes(b"ready")
    for i in range(100_000):
        cue = f"r{round_no}-q{i} deploy key"
        result = dispatch(store, "memory_recall", {"cue": cue, "session_id": "s", "k": 4})
        conn.send_bytes("|".join([cue, *(hit["record_id"] for hit in result["hits"])]).encode())


def _compaction_child(root: str, home: str, conn: Any, round_no: int) -> None:
    _child_setup(home)
    from iai_mcp.core import dispatch
    from iai_mcp.embed import HashEmbedder

    store = MemoryStore(path=root, embedder=HashEmbedder(), compact_every=0)
    conn.send_bytes(b"ready")
    for i in range(100_000):
        for j in range(4):  # four commits, four fragments for compact() to fold
            result = dispatch(store, "memory_capture", {"text": f"round {round_no} batch {i} item {j}"})
            conn.send_bytes(b"id " + result["record_id"].encode())
        conn.send_bytes(b"compacting")
        t0 = time.perf_counter()
        store.compact()
        conn.send_bytes(b"compacted %f" % (time.perf_counter() - t0))


# ----------------------------------------------------------------- parent


@pytest.fixture(scope="module")
def forks() -> multiprocessing.context.BaseContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["tests.test_crash"])
    return ctx


class Round:
    """One child: start it, read what it reports, SIGKILL it."""

    def __init__(self, ctx: Any, target: Callable[..., None], root: Path, home: Path, round_no: int) -> None:
        self.reader, writer = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(target=target, args=(str(root), str(home), writer, round_no), daemon=True)
        self.proc.start()
        writer.close()  # ours: EOF comes when the child dies
        self.messages: list[bytes] = []

    def read_until(self, deadline: float, stop: Callable[[bytes], bool] = lambda m: False) -> bool:
        """Collect messages until ``deadline``; True as soon as one satisfies ``stop``."""
        while (remaining := deadline - time.monotonic()) > 0:
            if not self.reader.poll(remaining):
                return False
            try:
                message = self.reader.recv_bytes()
            except EOFError:
                return False
            self.messages.append(message)
            if stop(message):
                return True
        return False

    def wait_ready(self) -> None:
        assert self.read_until(time.monotonic() + READY_TIMEOUT_S, lambda m: m == b"ready"), (
            f"child never became ready (exit code {self.proc.exitcode})"
        )

    def kill(self) -> list[bytes]:
        """SIGKILL the child, then everything it reported before dying."""
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.join(10)
        assert self.proc.exitcode == -signal.SIGKILL, f"child ended early: exit code {self.proc.exitcode}"
        while True:  # the child is gone: recv ends with EOF, never blocks
            try:
                self.messages.append(self.reader.recv_bytes())
            except EOFError:
                break
        self.reader.close()
        return [m for m in self.messages if m != b"ready"]


def _seeded() -> tuple[int, random.Random]:
    seed = random.randrange(1 << 30)
    return seed, random.Random(seed)


def test_returned_captures_survive_sigkill(tmp_path, _isolate_home, forks, fake_embedder):
    """LanceDB commits a write by writing its data files, then a new manifest:
    once ``table.add`` has returned the commit is in the page cache, which a
    killed process cannot take back. Kills land anywhere, compaction included."""
    root = tmp_path / "store"
    MemoryStore(path=root, embedder=fake_embedder).close()
    seed, rng = _seeded()
    reported: list[str] = []
    rounds = 6
    for round_no in range(rounds):
        child = Round(forks, _capture_child, root, _isolate_home, round_no)
        child.wait_ready()
        child.read_until(time.monotonic() + rng.uniform(0.05, 0.6))
        reported += [m.decode() for m in child.kill()]
    assert len(reported) > rounds, f"seed {seed}: the children barely ran"
    with MemoryStore(path=root) as store:
        missing = [rid for rid in reported if store.get(rid) is None]
        assert missing == [], f"seed {seed}: {len(missing)} of {len(reported)} returned captures lost"
        assert store.load_problems == [], f"seed {seed}"
        # At most one capture per round was inserted but killed before it could report.
        assert len(reported) <= len(store) <= len(reported) + rounds, f"seed {seed}"


def test_returned_recalls_keep_their_provenance_through_sigkill(
    tmp_path, _isolate_home, forks, fake_embedder
):
    """Every (record, cue) a recall returned has exactly one provenance entry
    after the recalling process was killed at a random moment, 20 times over:
    the journal carries what the queue held in memory, and each start replays
    what the previous round left (a kill may land in that replay too)."""
    root = tmp_path / "store"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        from iai_mcp.core.capture import CaptureRequest, capture_many

        capture_many(store, fake_embedder, [
            CaptureRequest(text=f"note {i}: the deploy key for service {i} rotates weekly")
            for i in range(30)
        ])
    seed, rng = _seeded()
    returned: list[tuple[str, str]] = []  # (record_id, cue)
    for round_no in range(20):
        child = Round(forks, _recall_child, root, _isolate_home, round_no)
        child.wait_ready()
        child.read_until(time.monotonic() + rng.uniform(0.0, 0.4))
        for message in child.kill():
            cue, *record_ids = message.decode().split("|")
            returned += [(rid, cue) for rid in record_ids]
    assert len(returned) > 100, f"seed {seed}: the children barely ran"
    with MemoryStore(path=root) as store:
        queue = store.enable_provenance_queue()  # replays the last round's journal
        assert queue.flush(timeout=30)
        cues_by_record = {
            str(row.id): [entry["cue"] for entry in store.provenance_of(row.id)] for row in store.rows()
        }
        missing = [(rid, cue) for rid, cue in returned if cue not in cues_by_record[rid]]
        assert missing == [], f"seed {seed}: {len(missing)} of {len(returned)} returned entries lost"
        duplicated = {rid: cues for rid, cues in cues_by_record.items() if len(cues) != len(set(cues))}
        assert duplicated == {}, f"seed {seed}: entries applied twice"
    assert sorted(p.name for p in (root / "journal").iterdir()) == [], f"seed {seed}: journal left behind"


def test_store_killed_during_compaction_opens_with_every_reported_record(
    tmp_path, _isolate_home, forks, fake_embedder
):
    root = tmp_path / "store"
    MemoryStore(path=root, embedder=fake_embedder).close()
    seed, rng = _seeded()
    reported: list[str] = []
    killed_mid_compaction = 0
    rounds = 6
    for round_no in range(rounds):
        child = Round(forks, _compaction_child, root, _isolate_home, round_no)
        child.wait_ready()
        deadline = time.monotonic() + 30
        # Learn how long a compaction takes here, then kill inside the next one.
        assert child.read_until(deadline, lambda m: m.startswith(b"compacted")), f"seed {seed}"
        took = float(child.messages[-1].split()[1])
        for _ in range(rng.randint(0, 2)):
            assert child.read_until(deadline, lambda m: m.startswith(b"compacted")), f"seed {seed}"
        assert child.read_until(deadline, lambda m: m == b"compacting"), f"seed {seed}"
        child.read_until(time.monotonic() + rng.uniform(0.0, 0.9 * took))
        messages = child.kill()
        killed_mid_compaction += messages[-1] == b"compacting"
        reported += [m[3:].decode() for m in messages if m.startswith(b"id ")]
    assert killed_mid_compaction >= 1, f"seed {seed}: no kill landed inside compact()"
    with MemoryStore(path=root) as store:
        missing = [rid for rid in reported if store.get(rid) is None]
        assert missing == [], f"seed {seed}: {len(missing)} of {len(reported)} records lost"
        assert store.load_problems == [], f"seed {seed}"
        # A kill that came after compact() returned may catch one capture unreported.
        assert len(reported) <= len(store) <= len(reported) + rounds, f"seed {seed}"
        # And the store keeps working: the next compaction folds what the kills left.
        store.compact()
        assert store.stats()["versions"] == 1, f"seed {seed}"


# ------------------------------------------------------ clean shutdowns


def _rpc(proc: Any, message: dict[str, Any]) -> dict[str, Any] | None:
    import json

    proc.stdin.write((json.dumps(message) + "\n").encode())
    proc.stdin.flush()
    if "id" not in message:
        return None
    line = proc.stdout.readline()
    assert line, "the server closed stdout"
    return json.loads(line)


@pytest.mark.parametrize("how", ["stdin closed", "SIGTERM"])
def test_server_drains_the_queue_and_exits_cleanly(tmp_path, how, fake_embedder):
    """The MCP server owning the store (local backend) drains the provenance
    queue when the client closes stdin or sends SIGTERM right after a recall
    returned, exits 0, and leaves no journal behind: nothing needs replaying."""
    import subprocess
    import sys

    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("IAI_MCP_")}
    env.update(IAI_MCP_STORE=str(store), IAI_MCP_LOCAL="1", IAI_MCP_TEST_EMBEDDER="hash")
    proc = subprocess.Popen(
        [sys.executable, "-m", "iai_mcp", "serve"], env=env,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        reply = _rpc(proc, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}})
        assert reply["result"]["serverInfo"]["name"] == "iai-mcp"
        _rpc(proc, {"jsonrpc": "2.0", "method": "notifications/initialized"})
        for i in range(5):
            reply = _rpc(proc, {"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": {
                "name": "memory_capture", "arguments": {"text": f"note {i}: the shed key is under the pot"}}})
            assert reply["result"]["structuredContent"]["status"] == "inserted"
        returned = []
        for i in range(10):
            reply = _rpc(proc, {"jsonrpc": "2.0", "id": 20 + i, "method": "tools/call", "params": {
                "name": "memory_recall", "arguments": {"cue": f"shed key {i}", "session_id": "bye", "k": 3}}})
            returned += [(hit["record_id"], f"shed key {i}") for hit in reply["result"]["structuredContent"]["hits"]]
        if how == "SIGTERM":
            proc.send_signal(signal.SIGTERM)
        else:
            proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.stdout.read() == b""  # nothing but JSON-RPC replies reached stdout
    err = proc.stderr.read().decode()
    assert "Traceback" not in err, err
    assert len(returned) == 30
    assert list((store / "journal").iterdir()) == []
    with MemoryStore(path=store, embedder=fake_embedder) as reopened:  # no queue: no replay
        for rid, cue in returned:
            assert [e["cue"] for e in reopened.provenance_of(rid)].count(cue) == 1, (rid, cue)
