"""iai-mcp: local, encrypted, verbatim long-term memory for MCP assistants.

Importing the package loads nothing heavy: the store, the embedding model
and the MCP server are imported by whoever needs them.
"""

__version__ = "0.1.0"
