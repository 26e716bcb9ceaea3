"""The commands around the store: serve, stats, export, import, doctor,
compact and daemon (the hooks' commands are in ``cli.hooks``)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from iai_mcp.cli.format import fail, note, print_json
from iai_mcp.cli.options import (
    AddCommand,
    batch_size,
    call_and_show,
    connected,
    json_flag,
    store_path,
)
from iai_mcp.errors import IaiError, InvalidInput

EXPORT_PAGE = 500
IMPORT_BATCH = 200


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


def cmd_stats(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_stats", {}, _show_stats)


def _show_stats(stats: dict[str, Any]) -> None:
    spill = stats["spill"]
    print(f"store: {stats['path']}")
    print(f"memories: {stats['records']}")
    print(f"provenance entries: {stats['provenance_entries']}")
    print(f"disk: {stats['disk_bytes']:,} bytes")
    print(f"lancedb: {stats['versions']} versions, {stats['fragments']} fragments")
    print(f"embedder: {stats['embedder'] or 'none yet (first capture binds it)'}")
    print(f"key: {stats['key_source']}")
    print(f"spill: {spill['pending']} pending, {spill['quarantined']} quarantined in {spill['dir']}")
    if stats["unreadable_records"]:
        print(f"unreadable records: {stats['unreadable_records']}")


def cmd_compact(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_compact", {}, lambda result: print(
        f"versions: {result['versions_before']} -> {result['versions_after']}; "
        f"fragments: {result['fragments_before']} -> {result['fragments_after']}"))


def cmd_export(args: argparse.Namespace) -> int:
    if not args.plaintext:
        raise InvalidInput(
            "export writes every memory in plaintext (the store keeps them encrypted); "
            "pass --plaintext to confirm, and keep the file somewhere safe"
        )
    if not args.output:
        written = _export_to(sys.stdout, args)
    else:
        # fs.atomic_writer: a temp file beside the target, owner-only, renamed
        # over it only when every page is written (pages stream through it, so
        # the export is never held in memory): a failed export never truncates
        # yesterday's backup, and an existing file never keeps a looser mode.
        import codecs

        from iai_mcp.fs import atomic_writer

        with atomic_writer(Path(args.output), mode=0o600) as raw:
            written = _export_to(codecs.getwriter("utf-8")(raw), args)
    note(f"wrote {written} memories IN PLAINTEXT to {args.output or 'stdout'}")
    return 0


def _export_to(out: Any, args: argparse.Namespace) -> int:
    written = damaged = 0
    with connected(args) as backend:
        offset: int | None = 0
        while offset is not None:
            page = backend.call("memory_export", {"offset": offset, "limit": EXPORT_PAGE,
                                                  "include_hidden": args.include_hidden or None})
            for record in page["records"]:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += len(page["records"])
            damaged += page.get("provenance_damaged", 0)
            offset = page["next_offset"]
    if damaged:
        note(f"{damaged} provenance entr{'y' if damaged == 1 else 'ies'} could not be read and "
             f"{'was' if damaged == 1 else 'were'} left out; run: iai-mcp doctor")
    return written


def _read_export(source: str) -> list[Any]:
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        with open(source, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except ValueError as exc:
            raise InvalidInput(f"{source}, line {number}: not JSON ({exc}); nothing was imported") from None
    return records


def cmd_import(args: argparse.Namespace) -> int:
    from iai_mcp.core.links import cycle_in_export

    records = _read_export(args.file)
    # Batches are separate calls: links between two batches are checked here,
    # on the whole file, before the first one is written.
    cycle = cycle_in_export(records)
    if cycle:
        raise InvalidInput(f"{args.file}: the superseded_by links make a cycle "
                           f"({' -> '.join([*cycle, cycle[0]])}); fix or drop one; nothing was imported")
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    totals = {"inserted": 0, "reinforced": 0, "skipped": 0}
    with connected(args) as backend:
        # Check every batch first, so a bad line anywhere imports nothing.
        for i, batch in enumerate(batches):
            try:
                backend.call("memory_import", {"records": batch, "dry_run": True})
            except InvalidInput as exc:
                raise type(exc)(f"batch starting at record {i * args.batch_size + 1}: {exc}") from None
        for batch in batches:
            result = backend.call("memory_import", {"records": batch})
            for status in totals:
                totals[status] += result[status]
    if args.json:
        print_json({"records": len(records), **totals})
    else:
        print(f"imported {len(records)} records: {totals['inserted']} inserted, "
              f"{totals['reinforced']} reinforced, {totals['skipped']} skipped")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from iai_mcp.doctor import run_checks

    if args.repair or args.dry_run or args.salvage:
        return _repair(args)
    checks = run_checks(args.store)
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
    from iai_mcp.core.repair import repair
    from iai_mcp.daemon import lifecycle as daemon

    root = store_path(args)
    planned = repair(root, apply=False, salvage_to=args.salvage)
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
    daemon.stop(root)
    for line in repair(root, apply=True, salvage_to=args.salvage):
        print(line)
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from iai_mcp.daemon import lifecycle as daemon

    path = store_path(args)
    if args.action == "run":
        return daemon.run(path, idle_timeout=args.idle_timeout)
    if args.action == "stop":
        stopped = daemon.stop(path, args.timeout)
        print("stopped" if stopped else "no daemon was running")
        return 0
    status = daemon.status(path)
    if args.json:
        print_json(status)
    else:
        print("not running" if status is None else
              "running: " + ", ".join(f"{k}={v}" for k, v in status.items()))
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
    from iai_mcp.core.limits import MAX_PAGE

    json_flag(command("stats", cmd_stats, "counts, disk use, LanceDB versions and fragments, embedder"))

    p = command("export", cmd_export, "write every memory as JSONL, in plaintext (needs --plaintext)")
    p.add_argument("--plaintext", action="store_true", help="confirm that the output is unencrypted")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.add_argument("--include-hidden", action="store_true",
                   help="also export forgotten (hidden, still restorable) memories")

    p = command("import", cmd_import, "import a JSONL export (re-embedded; repeats are skipped)")
    p.add_argument("file", metavar="FILE", help="the export file, or '-' for stdin")
    p.add_argument("--batch-size", type=batch_size, default=IMPORT_BATCH, metavar="N",
                   help=f"records per call, 1-{MAX_PAGE} (default {IMPORT_BATCH})")
    json_flag(p)

    p = command("doctor", cmd_doctor, "check the store, key, embedder, spill/journal and daemon")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed without losing data (asks first)")
    p.add_argument("--yes", action="store_true", help="with --repair: do not ask")
    p.add_argument("--dry-run", action="store_true",
                   help="with --repair: only list what it would do (never asks, changes nothing)")
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
    json_flag(p)
