"""The provenance write queue: provenance off the recall path, nothing lost."""
from iai_mcp.provenance_queue.queue import ProvenanceSink, ProvenanceWriteQueue, spill_state

__all__ = ["ProvenanceSink", "ProvenanceWriteQueue", "spill_state"]
