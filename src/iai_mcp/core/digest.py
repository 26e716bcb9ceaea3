"""keyed_digest: the store names values with a subkey of its own key, so
adapters (the hook cursors) can refer to a transcript without keeping its
path in clear, and without ever holding key material themselves."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from iai_mcp.core.contract import KeyedDigestParams
from iai_mcp.store import MemoryStore


def _keyed_digest(store: MemoryStore, args: KeyedDigestParams) -> dict[str, Any]:
    """One hex digest per value, in order (``contract.KeyedDigestParams``)."""
    return {"digests": [store.keyed_digest(args.purpose, value) for value in args.values]}


DIGEST_METHODS: dict[str, Callable[[MemoryStore, Any], dict[str, Any]]] = {
    "keyed_digest": _keyed_digest,
}
