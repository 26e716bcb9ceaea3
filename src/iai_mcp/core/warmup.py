"""Warm-up: load the embedding model and bring the keyword index up to date
before the first capture or recall has to wait for them.

One function for both callers: the ``warmup`` method (``core.admin``, which
the MCP server calls after the handshake and ``doctor`` calls to time the
model) and the daemon's start-up thread. The daemon passes its store lock as
``index_lock``: the model loads outside it, so requests that need no model
(get, stats, a recall with a ``cue_embedding``) are served meanwhile (the load
is 0.2 s with a warm page cache here, seconds cold), and only the index
build runs under it, because ``retrieval.KeywordIndex`` is not safe
to score while another thread adds to it (at 100k memories the build alone
takes ~2 s).
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from iai_mcp.core.recall import keyword_index
from iai_mcp.embed import embedder_for
from iai_mcp.store import MemoryStore


def warm(store: MemoryStore, *, index_lock: AbstractContextManager[Any] | None = None) -> dict[str, Any]:
    """Load ``store``'s embedder and build its keyword index (under
    ``index_lock`` when given). Returns the embedder's ``name`` and the
    ``seconds`` both took."""
    start = time.perf_counter()
    embedder = embedder_for(store)
    load = getattr(embedder, "warmup", None)
    if callable(load):
        load()
    else:  # an embedder without a warmup hook loads on its first embed
        embedder.embed(["warmup"])
    with index_lock or nullcontext():
        keyword_index(store)
    return {"embedder": embedder.name, "seconds": round(time.perf_counter() - start, 3)}
