"""The per-store daemon: spawn on demand, typed errors over the wire, the
single-owner lock, stale sockets, draining on SIGTERM, idle exit.

Tests about processes (spawning, signals, a killed daemon) start real
daemon processes through ``backend.connect``. Tests about the protocol run the
same ``daemon.run`` in a thread of the test process, which starts in
milliseconds instead of paying a fresh interpreter's imports.
"""
from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import uuid
from collections import Counter

import pytest

from iai_mcp import backend as composition
from iai_mcp.daemon import lifecycle as daemon
from iai_mcp.daemon import client as daemon_client
from iai_mcp.daemon import service as daemon_server
from iai_mcp.daemon import wire
from iai_mcp.core import dispatch
from iai_mcp.embed import HashEmbedder
from iai_mcp.errors import (
    InvalidInput,
    LimitExceeded,
    NotFound,
    StoreError,
    StoreLocked,
    UnknownMethod,
    WrongKey,
)
from iai_mcp.store import MemoryStore

WAIT_S = 30.0


@pytest.fixture
def root(tmp_path, monkeypatch):
    # Daemons inherit this environment: the deterministic embedder keeps
    # these lifecycle tests free of the model (test_concurrency uses it).
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.setenv("IAI_MCP_DAEMON_IDLE_TIMEOUT", "120")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    path = tmp_path / "store"
    yield path
    daemon.stop(path, timeout=WAIT_S)


class InThread:
    """``daemon.run`` on a thread of this process, stopped at the end."""

    def __init__(self, root, idle_timeout: float = 120.0) -> None:
        self.root = root
        self._ready: queue.Queue = queue.Queue()
        self.codes: list[int] = []
        self.thread = threading.Thread(target=self._run, args=(idle_timeout,))

    def _run(self, idle_timeout: float) -> None:
        code = daemon.run(self.root, idle_timeout=idle_timeout, on_listening=self._ready.put)
        self.codes.append(code)
        self._ready.put(None)

    def __enter__(self) -> daemon_server.Daemon:
        self.thread.start()
        served = self._ready.get(timeout=WAIT_S)
        assert served is not None, "the daemon did not start"
        self.daemon = served
        return served

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(WAIT_S)
        assert self.codes == [0]


def _client(root) -> daemon_client.DaemonClient:
    return daemon_client.DaemonClient(root, autostart=False).connect()


def _events(root, name):
    lines = (root / wire.LOG_FILE).read_text().splitlines()
    return [e for e in map(json.loads, lines) if e.get("event") == name]


def _capture(backend, text, **extra):
    return backend.call("memory_capture", {"text": text, **extra})


def _eventually(condition, timeout: float = WAIT_S) -> bool:
    tick = threading.Event()
    for _ in range(int(timeout / 0.02)):
        if condition():
            return True
        tick.wait(0.02)
    return condition()


# ------------------------------------------------------- daemon processes


def test_connect_spawns_one_daemon_that_owns_the_store(root):
    assert daemon.status(root) is None
    first = composition.connect(root)
    info = daemon.status(root)
    assert info is not None and info["pid"] != os.getpid()
    assert info["store"] == str(root.resolve())
    state = json.loads((root / wire.STATE_FILE).read_text())
    assert state["pid"] == info["pid"] and state["state"] == "running"
    assert stat.S_IMODE((root / wire.STATE_FILE).stat().st_mode) == 0o600  # fs.write_atomic
    assert stat.S_IMODE(os.stat(wire.socket_path(root.resolve())).st_mode) == 0o600

    rid = _capture(first, "the kettle is in the left cupboard", session_id="a")["record_id"]
    second = composition.connect(root)
    hits = second.call("memory_recall", {"cue": "where is the kettle", "session_id": "b"})["hits"]
    assert [h["record_id"] for h in hits] == [rid]
    assert second.call("ping")["pid"] == info["pid"]
    assert len(_events(root, "listening")) == 1

    # While it runs, nobody else may open the store directly.
    with pytest.raises(StoreLocked) as refused:
        MemoryStore(path=root)
    assert isinstance(refused.value, StoreError)
    assert refused.value.holder_pid == info["pid"]
    assert str(info["pid"]) in str(refused.value) and "daemon" in str(refused.value)
    assert daemon.stop(root, timeout=WAIT_S) is True
    with MemoryStore(path=root) as store:
        assert [r.literal_surface for r in store.rows()] == ["the kettle is in the left cupboard"]
    first.close()
    second.close()


