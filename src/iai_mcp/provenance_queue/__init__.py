"""The provenance write queue: provenance off the recall path, nothing lost.

``queue`` (the queue), ``batch`` (what one enqueue hands it), ``journal``
(what a live queue was handed, for ``kill -9``), ``spill`` (what it had no
room for) and ``pending`` (the one sealed format both kinds of file share). Below the store in the layering:
the store builds a queue and hands it what it needs (``ProvenanceSink``).
"""
from iai_mcp.provenance_queue.journal import journal_state
from iai_mcp.provenance_queue.queue import ProvenanceSink, ProvenanceWriteQueue
from iai_mcp.provenance_queue.spill import spill_state

__all__ = ["ProvenanceSink", "ProvenanceWriteQueue", "journal_state", "spill_state"]
