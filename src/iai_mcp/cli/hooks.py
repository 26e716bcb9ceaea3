"""The commands of the assistants' hooks: ``hooks install|uninstall|status``,
``hook`` (what the host runs) and ``import-transcripts`` (backfill)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from iai_mcp.cli.format import note, plural, print_json
from iai_mcp.cli.options import AddCommand, connected, json_flag, store_path
from iai_mcp.errors import InvalidInput

HOST_NAMES = ["claude-code", "codex"]


def _pinned_store(args: argparse.Namespace) -> str | None:
    store = args.store or os.environ.get("IAI_MCP_STORE")
    # Hooks run from each project's directory: a relative path would give
    # every project a store (and a key) of its own.
    return str(Path(store).expanduser().resolve()) if store else None


def _hosts(args: argparse.Namespace, default: str) -> list[str]:
    name = args.host or default
    return list(HOST_NAMES) if name == "all" else [name]


def _config_path(args: argparse.Namespace, host: Any) -> Path:
    return Path(args.settings).expanduser() if args.settings else host.config_path()


def cmd_hooks(args: argparse.Namespace) -> int:
    from iai_mcp import hooks

    names = _hosts(args, "all" if args.action == "status" else "claude-code")
    if args.settings and len(names) > 1:
        raise InvalidInput("--settings names one file: give one --host with it")
    if args.action == "status":
        return _status(args, names)
    for name in names:
        host = hooks.host(name)
        path = _config_path(args, host)
        if args.action == "install":
            commands = hooks.hook_commands(hooks.executable(), _pinned_store(args), host.name)
            change = hooks.install(path, commands, options=host.entry_options, dry_run=args.dry_run)
        else:
            change = hooks.uninstall(path, dry_run=args.dry_run)
        if args.json:  # one JSON line per host
            print(json.dumps({
                "host": host.name, "action": args.action, "settings_file": str(path),
                "changed": change.changed, "dry_run": args.dry_run,
                "backup": str(change.backup) if change.backup else None, "notes": list(change.notes),
                **({"settings": change.settings} if args.dry_run else {}),
            }, ensure_ascii=False))
            continue
        if args.dry_run:
            print_json(change.settings)
            note(f"dry run: {path} was not changed")
        for line in change.notes:
            note(line)
        if not change.changed:
            note(f"nothing to change in {path}")
        elif not args.dry_run:
            backup = f" (backup: {change.backup})" if change.backup else ""
            note(f"{args.action}ed {host.label} hooks in {path}{backup}")
    return 0


def _reach(store: str | None) -> tuple[bool, str, Path]:
    """Whether the store a hook writes to answers (``hooks.status.host_status``'s ``reach``)."""
    from iai_mcp import backend
    from iai_mcp.errors import IaiError

    # A command that names no --store writes where the hook's own
    # environment points (IAI_MCP_STORE, else the default), never to this
    # status command's --store.
    root = backend.store_path(store)
    if not root.is_dir():
        return False, f"no store at {root}", root
    try:
        connection = backend.connect(str(root))
        try:
            stats = connection.call("memory_stats", {})
        finally:
            connection.close()
    except (IaiError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}", root
    return True, f"{stats['records']} memories", root


def _status(args: argparse.Namespace, names: list[str]) -> int:
    from iai_mcp import hooks
    from iai_mcp.hooks.status import healthy, host_status

    reports = [host_status(hooks.host(name), _config_path(args, hooks.host(name)), _reach) for name in names]
    if args.json:
        print_json(reports)
    else:
        for report in reports:
            _show_status(report)
    return 0 if all(healthy(r) for r in reports) else 1


def _show_status(report: dict[str, Any]) -> None:
    if report["config_error"]:
        print(f"{report['host']}: UNREADABLE: {report['config_error']}")
        return
    installed = [event for event, present in report["installed"].items() if present]
    missing = [event for event, present in report["installed"].items() if not present]
    if not installed:
        print(f"{report['host']}: not installed ({report['config']})")
        return
    what = "installed" if not missing else f"partly installed (missing {', '.join(missing)})"
    print(f"{report['host']}: {what} in {report['config']}")
    for need in report["missing"]:
        print(f"  note: {need}")
    print(f"  command: {'runs' if report['command_runs'] else 'FAILS'}: {report['command_detail']}")
    print(f"  store: {'reachable' if report['store_reachable'] else 'UNREACHABLE'}: "
          f"{report['store']} ({report['store_detail']})")
    for hook, run in report["last_run"].items():
        if run is None or "at" not in run:
            line = f"  {hook}: never ran"
        elif hook == "stop":
            line = f"  {hook}: last ran {run['at']}, {run.get('inserted', 0)} new of {run.get('turns', 0)} turns"
        else:
            line = f"  {hook}: last ran {run['at']}"
        if run is not None and "failed_at" in run:
            line += f"; FAILED {run['failed_at']}: {run['error']}"
        print(line)


def cmd_hook(args: argparse.Namespace) -> int:
    from iai_mcp import hooks
    from iai_mcp.hooks import cursors

    state_dir = store_path(args) / hooks.STATE_DIR
    try:
        return _run_hook(args, state_dir)
    except Exception as exc:  # any failure: a background hook has nobody to tell but status
        if state_dir.parent.is_dir():  # never make a store just to say it failed
            try:
                cursors.record_failure(state_dir, args.host, args.event, f"{type(exc).__name__}: {exc}")
            except OSError:
                pass  # the error itself is still reported, below
        raise


def _run_hook(args: argparse.Namespace, state_dir: Path) -> int:
    from iai_mcp import hooks
    from iai_mcp.hooks import cursors

    host = hooks.host(args.host)
    payload = hooks.parse_payload(sys.stdin.read())
    with connected(args, create=True) as backend:
        if args.event == "stop":
            counts = hooks.capture_transcript(backend, payload, state_dir, host.name)
            if args.json:
                print_json(counts)
            return 0
        pack = hooks.session_start(backend, payload, args.budget_tokens)
    cursors.record_run(state_dir, host.name, "session-start", packed=len(pack["memories"]))
    if args.json:
        print_json(pack)
    elif pack["text"] and host.json_context:
        # Codex adds SessionStart context given as hookSpecificOutput.additionalContext.
        print_json({"hookSpecificOutput": {"hookEventName": "SessionStart", "additionalContext": pack["text"]}})
    elif pack["text"]:
        sys.stdout.write(pack["text"])
    return 0


def _since(value: str) -> float:
    from iai_mcp.types import parse_time

    when = parse_time(value)  # UTC when it names no zone
    if when is None:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO-8601 date or time")
    return when.timestamp()


def cmd_import_transcripts(args: argparse.Namespace) -> int:
    from iai_mcp import hooks
    from iai_mcp.backend import store_exists

    host = hooks.host(args.host)
    if args.paths:
        files = []
        for raw in args.paths:
            path = Path(raw).expanduser()
            if path.is_dir():
                files += sorted(p for p in path.glob(host.transcript_glob) if p.is_file())
            elif path.is_file():
                files.append(path)
            else:
                raise InvalidInput(f"{path} is neither a transcript nor a folder of them")
    else:
        files = list(host.transcripts())
    if args.since is not None:
        # Whole transcripts only: a cursor never moves past turns left out.
        files = [f for f in files if f.stat().st_mtime >= args.since]
    transcripts = [(f, host.session_of(f)) for f in files]
    state_dir = store_path(args) / hooks.STATE_DIR
    if args.dry_run and not store_exists(args.store):
        # No store, so no cursors: every turn is new. Nothing is created (no store, key or daemon).
        with _Progress(len(files)) as tick:
            counts = hooks.capture_transcripts(None, host, transcripts, state_dir, dry_run=True, progress=tick)
    else:
        with connected(args, create=not args.dry_run) as backend, _Progress(len(files)) as tick:
            counts = hooks.capture_transcripts(backend, host, transcripts, state_dir,
                                               dry_run=args.dry_run, progress=tick)
    counts = {"transcripts": len(files), **counts}
    if args.json:
        print_json(counts)
    else:
        head = (f"{plural(len(files), 'transcript')}, {plural(counts['turns'], 'new turn')}: ")
        if args.dry_run:  # repeats of stored memories are only found by storing
            print(f"{head}up to {counts['inserted']} would be stored")
        else:
            print(f"{head}{counts['inserted']} stored, {counts['reinforced']} reinforced, "
                  f"{counts['skipped']} already there")
    return 0


class _Progress:
    """A progress bar on stderr when it is a terminal (tqdm); otherwise a
    count line every ``EVERY`` transcripts, so logs stay readable."""

    EVERY = 100

    def __init__(self, total: int) -> None:
        self.total, self.done, self.turns, self.bar = total, 0, 0, None

    def __enter__(self):
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, unit="transcript", file=sys.stderr)
        return self.tick

    def tick(self, turns: int) -> None:
        self.done += 1
        self.turns += turns
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(turns=self.turns)
        elif self.done % self.EVERY == 0:
            note(f"{self.done}/{self.total} transcripts, {self.turns} turns")

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.close()


