"""The commands that change a memory's life: forget, restore, pin, unpin, tag.

``forget --mode purge`` is irreversible, so on a terminal it shows what it
would erase and asks; after a yes it purges exactly the memories it showed,
by id. Re-running the selectors instead would also erase whatever matched
them while the question was on screen (a capture in another window).
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from iai_mcp.cli.format import fail, plural, print_json, when
from iai_mcp.cli.options import (
    AddCommand,
    call_and_show,
    connected,
    contract_options,
    json_flag,
    method_params,
)


def _purge_shown(backend: Any, ids: list[str]) -> dict[str, Any]:
    """Purge exactly ``ids`` (in calls of at most ``MAX_PAGE`` ids, the
    most ``ids`` takes) and answer as one memory_forget would."""
    from iai_mcp.core.limits import MAX_PAGE

    forgotten: list[str] = []
    for start in range(0, len(ids), MAX_PAGE):
        chunk = ids[start:start + MAX_PAGE]
        forgotten += backend.call("memory_forget", {"ids": chunk, "mode": "purge"})["forgotten"]
    return {"mode": "purge", "matched": len(ids), "forgotten": forgotten, "undo_until": None}


def _confirmed_purge(args: argparse.Namespace, backend: Any, params: dict[str, Any]) -> int | dict[str, Any]:
    """``forget --mode purge``: with ``--yes`` (or a dry run) the call's
    result; off a terminal exit status 2; on one, the memories it would erase
    are shown and, after a yes, exactly those are purged (the result), else
    exit status 1."""
    if args.yes or params.get("dry_run"):
        return backend.call("memory_forget", params)
    if not sys.stdin.isatty():
        fail("forget --mode purge erases memories for good; run it in a terminal to confirm, or add --yes")
        return 2
    preview = backend.call("memory_forget", {**params, "dry_run": True})
    shown = preview["forgotten"]
    if not shown:
        return preview  # nothing to erase, and nothing erased
    for rid in shown:
        print(f"  {rid}")
    these = "this memory" if len(shown) == 1 else f"these {len(shown)} memories"
    answer = input(f"Erase {these} for good? This cannot be undone. [y/N] ")
    if answer.strip().lower() not in ("y", "yes"):
        print("nothing changed")
        return 1
    return _purge_shown(backend, shown)


def cmd_forget(args: argparse.Namespace) -> int:
    params = method_params(args, "memory_forget")
    with connected(args) as backend:
        if params.get("mode") == "purge":
            result = _confirmed_purge(args, backend, params)
            if isinstance(result, int):
                return result
        else:
            result = backend.call("memory_forget", params)
    if args.json:
        print_json(result)
        return 0
    forgotten, dry = result["forgotten"], params.get("dry_run", False)
    verb = ("would purge" if dry else "purged") if result["mode"] == "purge" else ("would forget" if dry else "forgot")
    print(f"{verb} {len(forgotten)} of {plural(result['matched'], 'matching memory', 'matching memories')}")
    for rid in forgotten:
        print(f"  {rid}")
    if result["undo_until"] and forgotten:
        print(f"restorable with 'iai-mcp restore ID' until {when(result['undo_until'])}; erased for good after that")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_restore", {"ids": args.ids}, _show_restored)


def _show_restored(result: dict[str, Any]) -> None:
    if not result["restored"]:
        print("nothing to restore: none of these memories is forgotten")
    else:
        print(f"restored {len(result['restored'])}: " + " ".join(result["restored"]))


def _update(args: argparse.Namespace, params: dict[str, Any], say: Callable[[dict[str, Any]], str]) -> int:
    return call_and_show(args, "memory_update", {"id": args.id, **params}, lambda record: print(say(record)))


def cmd_pin(args: argparse.Namespace) -> int:
    return _update(args, {"pinned": True}, lambda r: f"pinned {r['record_id']}")


def cmd_unpin(args: argparse.Namespace) -> int:
    return _update(args, {"pinned": False}, lambda r: f"unpinned {r['record_id']}")


def cmd_tag(args: argparse.Namespace) -> int:
    params = {"tags_add": args.add, "tags_remove": args.remove}
    return _update(args, params, lambda r: f"tags of {r['record_id']}: {', '.join(r['tags']) or '(none)'}")


def add_commands(command: AddCommand) -> None:
    p = command("forget", cmd_forget, "forget memories: hide them (restorable for a while) or purge them for good")
    p.defer(lambda p: contract_options(p, "memory_forget"))
    p.add_argument("--yes", action="store_true", help="with --mode purge: do not ask")
    json_flag(p)

    p = command("restore", cmd_restore, "bring back memories that forget hid")
    p.add_argument("ids", nargs="+", metavar="ID")
    json_flag(p)

    for name, func, help in (("pin", cmd_pin, "pin a memory: every new conversation starts with it"),
                             ("unpin", cmd_unpin, "unpin a memory")):
        p = command(name, func, help)
        p.add_argument("id", metavar="ID")
        json_flag(p)

    p = command("tag", cmd_tag, "add or remove tags of a memory")
    p.add_argument("id", metavar="ID")
    p.add_argument("--add", action="append", metavar="TAG", help="a tag to add; repeat for several")
    p.add_argument("--remove", action="append", metavar="TAG", help="a tag to remove; repeat for several")
    json_flag(p)
