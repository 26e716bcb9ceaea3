"""The commands around the store: serve, init, stats, doctor, compact and
daemon (hooks, hook and import-transcripts: ``cli.hooks``; export and
import: ``cli.transfer``)."""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from iai_mcp import config
from iai_mcp.cli.format import fail, human, plural, print_json
from iai_mcp.cli.options import (
    AddCommand,
    call_and_show,
    connected,
    json_flag,
    store_path,
)
from iai_mcp.errors import IaiError, InvalidInput


def cmd_serve(args: argparse.Namespace) -> int:
    expose = True if args.expose_embeddings else None  # None: IAI_MCP_EXPOSE_EMBEDDINGS decides
    if args.http is None:
        if args.allow_remote:
            raise InvalidInput("--allow-remote applies to --http only (stdio is local by nature)")
        from iai_mcp.mcp_server import serve

        serve(args.store, expose_embeddings=expose)
        return 0
    from iai_mcp.mcp_server.http import serve_http

    serve_http(args.store, args.http, allow_remote=args.allow_remote, expose_embeddings=expose)
    return 0


def cmd_init(args: argparse.Namespace) -> int:
    """Create an empty store (the only command besides capture, import and
    serve that may), or say that one is there already."""
    from iai_mcp import backend

    existed = backend.store_exists(args.store)
    with connected(args, create=True) as connection:
        stats = connection.call("memory_stats", {})
    if args.json:
        print_json({"path": stats["path"], "created": not existed, "key": stats["key_source"]})
    else:
        print(f"{'a store already exists' if existed else 'created an empty store'} at {stats['path']} "
              f"(key: {stats['key_source']})")
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_stats", {}, _show_stats)


def _show_stats(stats: dict[str, Any]) -> None:
    spill = stats["spill"]
    print(f"store: {stats['path']}")
    print(f"memories: {stats['records']}")
    print(f"provenance entries: {stats['provenance_entries']}")
    print(f"disk: {stats['disk_bytes']:,} bytes")
    versions = "unreadable version history" if stats["versions"] is None else plural(stats["versions"], "version")
    print(f"lancedb: {versions}, {plural(stats['fragments'], 'fragment')}")
    print(f"embedder: {stats['embedder'] or 'none yet (first capture binds it)'}")
    print(f"key: {human('key', stats['key_source'])}")
    print(f"spill: {spill['pending']} pending, {spill['quarantined']} quarantined in {spill['dir']}")
    if stats["unreadable_records"]:
        print(f"unreadable records: {stats['unreadable_records']}")


def cmd_compact(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_compact", {}, lambda result: print(
        f"versions: {result['versions_before']} -> {result['versions_after']}; "
        f"fragments: {result['fragments_before']} -> {result['fragments_after']}"))


