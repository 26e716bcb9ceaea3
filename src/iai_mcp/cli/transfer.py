"""The commands that move memories in and out: export, and import from this
program's own export or from another tool's format (``iai_mcp.importers``).

Import checks everything before it writes anything: the file is read and
each record checked against the import contract (an error names the line),
then every batch is dry-run by the store (supersede cycles through what is
stored), and only then are the batches imported. Batches are separate calls,
so a crash midway leaves the batches before it imported: running the same
import again is the way to resume, as records already stored are skipped
(by id: an export's own, or one derived from the source); a failed batch
says how many records went in before it.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iai_mcp.cli.format import note, plural, print_json
from iai_mcp.cli.options import AddCommand, batch_size, connected, json_flag
from iai_mcp.errors import IaiError, InvalidInput

IMPORT_BATCH = 200
#: Bytes of JSON per import call, well under the wire's 32 MiB a message.
IMPORT_BATCH_BYTES = 4 * 1024 * 1024


def _progress(total: int | None, what: str) -> Any:
    """A progress bar on stderr when it is a terminal; silent otherwise (a
    pipe or a log file gets the one summary line only)."""
    from tqdm import tqdm

    return tqdm(total=total, unit=" memories", desc=what, file=sys.stderr,
                disable=not sys.stderr.isatty(), leave=False)


def cmd_export(args: argparse.Namespace) -> int:
    if not args.plaintext:
        raise InvalidInput(
            "export writes every memory in plaintext (the store keeps them encrypted); "
            "pass --plaintext to confirm, and keep the file somewhere safe"
        )
    if not args.output:
        written, damaged = _export_to(sys.stdout, args)
    else:
        # fs.atomic_writer: a temp file beside the target, owner-only, renamed
        # over it only when every page is written (pages stream through it, so
        # the export is never held in memory): a failed export never truncates
        # yesterday's backup, and an existing file never keeps a looser mode.
        import codecs

        from iai_mcp.fs import atomic_writer

        with atomic_writer(Path(args.output), mode=0o600) as raw:
            written, damaged = _export_to(codecs.getwriter("utf-8")(raw), args)
    if args.json:
        # The records go to the file; the summary is the JSON (on stderr with
        # no file: stdout holds the records then).
        summary = json.dumps({"written": written, "output": args.output or "-", "plaintext": True,
                              "provenance_damaged": damaged})
        print(summary, file=sys.stdout if args.output else sys.stderr)
    else:
        note(f"wrote {plural(written, 'memory', 'memories')} IN PLAINTEXT to {args.output or 'stdout'}")
        if damaged:
            note(f"{plural(damaged, 'provenance entry', 'provenance entries')} could not be read and "
                 f"{'was' if damaged == 1 else 'were'} left out; run: iai-mcp doctor")
    return 0


def _export_to(out: Any, args: argparse.Namespace) -> tuple[int, int]:
    """Records written, and provenance entries left out as unreadable (damage)."""
    from iai_mcp.core.limits import MAX_PAGE

    written = damaged = 0
    with connected(args) as backend, _progress(None, "exporting") as bar:
        offset: int | None = 0
        while offset is not None:
            # Pages bounded in bytes as well as in records (memory_export's
            # max_bytes): any export crosses the daemon's wire.
            page = backend.call("memory_export", {"offset": offset, "limit": MAX_PAGE,
                                                  "include_hidden": args.include_hidden or None})
            bar.total = page["total"]
            for record in page["records"]:
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            written += len(page["records"])
            bar.update(len(page["records"]))
            damaged += page.get("provenance_damaged", 0)
            offset = page["next_offset"]
    return written, damaged


def _read(args: argparse.Namespace) -> list[Any]:
    from iai_mcp import importers
    from iai_mcp.importers import native, source

    if args.path == "-":
        if args.format != "iai-mcp":
            raise InvalidInput(f"--from {args.format} reads a file or folder, not stdin")
        # Bytes, so invalid UTF-8 is reported by line like a file's (a text
        # stream stood in for stdin, as in tests, is already decoded).
        stdin = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode("utf-8")
        items = list(native.items(source.decode(stdin, "stdin"), "stdin"))
    else:
        path = Path(args.path).expanduser()
        if not path.exists():
            raise InvalidInput(f"{path}: no such file or folder; nothing was imported")
        items = importers.read(args.format, path)
    importers.check(items)
    return items


def _batches(records: list[dict[str, Any]], size: int) -> Iterator[tuple[int, list[dict[str, Any]]]]:
    """(index of its first record, batch): at most ``size`` records and
    ``IMPORT_BATCH_BYTES`` of JSON each (one record at least)."""
    start, batch, used = 0, [], 0
    for i, record in enumerate(records):
        cost = len(json.dumps(record, ensure_ascii=False).encode("utf-8"))
        if batch and (len(batch) == size or used + cost > IMPORT_BATCH_BYTES):
            yield start, batch
            start, batch, used = i, [], 0
        batch.append(record)
        used += cost
    if batch:
        yield start, batch


def _stopped(exc: IaiError | OSError, done: int, total: int) -> IaiError | OSError:
    """``exc`` (a batch that failed midway) with what was imported before it
    and how to go on: each batch is its own call, so the earlier ones stay."""
    told = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) and exc.filename else str(exc)
    message = (f"{told}; {done} of {plural(total, 'record')} imported before this batch stopped; run the "
               "same command again to resume (records already stored are skipped)")
    return type(exc)(message) if isinstance(exc, IaiError) else OSError(message)


def cmd_import(args: argparse.Namespace) -> int:
    from iai_mcp import backend as backends
    from iai_mcp.core.links import cycle_in_export

    items = _read(args)
    records = [item.record for item in items]
    # Batches are separate calls: links between two batches are checked here,
    # on the whole file, before the first one is written.
    cycle = cycle_in_export(records)
    if cycle:
        raise InvalidInput(f"{args.path}: the superseded_by links make a cycle "
                           f"({' -> '.join([*cycle, cycle[0]])}); fix or drop one; nothing was imported")
    batches = list(_batches(records, args.batch_size))
    totals = {"inserted": 0, "reinforced": 0, "skipped": 0}
    # A dry run on a path with no store checks the file alone and creates nothing.
    if not args.dry_run or backends.store_exists(args.store):
        with connected(args, create=not args.dry_run) as backend:
            # Every batch checked by the store first, so a bad record anywhere imports nothing.
            for start, batch in batches:
                try:
                    backend.call("memory_import", {"records": batch, "dry_run": True})
                except InvalidInput as exc:
                    raise type(exc)(f"{items[start].where} and the {len(batch) - 1} records after it: "
                                    f"{exc}") from None
            if not args.dry_run:
                with _progress(len(records), "importing") as bar:
                    for start, batch in batches:
                        try:
                            result = backend.call("memory_import", {"records": batch})
                        except (IaiError, OSError) as exc:
                            raise _stopped(exc, start, len(records)) from None
                        for status in totals:
                            totals[status] += result[status]
                        bar.update(len(batch))
    summary = {"records": len(records), "format": args.format, "dry_run": args.dry_run, **totals}
    if args.json:
        print_json(summary)
    elif args.dry_run:
        print(f"would import {plural(len(records), 'memory', 'memories')} from {args.path} "
              f"({args.format}); every one checked, nothing was written")
    else:
        print(f"imported {plural(len(records), 'record')}: {totals['inserted']} inserted, "
              f"{totals['reinforced']} reinforced, {totals['skipped']} skipped")
    return 0


def add_commands(command: AddCommand) -> None:
    from iai_mcp.core.limits import MAX_PAGE
    from iai_mcp.importers import FORMATS

    p = command("export", cmd_export, "write every memory as JSONL, in plaintext (needs --plaintext)")
    p.add_argument("--plaintext", action="store_true", help="confirm that the output is unencrypted")
    p.add_argument("-o", "--output", metavar="FILE", help="write here (mode 0600) instead of stdout")
    p.add_argument("--include-hidden", action="store_true",
                   help="also export forgotten (hidden, still restorable) memories")
    json_flag(p)

    p = command("import", cmd_import,
                "import memories: an iai-mcp export (kept whole) or another tool's (--from); "
                "everything is checked before anything is written, and running it again resumes "
                "(what is already stored is skipped)")
    p.add_argument("path", metavar="PATH", help="the file (or basic-memory folder); '-' reads an iai-mcp export from stdin")
    p.add_argument("--from", dest="format", choices=FORMATS, default="iai-mcp",
                   help="the format of PATH (default iai-mcp, this program's export)")
    p.add_argument("--dry-run", action="store_true", help="read and check everything, write nothing")
    p.add_argument("--batch-size", type=batch_size, default=IMPORT_BATCH, metavar="N",
                   help=f"records per call, 1-{MAX_PAGE} (default {IMPORT_BATCH})")
    json_flag(p)
