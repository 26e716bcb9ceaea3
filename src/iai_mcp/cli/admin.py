"""The commands around the store: serve, stats, export, import, doctor,
compact, hooks, hook and daemon."""
from __future__ import annotations

import argparse
import json
import os
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
from iai_mcp.errors import InvalidInput

EXPORT_PAGE = 500
IMPORT_BATCH = 200


def cmd_serve(args: argparse.Namespace) -> int:
    from iai_mcp.mcp_server import serve

    serve(args.store)
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
    written = 0
    with connected(args) as backend:
        offset: int | None = 0
        while offset is not None:
            page = backend.call("memory_export", {"offset": offset, "limit": EXPORT_PAGE,
                                                  "include_hidden": args.include_hidden or None})
            for record in page["records"]:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += len(page["records"])
            offset = page["next_offset"]
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

    if args.repair:
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
    first: repair replays journals and compacts, which needs the store alone."""
    from iai_mcp.core.repair import repair
    from iai_mcp.daemon import lifecycle as daemon

    root = store_path(args)
    planned = repair(root, apply=False)
    if not planned:
        print("nothing to repair")
        return 0
    for line in planned:
        print(line)
    if not args.yes:
        if not sys.stdin.isatty():
            fail("doctor --repair asks before changing anything; run it in a terminal or add --yes")
            return 2
        if input("Apply these repairs? [y/N] ").strip().lower() not in ("y", "yes"):
            print("nothing changed")
            return 1
    daemon.stop(root)
    for line in repair(root, apply=True):
        print(line)
    return 0


def cmd_hooks(args: argparse.Namespace) -> int:
    from iai_mcp import hooks

    path = Path(args.settings).expanduser() if args.settings else hooks.default_settings_path()
    if args.action == "install":
        store = args.store or os.environ.get("IAI_MCP_STORE")
        if store:
            # Hooks run from each project's directory: a relative path would
            # give every project a store (and a key) of its own.
            store = str(Path(store).expanduser().resolve())
        change = hooks.install(path, hooks.hook_commands(hooks.executable(), store), dry_run=args.dry_run)
    else:
        change = hooks.uninstall(path, dry_run=args.dry_run)
    if args.dry_run:
        print_json(change.settings)
        note(f"dry run: {path} was not changed")
    for line in change.notes:
        note(line)
    if not change.changed:
        note(f"nothing to change in {path}")
    elif not args.dry_run:
        backup = f" (backup: {change.backup})" if change.backup else ""
        note(f"{args.action}ed Claude Code hooks in {path}{backup}")
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from iai_mcp import hooks

    payload = hooks.parse_payload(sys.stdin.read())
    with connected(args) as backend:
        if args.event == "session-start":
            pack = hooks.session_start(backend, payload, args.budget_tokens)
            if args.json:
                print_json(pack)
            elif pack["text"]:
                sys.stdout.write(pack["text"])
            return 0
        counts = hooks.capture_transcript(backend, payload, store_path(args) / hooks.STATE_DIR)
    if args.json:
        print_json(counts)
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from iai_mcp.daemon import lifecycle as daemon

    path = store_path(args)
    if args.action == "run":
        key_settings = None
        if not args.passphrase_stdin:
            daemon.exec_without_passphrase(path, args.idle_timeout)  # returns if there is none
        else:
            from iai_mcp.config import KeySettings

            key_settings = KeySettings(passphrase=sys.stdin.buffer.read().decode("utf-8") or None)
        return daemon.run(path, idle_timeout=args.idle_timeout, key_settings=key_settings)
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
    command("serve", cmd_serve, "run the MCP server on stdin/stdout")


def add_commands(command: AddCommand) -> None:
    from iai_mcp.core.limits import MAX_PAGE, SESSION_PACK_TOKENS

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
    json_flag(p)
    json_flag(command("compact", cmd_compact, "fold LanceDB fragments and prune old versions"))

    p = command("hooks", cmd_hooks, "install or remove the Claude Code hooks")
    p.add_argument("action", choices=["install", "uninstall"])
    p.add_argument("--host", choices=["claude-code"], default="claude-code", help="the assistant (default claude-code)")
    p.add_argument("--settings", metavar="FILE", help="settings file (default ~/.claude/settings.json)")
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, change nothing")

    p = command("hook", cmd_hook, "run a hook (Claude Code calls this with JSON on stdin)")
    p.add_argument("event", choices=["session-start", "stop"])
    p.add_argument("--budget-tokens", type=int, default=SESSION_PACK_TOKENS,
                   help=f"session-start: token budget for the pack (default {SESSION_PACK_TOKENS})")
    json_flag(p)

    p = command("daemon", cmd_daemon, "run, query or stop the per-store daemon")
    p.add_argument("action", choices=["run", "status", "stop"])
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="with run: seconds idle before exiting (default $IAI_MCP_DAEMON_IDLE_TIMEOUT or 600)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="with stop: seconds to wait for the daemon to drain (default 30)")
    p.add_argument("--passphrase-stdin", action="store_true",
                   help="with run: read the store's passphrase from stdin (how a client hands it over)")
    json_flag(p)
