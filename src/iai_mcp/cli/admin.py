"""The commands around the store: serve, init, stats, doctor, compact,
hooks, hook and daemon (export and import: ``cli.transfer``)."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from iai_mcp.cli.format import fail, human, note, plural, print_json
from iai_mcp.cli.options import (
    AddCommand,
    call_and_show,
    connected,
    json_flag,
    store_path,
)

def cmd_serve(args: argparse.Namespace) -> int:
    from iai_mcp.mcp_server import serve

    serve(args.store)
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
    print(f"lancedb: {plural(stats['versions'], 'version')}, {plural(stats['fragments'], 'fragment')}")
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
    if args.json:
        print_json({"action": args.action, "settings_file": str(path), "changed": change.changed,
                    "dry_run": args.dry_run, "backup": str(change.backup) if change.backup else None,
                    "notes": list(change.notes), **({"settings": change.settings} if args.dry_run else {})})
        return 0
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
    with connected(args, create=True) as backend:
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
        return daemon.run(path, idle_timeout=args.idle_timeout)
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
    command("serve", cmd_serve, "run the MCP server on stdin/stdout")


def add_commands(command: AddCommand) -> None:
    from iai_mcp.core.limits import SESSION_PACK_TOKENS

    json_flag(command("init", cmd_init, "create a new, empty store at --store (other commands never create one)"))
    json_flag(command("stats", cmd_stats, "counts, disk use, LanceDB versions and fragments, embedder"))

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
    json_flag(p)

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
    json_flag(p)
