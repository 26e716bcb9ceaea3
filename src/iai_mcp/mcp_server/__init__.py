"""The MCP server: iai-mcp's memory tools over stdio or streamable HTTP.

``tools`` declares the tools (their names, the docstrings the model reads;
parameters come from ``core.contract``, results from ``core.results``);
``runtime`` runs them: one backend per server, opened lazily after the
handshake, and a shutdown that drains provenance. ``stdio`` is the stdio
transport (``iai-mcp serve``); ``http`` serves the same server over the
SDK's streamable HTTP transport, behind a bearer token (``serve --http``).
"""
from iai_mcp.mcp_server.runtime import BackendSlot, build_server, serve

__all__ = ["BackendSlot", "build_server", "serve"]
