"""Issue 13 item 4: a passphrase store's daemon serves only clients that prove
the passphrase, and the daemon does not keep the passphrase in its environment.

The protocol tests run ``daemon.run`` in a thread (as test_daemon does); the
last test spawns the real daemon process and reads its ``/proc/<pid>/environ``.
"""
from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
from pathlib import Path

import pytest

from iai_mcp import backend as composition
from iai_mcp.config import PASSPHRASE_ENV, KeySettings
from iai_mcp.daemon import auth, wire
from iai_mcp.daemon import client as daemon_client
from iai_mcp.daemon import lifecycle as daemon
from iai_mcp.errors import AuthFailed, KeyUnavailable
from iai_mcp.store import META_FILE, MemoryStore

PASSPHRASE = "correct horse battery staple"
SECRET_TEXT = "the safe combination is 31-7-22"
WAIT_S = 30.0


@pytest.fixture
def root(tmp_path, monkeypatch, fake_embedder):
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    monkeypatch.setenv("IAI_MCP_DAEMON_IDLE_TIMEOUT", "120")
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    path = tmp_path / "store"
    with MemoryStore(path=path, embedder=fake_embedder, key_settings=KeySettings(PASSPHRASE)) as store:
        from iai_mcp.core import dispatch

        dispatch(store, "memory_capture", {"text": SECRET_TEXT})
        assert store.key_source == "passphrase"
    yield path
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)  # so the teardown's stop can ask it
    daemon.stop(path, timeout=WAIT_S)


class InThread:
    def __init__(self, root: Path, passphrase: str) -> None:
        self._ready: queue.Queue = queue.Queue()
        self.codes: list[int] = []
        self.thread = threading.Thread(target=lambda: self._run(root, passphrase))

    def _run(self, root: Path, passphrase: str) -> None:
        self.codes.append(daemon.run(root, idle_timeout=120, on_listening=self._ready.put,
                                     key_settings=KeySettings(passphrase)))
        self._ready.put(None)

    def __enter__(self):
        self.thread.start()
        self.daemon = self._ready.get(timeout=WAIT_S)
        assert self.daemon is not None, "the daemon did not start"
        return self.daemon

    def __exit__(self, *exc: object) -> None:
        self.daemon.request_stop()
        self.thread.join(WAIT_S)
        assert self.codes == [0]


def _raw(root: Path) -> tuple[socket.socket, wire.LineReader]:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT_S)
    sock.connect(str(wire.socket_path(root.resolve())))
    return sock, wire.LineReader(sock)


def _ask(sock: socket.socket, reader: wire.LineReader, method: str, params=None) -> dict:
    sock.sendall(wire.encode({"id": 1, "method": method, "params": params or {}}))
    return json.loads(reader.read_line())


def _recall(root: Path) -> dict:
    with daemon_client.DaemonClient(root, autostart=False) as client:
        return client.call("memory_recall", {"cue": "safe combination"})


def test_only_a_client_with_the_passphrase_reads_the_store(root, monkeypatch):
    with InThread(root, PASSPHRASE):
        monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
        with pytest.raises(KeyUnavailable, match=PASSPHRASE_ENV):
            _recall(root)
        monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
        with pytest.raises(AuthFailed):
            _recall(root)
        monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
        assert [h["literal_surface"] for h in _recall(root)["hits"]] == [SECRET_TEXT]


def test_a_client_that_skips_the_handshake_gets_an_error_and_a_closed_connection(root):
    with InThread(root, PASSPHRASE):
        for method in ("memory_recall", "ping", "memory_export"):
            sock, reader = _raw(root)
            with sock:
                reply = _ask(sock, reader, method, {"cue": "safe"} if method == "memory_recall" else {})
                assert reply["error"]["type"] == "AuthRequired" and "result" not in reply
                assert SECRET_TEXT not in json.dumps(reply)
                assert reader.read_line() is None  # closed by the daemon


def test_a_wrong_or_replayed_proof_is_refused(root):
    with InThread(root, PASSPHRASE):
        sock, reader = _raw(root)
        with sock:
            challenge = _ask(sock, reader, auth.CHALLENGE)["result"]
            assert challenge["required"] is True
            wrong = auth.derive_key("wrong", bytes.fromhex(challenge["salt"]), challenge["kdf"])
            reply = _ask(sock, reader, auth.AUTH,
                         {"proof": auth.proof(wrong, challenge["store_id"], bytes.fromhex(challenge["nonce"]))})
            assert reply["error"]["type"] == "AuthFailed"
            assert reader.read_line() is None

        # A right proof works once, on the connection whose nonce it answers.
        sock, reader = _raw(root)
        with sock:
            challenge = _ask(sock, reader, auth.CHALLENGE)["result"]
            key = auth.derive_key(PASSPHRASE, bytes.fromhex(challenge["salt"]), challenge["kdf"])
            good = auth.proof(key, challenge["store_id"], bytes.fromhex(challenge["nonce"]))
            assert _ask(sock, reader, auth.AUTH, {"proof": good})["result"] == {"authenticated": True}
            hits = _ask(sock, reader, "memory_recall", {"cue": "safe combination"})["result"]["hits"]
            assert [h["literal_surface"] for h in hits] == [SECRET_TEXT]
        sock, reader = _raw(root)
        with sock:
            _ask(sock, reader, auth.CHALLENGE)
            assert _ask(sock, reader, auth.AUTH, {"proof": good})["error"]["type"] == "AuthFailed"


