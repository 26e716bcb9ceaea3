"""Composition root: builds the store and the backend every adapter talks to.

Adapters (MCP server, CLI, hooks) never open the store themselves: they ask
``connect()`` for a ``Backend`` and send it ``(method, params)``, which ends
in ``core.dispatch`` either in the daemon that owns the store
(``DaemonClient``, the default) or in this process (``LocalBackend``).

Environment read here (the composition root):

``IAI_MCP_LOCAL=1``
    ``connect()`` opens the store in this process instead of going through
    the daemon; the store lock then refuses any other process meanwhile.
    No daemon runs the hourly automatic purge then, so the local backend
    purges expired forgotten memories each time it opens the store.
``IAI_MCP_DAEMON_IDLE_TIMEOUT``
    Seconds a daemon with no connection and no request waits before exiting
    (default 600).
``IAI_MCP_TEST_EMBEDDER=hash``
    For the test suite only: stores opened here, and by daemons started from
    here (they inherit the environment), embed with the deterministic
    ``HashEmbedder`` instead of the MiniLM model. A store remembers its
    embedder and refuses another, so this never mixes into a real store
    unnoticed.

``IAI_MCP_STORE`` and ``IAI_MCP_CRYPTO_PASSPHRASE`` are read by ``config``:
the store asks it for ``KeySettings`` (the passphrase, nothing else of the
environment), so ``MemoryStore(path=...)`` on its own still finds it.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from iai_mcp import config, fs
from iai_mcp.errors import InvalidInput, StoreError
from iai_mcp.log import logger

LOCAL_ENV = "IAI_MCP_LOCAL"
IDLE_TIMEOUT_ENV = "IAI_MCP_DAEMON_IDLE_TIMEOUT"
TEST_EMBEDDER_ENV = "IAI_MCP_TEST_EMBEDDER"
DEFAULT_IDLE_TIMEOUT_S = 600.0

_log = logger("iai_mcp.backend")


class Backend(Protocol):
    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]: ...

    def close(self) -> None: ...


def store_path(path: str | Path | None = None) -> Path:
    """The store root: an explicit path wins over IAI_MCP_STORE, then ~/.iai-mcp."""
    return Path(path).expanduser() if path is not None else config.default_store_path()


def embedder_for_tests():
    """The embedder ``IAI_MCP_TEST_EMBEDDER`` asks for, or None (the real model)."""
    choice = os.environ.get(TEST_EMBEDDER_ENV, "")
    if not choice:
        return None
    if choice != "hash":
        raise InvalidInput(f"{TEST_EMBEDDER_ENV}={choice!r}: the only test embedder is 'hash'")
    from iai_mcp.embed import HashEmbedder

    return HashEmbedder()


def preload_model(on_error):
    """Start loading the real model in the background (``embed.preload_default``)
    so it overlaps opening the store; None when a test embedder stands in."""
    if os.environ.get(TEST_EMBEDDER_ENV, ""):
        return None
    from iai_mcp.embed import preload_default

    return preload_default(on_error)


def daemon_idle_timeout() -> float:
    raw = os.environ.get(IDLE_TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_IDLE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise InvalidInput(f"{IDLE_TIMEOUT_ENV}={raw!r}: give a positive number of seconds")
    return value


def open_store(path: str | Path | None = None, *, provenance_queue: bool = True,
               key_settings: config.KeySettings | None = None, compact_when_idle: bool = False):
    """Open (or create) the store in this process, with the provenance queue
    running if asked. Only one process may hold a store open (``StoreLocked``).
    ``key_settings`` default to the environment's (``IAI_MCP_CRYPTO_PASSPHRASE``);
    ``compact_when_idle`` is for an owner that calls ``compact_if_due`` (the daemon)."""
    from iai_mcp.store import MemoryStore

    store = MemoryStore(path=store_path(path), embedder=embedder_for_tests(), key_settings=key_settings,
                        compact_when_idle=compact_when_idle)
    if provenance_queue:
        store.enable_provenance_queue()
    return store


class LocalBackend:
    """Dispatch in this process against a store this process owns."""

    def __init__(self, store) -> None:
        self.store = store

    @classmethod
    def open(cls, path: str | Path | None = None) -> LocalBackend:
        """The store at ``path`` opened in this process, its expired forgotten
        memories purged first (what the daemon does at start and hourly). A
        purge that fails is one log line and stays pending: it is retried at
        the next open, and the store is served meanwhile."""
        from iai_mcp.core import lifecycle
        from iai_mcp.errors import IaiError

        store = open_store(path)
        try:
            lifecycle.purge_expired(store)
        except (IaiError, OSError) as exc:
            _log.error("auto_purge_failed", error=f"{type(exc).__name__}: {exc}", consequence="retried at the next open")
        return cls(store)

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from iai_mcp.core import dispatch

        return dispatch(self.store, method, params)  # dispatch checks the params itself

    def close(self) -> None:
        self.store.close()


class ReadOnlyBackend(LocalBackend):
    """A store this process may not write (read-only directory or disk),
    opened in this process to read it: the methods the contract marks
    ``read_only`` are served, with recall's provenance not recorded; every
    other method is refused with a ``StoreError`` and nothing is tried. No
    daemon is started for it: one could not create its socket beside the store."""

    @classmethod
    def open(cls, path: str | Path | None = None) -> ReadOnlyBackend:
        from iai_mcp.store import MemoryStore

        return cls(MemoryStore(path=store_path(path), embedder=embedder_for_tests(), read_only=True))

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from iai_mcp.core import contract

        if not contract.method(method).read_only:
            raise StoreError(f"{method}: the store at {self.store.root} is read-only here; nothing was "
                             "changed. Reading works (recall, get, list, tags, stats, export); to change "
                             "it, make the directory writable")
        return super().call(method, params)


#: The file every store has from its first open (``store.META_FILE``; named
#: here so the thin client need not import the store, ~1 s; a test pins the two).
STORE_MARKER = "meta.json"


def store_exists(path: str | Path | None = None) -> bool:
    return (store_path(path) / STORE_MARKER).is_file()


def connect(path: str | Path | None = None, *, local: bool | None = None, create: bool = True) -> Backend:
    """The backend for the store at ``path``.

    By default a ``DaemonClient`` of the daemon that owns the store, started
    now if none is running. ``local=True`` (or ``IAI_MCP_LOCAL=1``) opens the
    store in this process instead. ``create=False``: a path with no store is
    a ``NotFound`` and nothing is created (no folder, key or daemon), so a
    mistyped ``--store`` on a read-only command does not make a new store. A
    store in a directory this process may not write is opened in this process
    to read only (``ReadOnlyBackend``).
    """
    if not create and not store_exists(path):
        from iai_mcp.errors import NotFound

        raise NotFound(f"no memory store at {store_path(path)}; check --store or IAI_MCP_STORE "
                       "('iai-mcp init' creates a new, empty store there)")
    root = store_path(path)
    if root.is_dir() and not fs.writable(root):
        from iai_mcp.daemon.client import DaemonClient, DaemonNotRunning

        try:  # a daemon started before the store became read-only still owns it
            return DaemonClient(root, autostart=False).connect()
        except DaemonNotRunning:
            return ReadOnlyBackend.open(root)
    if local is None:
        local = os.environ.get(LOCAL_ENV, "").strip().lower() in ("1", "true", "yes", "on")
    if local:
        return LocalBackend.open(path)
    from iai_mcp.daemon.client import DaemonClient

    return DaemonClient(store_path(path)).connect()


def http_token(path: str | Path | None = None) -> tuple[str, bool, Path]:
    """The bearer token of ``serve --http`` for the store at ``path``: the
    token, whether it was made just now, and the file the store keeps it in."""
    from iai_mcp.store import http_token as tokens

    root = store_path(path)
    token, made = tokens.load_or_create(root)
    return token, made, tokens.token_path(root)
