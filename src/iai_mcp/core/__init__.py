"""The methods of a memory store and the one entry point to them.

``dispatch(store, method, params)`` is how every adapter (the daemon, and
through it the MCP server, the CLI and the hooks) reaches a method: it checks
the parameters against the method's contract, calls one function, and returns
a JSON-ready dict.

Modules: ``dispatch`` (the method table), ``params`` (typed reads and
limits), ``capture`` / ``recall`` / ``session_pack`` (the memory methods),
``admin`` and ``transfer`` (stats, export, import, compaction), ``redact``
(secrets out of text before it is stored), ``repair`` (``doctor --repair``).
"""
from iai_mcp.core.dispatch import METHODS, dispatch
from iai_mcp.core.params import MAX_BUDGET_TOKENS, MAX_K

__all__ = ["MAX_BUDGET_TOKENS", "MAX_K", "METHODS", "dispatch"]