@pytest.mark.slow
def test_racing_clients_start_exactly_one_daemon(root):
    pids: list[int] = []
    failures: list[BaseException] = []
    start = threading.Barrier(6)

    def client() -> None:
        try:
            start.wait(WAIT_S)
            with daemon_client.DaemonClient(root).connect() as backend:
                pids.append(backend.call("ping")["pid"])
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S * 2)
    assert failures == []
    assert len(pids) == 6 and len(set(pids)) == 1
    assert len(_events(root, "starting")) == 1


@pytest.mark.slow
def test_a_daemon_that_cannot_own_the_store_reports_why(root):
    held = MemoryStore(path=root)
    try:
        with pytest.raises(StoreLocked, match=str(os.getpid())):
            composition.connect(root)
    finally:
        held.close()
    assert len(_events(root, "fatal")) == 1
    backend = composition.connect(root)  # once the store is free, the next call starts a daemon
    assert backend.call("ping")["records"] == 0
    backend.close()


@pytest.mark.slow
def test_stale_socket_and_state_after_a_killed_daemon_are_replaced(root):
    backend = composition.connect(root)
    _capture(backend, "said before the crash")
    old = daemon.status(root)["pid"]
    os.kill(old, signal.SIGKILL)
    assert daemon.wait_for_exit(old, WAIT_S)
    sock_path = wire.socket_path(root.resolve())
    assert sock_path.exists() and json.loads((root / wire.STATE_FILE).read_text())["pid"] == old

    # The same client notices at its next call, starts a new daemon and goes on.
    hits = backend.call("memory_recall", {"cue": "crash"})["hits"]
    assert [h["literal_surface"] for h in hits] == ["said before the crash"]
    assert daemon.status(root)["pid"] != old
    assert len(_events(root, "stale_socket_removed")) == 1
    backend.close()


@pytest.mark.slow
def test_reconnects_after_the_daemon_was_stopped_between_calls(root):
    backend = composition.connect(root)
    first = _capture(backend, "one", ts="2026-01-01T00:00:00Z")
    assert daemon.stop(root, timeout=WAIT_S) is True
    assert daemon.status(root) is None and not (root / wire.STATE_FILE).exists()
    again = _capture(backend, "one", ts="2026-01-01T00:00:00Z")
    assert again["status"] == "skipped" and again["record_id"] == first["record_id"]
    assert len(_events(root, "listening")) == 2
    backend.close()


@pytest.mark.slow
def test_a_client_arriving_while_the_daemon_drains_gets_the_next_one(root):
    backend = composition.connect(root)
    _capture(backend, "before the restart")
    old = daemon.status(root)["pid"]
    os.kill(old, signal.SIGTERM)
    # No waiting: this lands on the stopping daemon, on no daemon, or on a new
    # one that waits for the old one to let go of the store.
    result = _capture(backend, "during the restart")
    assert result["status"] == "inserted"
    assert daemon.wait_for_exit(old, WAIT_S)
    assert backend.call("ping")["records"] == 2  # from whichever daemon serves now
    backend.close()