def test_a_store_without_a_passphrase_needs_no_handshake(tmp_path, fake_embedder):
    path = tmp_path / "plain"
    MemoryStore(path=path, embedder=fake_embedder).close()
    assert not auth.passphrase_protected(path)
    session = auth.Session(auth.Guard("id"))
    assert session.authenticated and session.challenge() == {"required": False}


def test_the_auth_key_is_not_the_data_key_and_binds_the_store():
    guard = auth.Guard.for_passphrase("store-a", PASSPHRASE)
    assert guard.key is not None and len(guard.key) == 32
    from iai_mcp.store.crypto import _derive_from_passphrase

    assert guard.key != _derive_from_passphrase(PASSPHRASE, guard.salt)
    session = auth.Session(guard)
    nonce = bytes.fromhex(session.challenge()["nonce"])
    with pytest.raises(AuthFailed):  # a proof made for another store
        session.verify(auth.proof(guard.key, "store-b", nonce))
    session.challenge()
    with pytest.raises(AuthFailed):  # not a string
        session.verify(None)
    assert not session.authenticated


def test_the_client_reads_the_meta_file_the_store_writes(root):
    assert auth.META_FILE == META_FILE
    assert auth.passphrase_protected(root)


@pytest.mark.slow
def test_the_spawned_daemon_keeps_no_passphrase_and_refuses_who_lacks_it(root, monkeypatch):
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    client = composition.connect(root)
    try:
        assert [h["literal_surface"] for h in client.call("memory_recall", {"cue": "safe combination"})["hits"]] == [SECRET_TEXT]
        pid = client.call("ping")["pid"]
    finally:
        client.close()
    assert pid != os.getpid()
    if sys.platform.startswith("linux"):
        environ = Path(f"/proc/{pid}/environ").read_bytes()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        assert PASSPHRASE.encode() not in environ and PASSPHRASE_ENV.encode() not in environ
        assert PASSPHRASE.encode() not in cmdline
        assert b"IAI_MCP_TEST_EMBEDDER=hash" in environ  # the rest of the environment is passed on

    monkeypatch.delenv(PASSPHRASE_ENV)
    with pytest.raises(KeyUnavailable):
        _recall(root)
    info = daemon.status(root)  # that it runs is no secret; what it holds is
    assert info is not None and info["pid"] == pid and "records" not in info
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong horse")
    with pytest.raises(AuthFailed):
        _recall(root)
    sock, reader = _raw(root)
    with sock:
        assert _ask(sock, reader, "memory_recall", {"cue": "safe"})["error"]["type"] == "AuthRequired"
        assert reader.read_line() is None
    monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
    assert [h["literal_surface"] for h in _recall(root)["hits"]] == [SECRET_TEXT]
    assert daemon.stop(root, timeout=WAIT_S)


@pytest.mark.slow
def test_a_daemon_run_by_hand_with_the_passphrase_in_its_environment_drops_it(root):
    """``iai-mcp daemon run`` with IAI_MCP_CRYPTO_PASSPHRASE set re-executes
    itself (same pid) with the passphrase on a pipe, out of /proc/<pid>/environ."""
    import subprocess

    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {**os.environ, "PYTHONPATH": src, PASSPHRASE_ENV: PASSPHRASE}
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run"],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        info = None
        for _ in range(int(WAIT_S / 0.05)):
            if (info := daemon.status(root)) is not None or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert info is not None and info["pid"] == proc.pid
        if sys.platform.startswith("linux"):
            assert PASSPHRASE.encode() not in Path(f"/proc/{proc.pid}/environ").read_bytes()
            assert PASSPHRASE.encode() not in Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert daemon.stop(root, timeout=WAIT_S) and proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.parametrize("piped,passphrase", [
    (b"pw\n", "pw"),                    # echo pw |
    (b"pw\r\n", "pw"),                  # a Windows-edited file
    (b"pw", "pw"),                      # printf pw |
    (b"pw\n\n", "pw\n"),                # exactly one newline is the pipe's
    (b" pw \n", " pw "),                # spaces are the passphrase's
    (b"\n", None),                      # nothing: no passphrase
])
def test_passphrase_stdin_drops_exactly_one_trailing_newline(piped, passphrase):
    assert wire.passphrase_from_pipe(piped) == passphrase


def test_what_a_spawner_pipes_reads_back_as_the_passphrase():
    for passphrase in (PASSPHRASE, "ends in a newline\n", "ends in crlf\r\n"):
        assert wire.passphrase_from_pipe(wire.piped_passphrase(passphrase)) == passphrase


@pytest.mark.slow
def test_echo_passphrase_into_daemon_run_passphrase_stdin_opens_the_store(root, monkeypatch):
    """``echo "$PW" | iai-mcp daemon run --passphrase-stdin`` sends the
    passphrase and a newline; the daemon must open the store with the
    passphrase, not with the passphrase and a newline (a wrong key)."""
    import subprocess

    src = str(Path(__file__).resolve().parent.parent / "src")
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    proc = subprocess.Popen([sys.executable, "-m", "iai_mcp", "--store", str(root), "daemon", "run",
                             "--passphrase-stdin"], env={**env, "PYTHONPATH": src},
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(f"{PASSPHRASE}\n".encode())
        proc.stdin.close()
        monkeypatch.setenv(PASSPHRASE_ENV, PASSPHRASE)
        info = None
        for _ in range(int(WAIT_S / 0.05)):
            if (info := daemon.status(root)) is not None or proc.poll() is not None:
                break
            threading.Event().wait(0.05)
        assert info is not None and info["pid"] == proc.pid, proc.stderr.read().decode()[-2000:]
        assert [h["literal_surface"] for h in _recall(root)["hits"]] == [SECRET_TEXT]
        assert daemon.stop(root, timeout=WAIT_S) and proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
