"""``python -m iai_mcp.daemon run --store ROOT``: the previous release's spawn command.

A client that started before an upgrade (an MCP server, a hook still running
the old code) spawns its daemon this way. Rather than fail until it restarts,
the words are handed to the one CLI, ``iai-mcp --store ROOT daemon run``.
"""
from __future__ import annotations

import sys

from iai_mcp.cli import main


def _as_cli_argv(argv: list[str]) -> list[str]:
    args = list(argv)
    store: list[str] = []
    if "--store" in args:
        at = args.index("--store")
        store, args[at:at + 2] = args[at:at + 2], []
    return [*store, "daemon", *args]


raise SystemExit(main(_as_cli_argv(sys.argv[1:])))
