"""The ``iai-mcp`` command: thin over the same backend the MCP server uses.

Every command parses its arguments, makes backend calls (``backend.connect()``
-> ``core.dispatch``) and formats the result; ``--json`` prints the data
itself. An ``IaiError`` becomes one line on stderr and exit status 1;
usage errors exit 2. Only the standard library is imported at start, so
``--help`` and the hooks stay fast: the method contract (pydantic) loads for
the commands whose options it gives (capture, recall, list, forget), the
store and the model when a command needs them.

Modules: ``memory`` (capture, recall, supersede, list, tags, show),
``lifecycle`` (forget, restore, pin, unpin, tag), ``admin`` (serve, stats,
export, import, doctor, compact, daemon), ``hooks`` (hooks, hook,
import-transcripts), ``options`` (the
backend and the contract-derived options every command shares) and
``format`` (output).
"""
from __future__ import annotations

import argparse
from collections.abc import Callable

from iai_mcp import __version__
from iai_mcp.cli import admin, hooks, lifecycle, memory, transfer, viewer
from iai_mcp.cli.format import PROG, fail
from iai_mcp.cli.options import CommandParser, contract_options
from iai_mcp.errors import IaiError
from iai_mcp.fs import private_umask

__all__ = ["PROG", "build_parser", "contract_options", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local, encrypted, verbatim long-term memory for MCP assistants.",
        epilog="The store lives in $IAI_MCP_STORE (default ~/.iai-mcp).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--store", metavar="PATH", help="store directory (overrides IAI_MCP_STORE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=CommandParser)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> CommandParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    admin.add_serve(command)
    memory.add_commands(command)
    admin.add_commands(command)
    hooks.add_commands(command)
    transfer.add_commands(command)
    lifecycle.add_commands(command)
    viewer.add_commands(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Every process the command starts (daemon, server, hook, local store)
    # creates owner-only files, whatever library writes them.
    private_umask()
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IaiError as exc:
        fail(str(exc))
        return 1
    except OSError as exc:
        fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