@pytest.mark.slow
def test_sigterm_drains_the_provenance_queue(root):
    # Started here rather than by the client, so that its exit status is ours to read.
    root.mkdir()
    with open(root / wire.LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    assert _eventually(lambda: daemon.status(root) is not None)
    backend = _client(root)
    rids = [_capture(backend, f"note {i} about the garden shed")["record_id"] for i in range(20)]
    pid = daemon.status(root)["pid"]
    returned: Counter = Counter()
    for i in range(30):
        for hit in backend.call("memory_recall", {"cue": f"garden shed {i}", "session_id": "t"})["hits"]:
            returned[(hit["record_id"], f"garden shed {i}")] += 1
    os.kill(pid, signal.SIGTERM)  # straight after the last recall: its entries are still queued
    assert daemon.wait_for_exit(pid, WAIT_S)
    backend.close()
    assert not wire.socket_path(root.resolve()).exists()
    assert not (root / wire.STATE_FILE).exists()
    assert [e["reason"] for e in _events(root, "stopped")] == ["signal"]
    assert proc.wait(WAIT_S) == 0

    logged: Counter = Counter()
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        for rid in rids:
            for entry in store.provenance_of(uuid.UUID(rid)):
                assert entry["session_id"] == "t"
                logged[(rid, entry["cue"])] += 1
    assert sum(returned.values()) >= 30
    assert logged == returned


@pytest.mark.slow
def test_a_stopped_daemon_exits_whatever_threads_its_libraries_left(root):
    """Once the store is closed the process ends: a thread a native library
    left running (lancedb's runtime has no shutdown of its own) must not keep
    a stopped daemon alive, nor hold ``stop`` to its timeout."""
    root.mkdir()
    program = (
        "import sys, threading\n"
        "threading.Thread(target=threading.Event().wait, name='a-library-thread').start()\n"
        "from iai_mcp.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    with open(root / wire.LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", program, "--store", str(root), "daemon", "run"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert _eventually(lambda: daemon.status(root) is not None)
        _capture(_client(root), "the shed key is under the blue pot")
        assert daemon.stop(root, timeout=10)
        assert proc.wait(WAIT_S) == 0
        assert [e["reason"] for e in _events(root, "stopped")] == ["signal"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        assert [row.literal_surface for row in store.rows()] == ["the shed key is under the blue pot"]


# ------------------------------------------------ protocol (daemon in a thread)


def test_a_shutdown_that_cannot_write_its_state_still_closes_the_store(root, monkeypatch, caplog):
    """A full disk refusing daemon.json at shutdown must not skip the close:
    the process ends right after, and only the close puts the provenance
    still queued on disk."""
    real = daemon_server.Daemon._write_state

    def no_room_to_stop(self, state):
        if state == "stopping":
            raise OSError(28, "No space left on device")
        real(self, state)

    monkeypatch.setattr(daemon_server.Daemon, "_write_state", no_room_to_stop)
    with InThread(root):
        backend = _client(root)
        rid = _capture(backend, "the spare key is in the blue pot")["record_id"]
        hits = backend.call("memory_recall", {"cue": "spare key", "session_id": "t"})["hits"]
        backend.close()
    assert [h["record_id"] for h in hits] == [rid]
    events = [(r.getMessage(), r.fields) for r in caplog.records if r.name == "iai_mcp.daemon"]
    assert [f["state"] for m, f in events if m == "state_not_written"] == ["stopping"]
    assert [f["reason"] for m, f in events if m == "stopped"] == ["signal"]
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:  # the lock was released
        assert [e["session_id"] for e in store.provenance_of(uuid.UUID(rid))] == ["t"]


def test_errors_come_back_as_the_same_class_with_the_same_message(root, tmp_path):
    local = MemoryStore(path=tmp_path / "local", embedder=HashEmbedder())
    with InThread(root), _client(root) as backend:
        cases = [
            ("memory_recall", {"cue": "   "}),
            ("memory_capture", {"text": "x", "k": 3}),
            ("memory_frobnicate", {}),
            ("memory_get", {"id": str(uuid.uuid4())}),
            ("memory_recall", {"cue": "x", "k": 10_000}),
        ]
        seen = set()
        for method, params in cases:
            with pytest.raises(Exception) as expected:
                dispatch(local, method, params)
            with pytest.raises(Exception) as got:
                backend.call(method, params)
            assert type(got.value) is type(expected.value), (method, params)
            assert str(got.value) == str(expected.value)
            seen.add(type(got.value))
        assert seen == {InvalidInput, UnknownMethod, NotFound, LimitExceeded}
        # Input the client cannot even encode changes nothing and says why.
        with pytest.raises(InvalidInput, match="plain JSON"):
            backend.call("memory_capture", {"text": object()})
        assert backend.call("ping")["records"] == 0
    local.close()


def test_start_up_warms_through_core_warmup_model_outside_the_store_lock(root, tmp_path, monkeypatch):
    """The daemon and the ``warmup`` method share one warm-up: the model loads
    without the lock (requests that need no model go on meanwhile), the
    keyword index, which recalls share, is built under it."""
    from iai_mcp.core import warmup

    lock = threading.Lock()
    seen = []

    class Probe(HashEmbedder):
        def warmup(self) -> None:
            seen.append(("model", lock.locked()))

    real_index = warmup.keyword_index
    monkeypatch.setattr(warmup, "keyword_index", lambda s: seen.append(("index", lock.locked())) or real_index(s))
    with MemoryStore(path=tmp_path / "probe", embedder=Probe()) as store:
        assert warmup.warm(store, index_lock=lock)["embedder"] == HashEmbedder().name
        assert seen == [("model", False), ("index", True)]
        assert dispatch(store, "warmup", {})["embedder"] == HashEmbedder().name  # same function
    seen.clear()
    with InThread(root), _client(root) as backend:
        assert _eventually(lambda: backend.call("ping")["embedder_ready"])
        assert [step for step, _ in seen] == ["index"]  # the daemon warmed through core.warmup


def test_a_parameter_given_twice_is_refused_and_nothing_applied(root):
    """JSON allows a key twice and json.loads keeps the last one; a request
    saying "pinned": true and "pinned": false is contradictory instead."""
    with InThread(root), _client(root) as backend:
        rid = _capture(backend, "a memory to pin")["record_id"]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT_S)
        sock.connect(str(wire.socket_path(root.resolve())))
        reader = wire.LineReader(sock)
        sock.sendall(b'{"id": 3, "method": "memory_update", "params": {"id": "%s", "pinned": true, '
                     b'"pinned": false}}\n' % rid.encode())
        reply = json.loads(reader.read_line())
        sock.close()
        assert reply["id"] == 3 and reply["error"]["type"] == "InvalidInput"
        assert "'pinned' twice" in reply["error"]["message"]
        assert backend.call("memory_get", {"id": rid})["history"][-1]["action"] == "captured"


def test_malformed_and_oversized_requests_get_typed_errors(root, monkeypatch):
    with InThread(root), _client(root) as backend:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(WAIT_S)
        sock.connect(str(wire.socket_path(root.resolve())))
        reader = wire.LineReader(sock)
        sock.sendall(b"this is not json\n")
        error = json.loads(reader.read_line())["error"]
        assert error["type"] == "InvalidInput" and "JSON" in error["message"]
        sock.sendall(b'{"id": 1, "method": "ping", "params": []}\n')
        assert json.loads(reader.read_line())["error"]["type"] == "InvalidInput"
        sock.sendall(b'{"id": "two", "method": "ping"}\n')  # the connection is still usable
        reply = json.loads(reader.read_line())
        assert reply["id"] == "two" and reply["result"]["store"] == str(root.resolve())
        sock.sendall(b"x" * (wire.MAX_MESSAGE_BYTES + 2))
        reply = json.loads(reader.read_line())
        assert reply["id"] is None and reply["error"]["type"] == "LimitExceeded"
        assert reader.read_line() is None  # the daemon dropped that connection
        sock.close()
        # The client refuses an oversized request itself, before sending it.
        monkeypatch.setattr(wire, "MAX_MESSAGE_BYTES", 1000)
        with pytest.raises(LimitExceeded, match="at most 1000"):
            _capture(backend, "y" * 2000)
        monkeypatch.undo()
        info = backend.call("ping")
        assert info["requests"] == 0 and info["records"] == 0


def test_idle_timeout_waits_for_connected_clients(root):
    codes: list[int] = []
    clients: list[daemon_client.DaemonClient] = []
    connect_at_once = lambda _daemon: clients.append(_client(root))  # noqa: E731
    thread = threading.Thread(target=lambda: codes.append(
        daemon.run(root, idle_timeout=0.3, on_listening=connect_at_once)))
    thread.start()
    sock_path = wire.socket_path(root.resolve())
    assert _eventually(lambda: bool(clients))
    (backend,) = clients
    thread.join(1.2)  # several idle periods, but a client is connected
    assert thread.is_alive()
    assert backend.call("ping")["connections"] == 1
    backend.close()
    thread.join(WAIT_S)
    assert codes == [0] and not sock_path.exists()
    assert not (root / wire.STATE_FILE).exists()


def test_daemon_puts_back_a_socket_file_that_was_removed(root, monkeypatch, capfd):
    monkeypatch.setattr(daemon_server, "SOCKET_CHECK_S", 0.05)
    sock_path = wire.socket_path(root.resolve())
    with InThread(root):
        sock_path.unlink()  # as a /tmp cleaner would
        assert _eventually(sock_path.exists)
        with _client(root) as backend:
            assert backend.call("ping")["pid"] == os.getpid()
    assert '"event": "socket_rebound"' in capfd.readouterr().err


def test_long_store_path_gets_a_private_socket_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4, "store")
    sock_path = wire.socket_path(deep.resolve())
    assert len(os.fsencode(deep / wire.SOCKET_FILE)) > wire.MAX_SOCKET_PATH_BYTES
    assert sock_path.parent == wire.private_socket_dir()
    with InThread(deep), _client(deep) as backend:
        assert backend.call("ping")["socket"] == str(sock_path)
        assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    info = os.lstat(sock_path.parent)
    assert stat.S_IMODE(info.st_mode) == 0o700 and info.st_uid == os.getuid()
    assert not sock_path.exists()


def test_a_socket_directory_others_can_enter_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(wire, "PRIVATE_SOCKET_BASE", tmp_path)
    deep = tmp_path.joinpath(*["a-rather-long-directory-name"] * 4, "store")
    wire.private_socket_dir().mkdir(mode=0o755)
    os.chmod(wire.private_socket_dir(), 0o755)
    with pytest.raises(StoreError, match="mode 0700"):
        daemon_client.DaemonClient(deep).connect()
    assert not deep.exists()  # refused before creating anything


# --------------------------------------------------------- lock and switches


def test_store_lock_in_one_process_and_after_a_failed_open(tmp_path, monkeypatch):
    path = tmp_path / "s"
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "right")
    first = MemoryStore(path=path)
    with pytest.raises(StoreLocked):
        MemoryStore(path=path)  # two writers in one process would diverge just the same
    first.close()
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "wrong")
    with pytest.raises(WrongKey):
        MemoryStore(path=path)
    monkeypatch.setenv("IAI_MCP_CRYPTO_PASSPHRASE", "right")
    MemoryStore(path=path).close()  # the failed open released the lock


