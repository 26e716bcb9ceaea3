"""The MCP server: iai-mcp's memory tools over stdio.

``tools`` declares the tools (parameters, results, the docstrings the model
reads); ``runtime`` runs them: one backend per server, opened lazily after
the handshake, the stdio transport, and a shutdown that drains provenance.
"""
from iai_mcp.mcp_server.runtime import BackendSlot, build_server, serve
from iai_mcp.mcp_server.tools import (
    CaptureResult,
    Memory,
    MemorySummary,
    PackedMemory,
    RecallHit,
    RecallResult,
    SessionPack,
)

__all__ = [
    "BackendSlot", "CaptureResult", "Memory", "MemorySummary", "PackedMemory", "RecallHit",
    "RecallResult", "SessionPack", "build_server", "serve",
]