def cmd_doctor(args: argparse.Namespace) -> int:
    from iai_mcp.doctor import run_checks

    if args.repair or args.dry_run or args.salvage:
        return _repair(args)
    # Only the default store is created on a first run (the README's quick
    # start); a store named by --store or IAI_MCP_STORE must exist, or --init.
    named = args.store is not None or bool(os.environ.get(config.STORE_ENV))
    checks = run_checks(args.store, create=args.init or not named)
    if args.json:
        print_json([{"status": c.status, "name": c.name, "detail": c.detail} for c in checks])
    else:
        for check in checks:
            print(f"{check.status} {check.name}: {check.detail}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _repair(args: argparse.Namespace) -> int:
    """Show what repair would do, ask, then do it. The daemon is stopped
    first: repair replays journals, compacts and salvages, which needs the
    store alone. Never a traceback: ours is one line (exit 1), anything else
    one line naming it (exit 3) and a log line."""
    try:
        return _repair_steps(args)
    except IaiError as exc:
        fail(str(exc))
        return 1
    except Exception as exc:  # damage a library reports in its own terms
        from iai_mcp.log import logger

        logger("iai_mcp.cli")("repair_failed", error=f"{type(exc).__name__}: {exc}"[:500])
        fail(f"doctor --repair stopped on an unexpected {type(exc).__name__}: {exc}. Nothing was deleted; "
             "a damaged store is only ever moved aside")
        return 3


def _repair_steps(args: argparse.Namespace) -> int:
    from iai_mcp.core.repair import find_damage, repair
    from iai_mcp.daemon import lifecycle as daemon

    root = store_path(args)
    if args.dry_run:  # the daemon keeps running: its own memory_verify says what is damaged
        diagnosis = find_damage(root, salvage_to=args.salvage, verified=_daemon_verify(args, root))
    else:  # stopped before planning: a store the daemon holds cannot be diagnosed here
        daemon.stop(root)
        diagnosis = find_damage(root, salvage_to=args.salvage)
    planned = repair(root, apply=False, salvage_to=args.salvage, diagnosis=diagnosis)
    for line in planned:
        print(line)
    if args.dry_run or planned == ["nothing to repair"]:
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            fail("doctor --repair asks before changing anything; run it in a terminal, add --yes, "
                 "or --dry-run to only list what it would do")
            return 2
        if input("Apply these repairs? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    # What was shown is what runs (a daemon started meanwhile: repair says it skipped).
    for line in repair(root, apply=True, salvage_to=args.salvage, diagnosis=diagnosis):
        print(line)
    return 0


def _daemon_verify(args: argparse.Namespace, root: Any) -> dict[str, Any] | None:
    """The running daemon's ``memory_verify``, or None when no daemon runs."""
    from iai_mcp.daemon import lifecycle as daemon

    if args.salvage is not None or daemon.status(root) is None:
        return None
    with connected(args) as backend:
        result: dict[str, Any] = backend.call("memory_verify", {})
    return result


def cmd_daemon(args: argparse.Namespace) -> int:
    from iai_mcp.daemon import lifecycle as daemon

    path = store_path(args)
    if args.action == "run":
        from iai_mcp.heap import limit_malloc_arenas

        limit_malloc_arenas()  # a process of its own: before any thread starts
        key_settings = None
        if not args.passphrase_stdin:
            daemon.exec_without_passphrase(path, args.idle_timeout)  # returns if there is none
        else:
            from iai_mcp.config import KeySettings
            from iai_mcp.daemon.wire import passphrase_from_pipe

            key_settings = KeySettings(passphrase=passphrase_from_pipe(sys.stdin.buffer.read()))
        daemon.end_process(daemon.run(path, idle_timeout=args.idle_timeout, key_settings=key_settings))
    if args.action == "stop":
        stopped = daemon.stop(path, args.timeout)
        if args.json:
            print_json({"stopped": stopped})
        else:
            print("stopped" if stopped else "no daemon was running")
        return 0
    status = daemon.status(path)
    if args.json:
        print_json(status)
    else:
        print("not running" if status is None else
              "running: " + "; ".join(f"{k} {human(k, v)}" for k, v in status.items() if v is not None))
    return 0


def add_serve(command: AddCommand) -> None:
    p = command("serve", cmd_serve, "run the MCP server on stdin/stdout, or over HTTP with --http")
    # The default address is mcp_server.http's (DEFAULT_HOST, DEFAULT_PORT); not
    # imported here, so `--help` stays free of the MCP SDK.
    p.add_argument("--http", nargs="?", const="", metavar="HOST:PORT",
                   help="serve over streamable HTTP at http://HOST:PORT/mcp (default 127.0.0.1:8731); "
                        "every request needs the bearer token kept in the store's http_token file")
    p.add_argument("--allow-remote", action="store_true",
                   help="with --http: allow a non-loopback address (others on the network can then try)")
    p.add_argument("--expose-embeddings", action="store_true",
                   help="show cue_embedding to the model (also IAI_MCP_EXPOSE_EMBEDDINGS=1)")


def add_commands(command: AddCommand) -> None:

    json_flag(command("init", cmd_init, "create a new, empty store at --store (other commands never create one)"))
    json_flag(command("stats", cmd_stats, "counts, disk use, LanceDB versions and fragments, embedder"))

    p = command("doctor", cmd_doctor, "check the store, key, embedder, spill/journal and daemon")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed without losing data (asks first)")
    p.add_argument("--yes", action="store_true", help="with --repair: do not ask")
    p.add_argument("--dry-run", action="store_true",
                   help="with --repair: only list what it would do (never asks, changes nothing)")
    p.add_argument("--init", action="store_true",
                   help="create the store named by --store or IAI_MCP_STORE if it does not exist "
                        "(the default store is created on a first run without it)")
    p.add_argument("--salvage", metavar="DEST",
                   help="with --repair: copy what can be read into a new store at DEST (same key); "
                        "the store itself is left as it is")
    json_flag(p)
    json_flag(command("compact", cmd_compact, "fold LanceDB fragments and prune old versions"))

    p = command("daemon", cmd_daemon, "run, query or stop the per-store daemon")
    p.add_argument("action", choices=["run", "status", "stop"])
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="with run: seconds idle before exiting (default $IAI_MCP_DAEMON_IDLE_TIMEOUT or 600)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="with stop: seconds to wait for the daemon to drain (default 30)")
    p.add_argument("--passphrase-stdin", action="store_true",
                   help="with run: read the store's passphrase from stdin (how a client hands it over)")
    json_flag(p)