def test_local_switch_opens_the_store_in_process(tmp_path, monkeypatch):
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    backend = composition.connect(tmp_path / "s", local=True)
    assert isinstance(backend, composition.LocalBackend)
    _capture(backend, "in process")
    backend.close()
    monkeypatch.setenv("IAI_MCP_LOCAL", "1")
    backend = composition.connect(tmp_path / "s")
    assert isinstance(backend, composition.LocalBackend) and len(backend.store) == 1
    backend.close()
    assert daemon.status(tmp_path / "s") is None


def test_stop_and_status_when_no_daemon_runs(tmp_path):
    assert daemon.status(tmp_path / "nothing") is None
    assert daemon.stop(tmp_path / "nothing") is False
    assert not (tmp_path / "nothing").exists()


_SLOW_OPEN = '''
import os, signal, threading
from pathlib import Path
import iai_mcp.backend as composition

_open = composition.open_store

def open_store(*args, **kwargs):
    # Emulates a large store: owned (store.lock taken) but not listening yet,
    # until SIGTERM arrives or the bounded wait runs out.
    store = _open(*args, **kwargs)
    got_term = threading.Event()
    previous = signal.getsignal(signal.SIGTERM)
    def on_term(signum, frame):
        got_term.set()
        previous(signum, frame)
    signal.signal(signal.SIGTERM, on_term)
    Path(os.environ["SLOW_OPEN_MARK"]).write_text(str(os.getpid()))
    for _ in range(1500):
        if got_term.wait(0.02):
            break
    signal.signal(signal.SIGTERM, previous)
    return store

composition.open_store = open_store
'''


