"""The MCP server: iai-mcp's memory tools over stdio.

``tools`` declares the tools (their names, the docstrings the model reads;
parameters come from ``core.contract``, results from ``core.results``);
``runtime`` runs them: one backend per server, opened lazily after the
handshake, the stdio transport, and a shutdown that drains provenance.
"""
from iai_mcp.mcp_server.runtime import BackendSlot, build_server, serve

__all__ = ["BackendSlot", "build_server", "serve"]
