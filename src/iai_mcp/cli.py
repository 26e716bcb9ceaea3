"""The ``iai-mcp`` command: thin over the same backend the MCP server uses.

Every command parses its arguments, makes backend calls (``backend.connect()``
-> ``core.dispatch``) and formats the result; ``--json`` prints the data
itself. An ``IaiError`` becomes one line on stderr and exit status 1;
usage errors exit 2. Only the standard library is imported at start, so
``--help`` and the hooks stay fast: the method contract (pydantic) loads for
the commands whose options it gives (capture, recall), the store and the
model when a command needs them.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iai_mcp import __version__
from iai_mcp.errors import IaiError, InvalidInput

PROG = "iai-mcp"
EXPORT_PAGE = 500
IMPORT_BATCH = 200


def _fail(message: str) -> None:
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def _note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def _print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


@contextmanager
def _backend(args: argparse.Namespace) -> Iterator[Any]:
    from iai_mcp import backend

    connection = backend.connect(args.store)
    try:
        yield connection
    finally:
        connection.close()


def _store_path(args: argparse.Namespace) -> Path:
    from iai_mcp import backend

    return backend.store_path(args.store)


def _indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines() or [""])


# ------------------------------------------------------------------ commands


def cmd_serve(args: argparse.Namespace) -> int:
    from iai_mcp.mcp_server import serve

    serve(args.store)
    return 0


def _method_params(args: argparse.Namespace, method: str) -> dict[str, Any]:
    """The options given for ``method``'s parameters (``contract_options``);
    one not given is left out, so the contract's default applies."""
    from iai_mcp.core import contract

    names = contract.method(method).params.model_fields
    return {name: value for name, value in vars(args).items()
            if name in names and value is not None and value is not False}


def cmd_capture(args: argparse.Namespace) -> int:
    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
        # The newline a shell pipe adds is not part of what was said.
        text = text[:-1] if text.endswith("\n") else text
    with _backend(args) as backend:
        result = backend.call("memory_capture", {**_method_params(args, "memory_capture"), "text": text})
    _print_captured(result, args.json)
    return 0