def add_commands(command: AddCommand) -> None:
    from iai_mcp.core.limits import SESSION_PACK_TOKENS

    p = command("hooks", cmd_hooks, "install, remove or check the assistants' hooks")
    p.add_argument("action", choices=["install", "uninstall", "status"])
    p.add_argument("--host", choices=[*HOST_NAMES, "all"],
                   help="the assistant (default claude-code; status: all)")
    p.add_argument("--settings", metavar="FILE",
                   help="the host's hooks file (default ~/.claude/settings.json, ~/.codex/hooks.json)")
    p.add_argument("--dry-run", action="store_true", help="print the resulting settings, change nothing")
    json_flag(p)

    p = command("hook", cmd_hook, "run a hook (the assistant calls this with JSON on stdin)")
    p.add_argument("event", choices=["session-start", "stop"])
    p.add_argument("--host", choices=HOST_NAMES, default="claude-code", help="the assistant (default claude-code)")
    p.add_argument("--budget-tokens", type=int, default=SESSION_PACK_TOKENS,
                   help=f"session-start: token budget for the pack (default {SESSION_PACK_TOKENS})")
    json_flag(p)

    p = command("import-transcripts", cmd_import_transcripts,
                "capture an assistant's existing transcripts (the Stop hook's parser and cursors)")
    p.add_argument("paths", nargs="*", metavar="PATH",
                   help="transcripts or folders of them (default: all of the host's, e.g. ~/.claude/projects)")
    p.add_argument("--host", choices=HOST_NAMES, default="claude-code", help="the assistant (default claude-code)")
    p.add_argument("--since", type=_since, metavar="DATE",
                   help="only transcripts written to at or after DATE (ISO-8601)")
    p.add_argument("--dry-run", action="store_true", help="count what would be captured, store nothing")
    json_flag(p)