@pytest.mark.slow
def test_stop_reaches_a_daemon_that_is_still_opening_the_store(root, tmp_path, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SLOW_OPEN)
    mark = tmp_path / "opened"
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("SLOW_OPEN_MARK", str(mark))
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert _eventually(mark.exists), "the daemon did not open the store"
        assert daemon.status(root) is None
        assert daemon.stop(root, timeout=WAIT_S) is True
        assert proc.wait(timeout=WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)


def test_stop_leaves_alone_a_live_process_that_is_not_this_stores_daemon(tmp_path):
    store = tmp_path / "s"
    store.mkdir()
    # store.lock naming a live process that is no daemon (this test runner).
    (store / "store.lock").write_text(f"{os.getppid()}\n")
    assert daemon.stop(store) is False


def test_a_request_left_in_the_backlog_at_shutdown_is_refused_unrun(root, monkeypatch):
    records = [{"text": "imported while the daemon stops", "ts": "2025-01-01T00:00:00Z"}]
    with InThread(root) as served:
        # The accept loop stops taking connections, as when it has just decided
        # to exit idle: the next client waits in the listen backlog.
        monkeypatch.setattr(served, "_accept", lambda: None)
        monkeypatch.setattr(served, "_accept_pending", lambda: False)
        late = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        late.settimeout(WAIT_S)
        late.connect(str(wire.socket_path(root.resolve())))
        late.sendall(wire.encode({"id": 9, "method": "memory_import", "params": {"records": records}}))
    with late:
        reply = json.loads(wire.LineReader(late).read_line())
    assert reply["id"] == 9 and reply["error"]["code"] == wire.STOPPING
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        assert len(store) == 0


