"""The methods of a memory store and the one entry point to them.

``dispatch(store, method, params)`` is how every adapter (the daemon, and
through it the MCP server, the CLI and the hooks) reaches a method: it checks
the parameters against the method's contract, calls one function, and returns
a JSON-ready dict.

Modules: ``contract`` (each method's parameters, declared once) and
``params`` (its field types, limits and errors), ``results`` (what methods
return), ``dispatch`` (the method table), ``capture`` / ``recall`` /
``session_pack`` (the memory methods), ``lifecycle`` (forget, restore,
update, and the automatic purge of forgotten memories), ``listing``
(``memory_list`` and ``memory_tags``), ``filters`` (the one metadata filter
recall, listing and forget share), ``links`` (supersede cycles), ``admin``
and ``transfer`` (stats, export, import, compaction), ``redact`` (secrets
out of text before it is stored), ``warmup``, ``limits``, ``repair``
(``doctor --repair``).

``dispatch`` and ``METHODS`` are loaded on first use: importing this package
(as ``core.contract`` does, for the CLI and the daemon client) must not load
the store, numpy or the embedding model.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

__all__ = ["METHODS", "dispatch"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        # Not ``from iai_mcp.core import dispatch``: that asks this function again.
        module = import_module("iai_mcp.core.dispatch")
        # Importing the submodule bound ``dispatch`` to it; the name means the function.
        globals().update(dispatch=module.dispatch, METHODS=module.METHODS)
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
