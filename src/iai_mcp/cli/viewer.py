"""``iai-mcp ui``: open the local web viewer (``iai_mcp.viewer``)."""
from __future__ import annotations

import argparse
import json

from iai_mcp.cli.format import note
from iai_mcp.cli.options import AddCommand, json_flag


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError("must be between 0 and 65535 (0: any free port)")
    return port


def cmd_ui(args: argparse.Namespace) -> int:
    from iai_mcp.viewer.app import serve

    def say(link: str) -> None:
        # stdout, flushed: the one line a script (or a test) reads to find the viewer.
        print(json.dumps({"url": link}) if args.json else link, flush=True)
        note("the viewer listens on 127.0.0.1 only; the link carries this launch's token. Ctrl-C stops it.")

    serve(args.store, args.port, open_browser=not args.no_browser, say=say)
    return 0


def add_commands(command: AddCommand) -> None:
    p = command("ui", cmd_ui, "open the local web viewer: search, browse, inspect and act on memories")
    p.add_argument("--port", type=_port, default=0, metavar="P", help="port on 127.0.0.1 (default: any free port)")
    p.add_argument("--no-browser", action="store_true", help="print the link without opening a browser")
    json_flag(p)  # the link as {"url": ...}
