"""A batch: what one ``enqueue`` call hands over, given entry ids and sealed once.

The entry ids make every later write of a batch harmless to repeat (a retry,
a spill or journal replay, a worker that failed mid-turn): the log ignores
an id it already holds. The sealed line (``pending.seal_batch``) is the one
the journal and, if it comes to that, a spill file carry.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from iai_mcp.provenance_queue import pending
from iai_mcp.types import ProvenancePair


@dataclass(slots=True)
class Batch:
    """One enqueue call: its number, its pairs and its sealed line (None if
    sealing failed: such a batch can be written, but neither journaled nor
    spilled)."""

    seq: int
    pairs: list[ProvenancePair]
    payload: bytes | None


def with_ids(pairs: Sequence[Any]) -> list[ProvenancePair]:
    """``(record_id, entry)`` pairs as ``ProvenancePair``s with fresh entry ids
    (a ``ProvenancePair`` keeps its own)."""
    # One urandom call for the whole batch: uuid4() per pair costs ~2 us each,
    # most of the enqueue budget for a ten-hit recall.
    ids = os.urandom(16 * len(pairs)).hex()
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, ProvenancePair):
            out.append(pair)
        else:
            record_id, entry = pair
            out.append(ProvenancePair(record_id, entry, ids[32 * i : 32 * i + 32]))
    return out


def keyed_entry_id(request_key: str, record_id: Any) -> str:
    """The entry id of ``record_id``'s entry from the request ``request_key``:
    the same every time that request runs. A client resends a recall whose
    answer it lost with the same key, so the run the dead daemon journaled
    and the run the new daemon makes write one entry per hit, not two."""
    return hashlib.blake2b(f"{request_key}\0{record_id}".encode(), digest_size=16).hexdigest()


def seal(sealer: pending.Sealer, pairs: list[ProvenancePair], log: Any) -> bytes | None:
    """The batch's sealed line, or None, reported, if sealing failed: a
    recall never fails over its journal line."""
    try:
        return pending.seal_batch(sealer, pairs)
    except Exception as exc:
        log.warning("provenance_seal_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(pairs),
                    consequence="this batch is in memory only until written")
        return None