def test_the_client_resends_any_method_the_stopping_daemon_did_not_run(tmp_path):
    root = tmp_path / "fake"
    root.mkdir()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(wire.socket_path(root.resolve())))
    listener.listen()
    listener.settimeout(WAIT_S)
    seen: list[str] = []

    def serve() -> None:
        for answer in ("stopping", "ok"):
            conn, _ = listener.accept()
            with conn:
                conn.settimeout(WAIT_S)
                request = json.loads(wire.LineReader(conn).read_line())
                seen.append(request["method"])
                conn.sendall(wire.stopping_error(request["id"]) if answer == "stopping" else
                             wire.encode({"id": request["id"], "result": {"inserted": 1}}))

    server = threading.Thread(target=serve)
    server.start()
    try:
        with daemon_client.DaemonClient(root, autostart=False) as backend:
            assert backend.call("memory_import", {"records": [{"text": "x"}]}) == {"inserted": 1}
    finally:
        server.join(WAIT_S)
        listener.close()
    assert seen == ["memory_import", "memory_import"]


@pytest.mark.slow
def test_the_previous_releases_spawn_command_still_starts_a_daemon(root):
    """A client started before an upgrade spawns ``-m iai_mcp.daemon run --store``."""
    root.mkdir()
    with open(root / wire.LOG_FILE, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "iai_mcp.daemon", "run", "--store", str(root)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    try:
        assert _eventually(lambda: daemon.status(root) is not None or proc.poll() is not None)
        assert daemon.status(root)["pid"] == proc.pid
        assert daemon._is_daemon_of(proc.pid, root.resolve())
        assert daemon.stop(root) and proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
