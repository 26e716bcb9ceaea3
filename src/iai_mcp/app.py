"""Composition root: builds the store and the backend every adapter talks to.

Adapters (MCP server, CLI, hooks) never open the store themselves: they ask
``connect()`` for a ``Backend`` and send it ``(method, params)``, which ends
in ``core.dispatch`` either in this process (``LocalBackend``) or in the
daemon that owns the store.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from iai_mcp import config


class Backend(Protocol):
    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]: ...

    def close(self) -> None: ...


def store_path(path: str | Path | None = None) -> Path:
    """The store root: an explicit path wins over IAI_MCP_STORE, then ~/.iai-mcp."""
    return Path(path).expanduser() if path is not None else config.default_store_path()


def open_store(path: str | Path | None = None, *, provenance_queue: bool = True):
    """Open (or create) the store, with the provenance queue running if asked."""
    from iai_mcp.store import MemoryStore

    store = MemoryStore(path=store_path(path))
    if provenance_queue:
        store.enable_provenance_queue()
    return store


class LocalBackend:
    """Dispatch in this process against a store this process owns."""

    def __init__(self, store) -> None:
        self.store = store

    def call(self, method: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        from iai_mcp.core import dispatch

        return dispatch(self.store, method, dict(params or {}))

    def close(self) -> None:
        self.store.close()


def connect(path: str | Path | None = None) -> Backend:
    """The backend for the store at ``path``."""
    return LocalBackend(open_store(path))