def _print_captured(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _print_json(result)
        return
    print(f"{result['status']} {result['record_id']}: {result['reason']}")
    for item in result.get("related", []):
        print(f"  related {item['score']:.2f} {item['record_id']}: {_one_line(item['excerpt'])}")


def cmd_recall(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        result = backend.call("memory_recall", _method_params(args, "memory_recall"))
    if args.json:
        _print_json(result)
        return 0
    if not result["hits"]:
        print("no memories found")
    for hit in result["hits"]:
        print(f"{hit['score']:.3f}  {hit['ts'][:19]}  {hit['record_id']}  ({hit['reason']})")
        print(_indent(hit["literal_surface"]))
    for anti in result.get("anti_hits", []):
        print(f"superseded {anti['score']:.3f}  {anti['record_id']}  (replaced by {anti['superseded_by']} "
              f"on {str(anti['valid_to'])[:19]})")
        print(_indent(anti["literal_surface"]))
    return 0


def _provenance_line(entry: dict[str, Any]) -> str:
    verb = "captured with cue" if entry.get("kind") == "capture" else "recalled by cue"
    session = entry.get("session_id")
    where = f" in session {session}" if session else ""
    return f"  {entry.get('ts', '?')}  {verb} {json.dumps(entry.get('cue'), ensure_ascii=False)}{where}"


def cmd_show(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        record = backend.call("memory_get", {"id": args.id})
    if args.json:
        _print_json(record)
        return 0
    for key in ("record_id", "tier", "role", "session_id", "ts", "tags", "pinned",
                "language", "created_at", "updated_at", "reinforcements"):
        print(f"{key}: {record.get(key)}")
    print("text:")
    print(_indent(record["literal_surface"]))
    provenance = record["provenance"]
    print(f"provenance ({len(provenance)}):")
    for entry in provenance:
        print(_provenance_line(entry))
    return 0


def cmd_stats(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        stats = backend.call("memory_stats", {})
    if args.json:
        _print_json(stats)
        return 0
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
    return 0


def cmd_compact(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        result = backend.call("memory_compact", {})
    if args.json:
        _print_json(result)
    else:
        print(f"versions: {result['versions_before']} -> {result['versions_after']}; "
              f"fragments: {result['fragments_before']} -> {result['fragments_after']}")
    return 0


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
    _note(f"wrote {written} memories IN PLAINTEXT to {args.output or 'stdout'}")
    return 0


def _export_to(out: Any, args: argparse.Namespace) -> int:
    written = 0
    with _backend(args) as backend:
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
    records = _read_export(args.file)
    batches = [records[i:i + args.batch_size] for i in range(0, len(records), args.batch_size)]
    totals = {"inserted": 0, "reinforced": 0, "skipped": 0}
    with _backend(args) as backend:
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
        _print_json({"records": len(records), **totals})
    else:
        print(f"imported {len(records)} records: {totals['inserted']} inserted, "
              f"{totals['reinforced']} reinforced, {totals['skipped']} skipped")
    return 0


# ---- correcting and browsing (issue 9) ----------------------------------------


def _one_line(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def cmd_supersede(args: argparse.Namespace) -> int:
    text = args.text
    if text is None or text == "-":
        text = sys.stdin.read()
        text = text[:-1] if text.endswith("\n") else text
    params = {**_method_params(args, "memory_capture"), "text": text, "supersedes": args.old_ids}
    with _backend(args) as backend:
        result = backend.call("memory_capture", params)
    _print_captured(result, args.json)
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        page = backend.call("memory_list", _method_params(args, "memory_list"))
    if args.json:
        _print_json(page)
        return 0
    if not page["items"]:
        print("no memories")
    for item in page["items"]:
        flags = " pinned" if item["pinned"] else ""
        tags = f" [{', '.join(item['tags'])}]" if item["tags"] else ""
        state = item["state"]
        if item.get("undo_until"):
            state += f" until {item['undo_until'][:10]}"
        elif item.get("superseded_by"):
            state += f" by {item['superseded_by']}"
        print(f"{item['ts'][:19]}  {item['record_id']}  {state}{flags}{tags}")
        print(f"    {_one_line(item['literal_surface'])}")
    if page["next_cursor"]:
        _note(f"more: add --cursor {page['next_cursor']}")
    return 0


def cmd_tags(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        result = backend.call("memory_tags", {})
    if args.json:
        _print_json(result)
        return 0
    if not result["tags"]:
        print("no tags")
    for item in result["tags"]:
        print(f"{item['count']:>6}  {item['tag']}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from iai_mcp.doctor import run_checks

    if args.repair:
        return _repair(args)
    checks = run_checks(args.store)
    if args.json:
        _print_json([{"status": c.status, "name": c.name, "detail": c.detail} for c in checks])
    else:
        for check in checks:
            print(f"{check.status} {check.name}: {check.detail}")
    return 1 if any(c.status == "FAIL" for c in checks) else 0


def _repair(args: argparse.Namespace) -> int:
    """Show what repair would do, ask, then do it. The daemon is stopped
    first: repair replays journals and compacts, which needs the store alone."""
    from iai_mcp.core.repair import repair
    from iai_mcp.daemon import lifecycle as daemon

    root = _store_path(args)
    planned = repair(root, apply=False)
    if not planned:
        print("nothing to repair")
        return 0
    for line in planned:
        print(line)
    if not args.yes:
        if not sys.stdin.isatty():
            _fail("doctor --repair asks before changing anything; run it in a terminal or add --yes")
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
        _print_json(change.settings)
        _note(f"dry run: {path} was not changed")
    for note in change.notes:
        _note(note)
    if not change.changed:
        _note(f"nothing to change in {path}")
    elif not args.dry_run:
        backup = f" (backup: {change.backup})" if change.backup else ""
        _note(f"{args.action}ed Claude Code hooks in {path}{backup}")
    return 0


def cmd_hook(args: argparse.Namespace) -> int:
    from iai_mcp import hooks

    payload = hooks.parse_payload(sys.stdin.read())
    with _backend(args) as backend:
        if args.event == "session-start":
            pack = hooks.session_start(backend, payload, args.budget_tokens)
            if args.json:
                _print_json(pack)
            elif pack["text"]:
                sys.stdout.write(pack["text"])
            return 0
        counts = hooks.capture_transcript(backend, payload, _store_path(args) / hooks.STATE_DIR)
    if args.json:
        _print_json(counts)
    return 0


def cmd_daemon(args: argparse.Namespace) -> int:
    from iai_mcp.daemon import lifecycle as daemon

    path = _store_path(args)
    if args.action == "run":
        return daemon.run(path, idle_timeout=args.idle_timeout)
    if args.action == "stop":
        stopped = daemon.stop(path, args.timeout)
        print("stopped" if stopped else "no daemon was running")
        return 0
    status = daemon.status(path)
    if args.json:
        _print_json(status)
    else:
        print("not running" if status is None else
              "running: " + ", ".join(f"{k}={v}" for k, v in status.items()))
    return 0


# ------------------------------------------- forgetting and correcting (F)


def _refuse_purge(args: argparse.Namespace, backend: Any, params: dict[str, Any]) -> int | None:
    """``forget --mode purge`` is irreversible: show what it would erase and
    ask on a terminal; elsewhere it needs ``--yes``. The exit status when
    it must not go ahead, else None."""
    if args.yes or params.get("dry_run"):
        return None
    if not sys.stdin.isatty():
        _fail("forget --mode purge erases memories for good; run it in a terminal to confirm, or add --yes")
        return 2
    preview = backend.call("memory_forget", {**params, "dry_run": True})
    if not preview["forgotten"]:
        return None  # nothing to erase: the call itself says so
    for rid in preview["forgotten"]:
        print(f"  {rid}")
    answer = input(f"Erase these {len(preview['forgotten'])} memories for good? This cannot be undone. [y/N] ")
    if answer.strip().lower() in ("y", "yes"):
        return None
    print("nothing changed")
    return 1


def cmd_forget(args: argparse.Namespace) -> int:
    params = _method_params(args, "memory_forget")
    with _backend(args) as backend:
        if params.get("mode") == "purge" and (refused := _refuse_purge(args, backend, params)) is not None:
            return refused
        result = backend.call("memory_forget", params)
    if args.json:
        _print_json(result)
        return 0
    forgotten, dry = result["forgotten"], params.get("dry_run", False)
    verb = ("would purge" if dry else "purged") if result["mode"] == "purge" else ("would forget" if dry else "forgot")
    print(f"{verb} {len(forgotten)} of {result['matched']} matching memories")
    for rid in forgotten:
        print(f"  {rid}")
    if result["undo_until"] and forgotten:
        print(f"restorable with 'iai-mcp restore ID' until {result['undo_until']}; erased for good after that")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    with _backend(args) as backend:
        result = backend.call("memory_restore", {"ids": args.ids})
    if args.json:
        _print_json(result)
    elif not result["restored"]:
        print("nothing to restore: none of these memories is forgotten")
    else:
        print(f"restored {len(result['restored'])}: " + " ".join(result["restored"]))
    return 0


def _update(args: argparse.Namespace, params: dict[str, Any], say: Callable[[dict[str, Any]], str]) -> int:
    with _backend(args) as backend:
        record = backend.call("memory_update", {"id": args.id, **params})
    if args.json:
        _print_json(record)
    else:
        print(say(record))
    return 0


def cmd_pin(args: argparse.Namespace) -> int:
    return _update(args, {"pinned": True}, lambda r: f"pinned {r['record_id']}")


def cmd_unpin(args: argparse.Namespace) -> int:
    return _update(args, {"pinned": False}, lambda r: f"unpinned {r['record_id']}")


def cmd_tag(args: argparse.Namespace) -> int:
    params = {"tags_add": args.add, "tags_remove": args.remove}
    return _update(args, params, lambda r: f"tags of {r['record_id']}: {', '.join(r['tags']) or '(none)'}")


def _add_lifecycle_commands(command: Callable[..., _CommandParser]) -> None:
    p = command("forget", cmd_forget, "forget memories: hide them (restorable for a while) or purge them for good")
    p.defer(lambda p: contract_options(p, "memory_forget"))
    p.add_argument("--yes", action="store_true", help="with --mode purge: do not ask")
    _json_flag(p)

    p = command("restore", cmd_restore, "bring back memories that forget hid")
    p.add_argument("ids", nargs="+", metavar="ID")
    _json_flag(p)

    for name, func, help in (("pin", cmd_pin, "pin a memory: every new conversation starts with it"),
                             ("unpin", cmd_unpin, "unpin a memory")):
        p = command(name, func, help)
        p.add_argument("id", metavar="ID")
        _json_flag(p)

    p = command("tag", cmd_tag, "add or remove tags of a memory")
    p.add_argument("id", metavar="ID")
    p.add_argument("--add", action="append", metavar="TAG", help="a tag to add; repeat for several")
    p.add_argument("--remove", action="append", metavar="TAG", help="a tag to remove; repeat for several")
    _json_flag(p)


# -------------------------------------------------------------------- parser


def _batch_size(value: str) -> int:
    from iai_mcp.core.limits import MAX_PAGE

    try:
        size = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if not 1 <= size <= MAX_PAGE:
        raise argparse.ArgumentTypeError(f"must be between 1 and {MAX_PAGE}")
    return size


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


class _CommandParser(argparse.ArgumentParser):
    """A command's parser whose contract-derived options are added on first
    use (parsing or help). The contract imports pydantic, ~90 ms of start-up
    that ``--help``, ``hook`` and every other command would otherwise pay on
    each run for options they never show."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deferred: list[Callable[[argparse.ArgumentParser], None]] = []

    def defer(self, add: Callable[[argparse.ArgumentParser], None]) -> None:
        self._deferred.append(add)

    def _complete(self) -> None:
        while self._deferred:
            self._deferred.pop(0)(self)

    def parse_known_args(self, args: Any = None, namespace: Any = None) -> Any:  # type: ignore[override]
        self._complete()
        return super().parse_known_args(args, namespace)

    def format_help(self) -> str:
        self._complete()
        return super().format_help()


def contract_options(parser: argparse.ArgumentParser, method: str, *, skip: tuple[str, ...] = ()) -> None:
    """One option per parameter of ``method``'s contract (``core.contract``),
    except ``skip``: ``--session-id`` for ``session_id``, choices from a
    ``Literal``, a flag for a bool, a repeatable singular option for a list
    (``--tag``), the description (and default) as help. No option has an
    argparse default: one not given is not sent, and the contract's applies."""
    from iai_mcp.core import contract

    for name, field in contract.method(method).params.model_fields.items():
        if name in skip:
            continue
        kind = field.annotation
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(t for t in typing.get_args(kind) if t is not type(None))  # X | None
        flag = "--" + name.replace("_", "-")
        help = (field.description or "").replace("%", "%%")
        if field.default not in (None, False):
            help = f"{help.rstrip('.')} (default {field.default})"
        options: dict[str, Any] = {"dest": name, "help": help}
        if kind is bool:
            options["action"] = "store_true"
        elif typing.get_origin(kind) is list:
            flag = flag.removesuffix("s")
            options.update(action="append", metavar=flag[2:].upper(), help=f"{help.rstrip('.')}; repeat for several")
        elif typing.get_origin(kind) is typing.Literal:
            options["choices"] = list(typing.get_args(kind))
        elif kind is int:
            options["type"] = int
        parser.add_argument(flag, **options)


def build_parser() -> argparse.ArgumentParser:
    from iai_mcp.core.limits import MAX_PAGE, SESSION_PACK_TOKENS

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Local, encrypted, verbatim long-term memory for MCP assistants.",
        epilog="The store lives in $IAI_MCP_STORE (default ~/.iai-mcp).",
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    parser.add_argument("--store", metavar="PATH", help="store directory (overrides IAI_MCP_STORE)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=_CommandParser)

    def command(name: str, func: Callable[[argparse.Namespace], int], help: str) -> _CommandParser:
        p = sub.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    command("serve", cmd_serve, "run the MCP server on stdin/stdout")

    p = command("capture", cmd_capture, "remember TEXT verbatim (reads stdin when TEXT is '-' or absent)")
    p.add_argument("text", nargs="?", metavar="TEXT")
    p.defer(lambda p: contract_options(p, "memory_capture", skip=("text",)))
    _json_flag(p)

    p = command("recall", cmd_recall, "find the memories that match CUE, best first")
    p.add_argument("cue", metavar="CUE")
    p.defer(lambda p: contract_options(p, "memory_recall", skip=("cue", "cue_embedding")))
    _json_flag(p)

    p = command("supersede", cmd_supersede,
                "remember TEXT as replacing OLD_ID... (a correction; the old ones become anti-hits)")
    p.add_argument("old_ids", nargs="+", metavar="OLD_ID")
    p.add_argument("--text", metavar="TEXT", help="the new, correct words (default: read stdin)")
    p.defer(lambda p: contract_options(p, "memory_capture", skip=("text", "supersedes")))
    _json_flag(p)

    p = command("list", cmd_list, "list memories by state, tags, session or time, newest first")
    p.defer(lambda p: contract_options(p, "memory_list"))
    _json_flag(p)

    _json_flag(command("tags", cmd_tags, "the tags on active memories, most used first"))

    p = command("show", cmd_show, "show one memory and its provenance (when, by which cue, in which session)")
    p.add_argument("id", metavar="ID")
    _json_flag(p)

    _json_flag(command("stats", cmd_stats, "counts, disk use, LanceDB versions and fragments, embedder"))

    p = command("export", cmd_export, "write every memory as JSONL, in plaintext (needs --plaintext)")
    p.add_argument("--plaintext", action="store_true", help="confirm that the output is unencrypted")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.add_argument("--include-hidden", action="store_true",
                   help="also export forgotten (hidden, still restorable) memories")

    p = command("import", cmd_import, "import a JSONL export (re-embedded; repeats are skipped)")
    p.add_argument("file", metavar="FILE", help="the export file, or '-' for stdin")
    p.add_argument("--batch-size", type=_batch_size, default=IMPORT_BATCH, metavar="N",
                   help=f"records per call, 1-{MAX_PAGE} (default {IMPORT_BATCH})")
    _json_flag(p)

    p = command("doctor", cmd_doctor, "check the store, key, embedder, spill/journal and daemon")
    p.add_argument("--repair", action="store_true",
                   help="fix what can be fixed without losing data (asks first)")
    p.add_argument("--yes", action="store_true", help="with --repair: do not ask")
    _json_flag(p)
    _json_flag(command("compact", cmd_compact, "fold LanceDB fragments and prune old versions"))

    p = command("hooks", cmd_hooks, "install or remove the Claude Code hooks")
    p.add_argument("action", choices=["install", "uninstall"])
    p.add_argument("--host", choices=["claude-code"], default="claude-code", help="the assistant (default claude-code)")
    p.add_argument("--settings", metavar="FILE", help="settings file (default ~/.claude/settings.json)")
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, change nothing")

    p = command("hook", cmd_hook, "run a hook (Claude Code calls this with JSON on stdin)")
    p.add_argument("event", choices=["session-start", "stop"])
    p.add_argument("--budget-tokens", type=int, default=SESSION_PACK_TOKENS,
                   help=f"session-start: token budget for the pack (default {SESSION_PACK_TOKENS})")
    _json_flag(p)

    p = command("daemon", cmd_daemon, "run, query or stop the per-store daemon")
    p.add_argument("action", choices=["run", "status", "stop"])
    p.add_argument("--idle-timeout", type=float, metavar="S",
                   help="with run: seconds idle before exiting (default $IAI_MCP_DAEMON_IDLE_TIMEOUT or 600)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="S",
                   help="with stop: seconds to wait for the daemon to drain (default 30)")
    _json_flag(p)
    _add_lifecycle_commands(command)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IaiError as exc:
        _fail(str(exc))
        return 1
    except OSError as exc:
        _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc))
        return 1
    except KeyboardInterrupt:
        return 130
