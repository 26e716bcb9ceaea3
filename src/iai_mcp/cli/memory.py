"""The commands about memories themselves: capture, recall, supersede,
list, tags and show."""
from __future__ import annotations

import argparse
from typing import Any

from iai_mcp.cli.format import (
    fields,
    human,
    indent,
    note,
    one_line,
    provenance_line,
    show_captured,
    when,
)
from iai_mcp.cli.options import (
    AddCommand,
    call_and_show,
    contract_options,
    json_flag,
    method_params,
    text_argument,
)


def cmd_capture(args: argparse.Namespace, **extra: Any) -> int:
    params = {**method_params(args, "memory_capture"), "text": text_argument(args.text), **extra}
    # A correction names memories that must exist: only a plain capture creates a store.
    return call_and_show(args, "memory_capture", params, show_captured, create=not extra.get("supersedes"))


def cmd_recall(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_recall", method_params(args, "memory_recall"),
                         lambda result: _show_recall(result, args.preview))


def _show_recall(result: dict[str, Any], preview: int | None = None) -> None:
    if not result["hits"]:
        print(result.get("note") or "no memories found")
    for hit in result["hits"]:
        if preview is not None:
            # One line a hit: score, id and the first ``preview`` characters.
            print(f"{hit['score']:.3f}  {hit['record_id']}  {one_line(hit['literal_surface'], preview)}")
            continue
        print(f"{hit['score']:.3f}  {when(hit['ts'])}  {hit['record_id']}  ({hit['reason']})")
        print(indent(hit["literal_surface"]))
        if span := hit.get("excerpt"):
            print(f"    [excerpt: characters {span['start']}-{span['end']} of {span['length']}; "
                  f"'iai-mcp show {hit['record_id']}' prints all of it]")
    for anti in result.get("anti_hits", []):
        replaced = f" on {when(anti['valid_to'])}" if anti.get("valid_to") else ""
        if preview is not None:
            print(f"superseded {anti['score']:.3f}  {anti['record_id']}  {one_line(anti['literal_surface'], preview)}")
            continue
        print(f"superseded {anti['score']:.3f}  {anti['record_id']}  (replaced by {anti['superseded_by']}{replaced})")
        print(indent(anti["literal_surface"]))


def cmd_supersede(args: argparse.Namespace) -> int:
    return cmd_capture(args, supersedes=args.old_ids)


def cmd_list(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_list", method_params(args, "memory_list"), _show_page)


def _show_page(page: dict[str, Any]) -> None:
    if not page["items"]:
        print("no memories")
    for item in page["items"]:
        flags = " pinned" if item["pinned"] else ""
        tags = f" [{', '.join(item['tags'])}]" if item["tags"] else ""
        state = item["state"]
        if item.get("undo_until"):
            state += f" until {when(item['undo_until'])}"
        elif item.get("superseded_by"):
            state += f" by {item['superseded_by']}"
        print(f"{when(item['ts'])}  {item['record_id']}  {state}{flags}{tags}")
        print(f"    {one_line(item['literal_surface'])}")
    if page["next_cursor"]:
        note(f"more: add --cursor {page['next_cursor']}")


def cmd_tags(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_tags", {}, _show_tags)


def _show_tags(result: dict[str, Any]) -> None:
    if not result["tags"]:
        print("no tags")
    for item in result["tags"]:
        print(f"{item['count']:>6}  {item['tag']}")


def cmd_show(args: argparse.Namespace) -> int:
    return call_and_show(args, "memory_get", {"id": args.id}, _show_record)


#: What ``show`` prints about a memory, in this order ("said" is its ``ts``).
_SHOWN = ("record_id", "state", "tier", "role", "session_id", "ts", "tags", "pinned", "language",
          "created_at", "updated_at", "reinforcements", "valid_to", "superseded_by", "undo_until")


def _show_record(record: dict[str, Any]) -> None:
    # valid_from is always the ts: said once, as "said".
    fields(record, _SHOWN, labels={"ts": "said"})
    print("text:")
    print(indent(record["literal_surface"]))
    history = record.get("history", [])
    print(f"history ({len(history)}):")
    for item in history:
        detail = item.get("detail")
        detail = f": {human('detail', detail)}" if detail else ""
        session = f" in session {item['session_id']}" if item.get("session_id") else ""
        print(f"  {when(item['ts'])}  {item['action']}{session}{detail}")
    provenance = record["provenance"]
    print(f"provenance ({len(provenance)}):")
    for entry in provenance:
        print(provenance_line(entry))


def _preview_width(value: str) -> int:
    try:
        width = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if width < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return width


def add_commands(command: AddCommand) -> None:
    p = command("capture", cmd_capture, "remember TEXT verbatim (reads stdin when TEXT is '-' or absent)")
    p.add_argument("text", nargs="?", metavar="TEXT")
    p.defer(lambda p: contract_options(p, "memory_capture", skip=("text",)))
    json_flag(p)

    p = command("recall", cmd_recall, "find the memories that match CUE, best first")
    p.add_argument("cue", metavar="CUE")
    p.defer(lambda p: contract_options(p, "memory_recall", skip=("cue", "cue_embedding")))
    p.add_argument("--preview", type=_preview_width, metavar="N",
                   help="one line a hit: its score, id and first N characters")
    json_flag(p)

    p = command("supersede", cmd_supersede,
                "remember TEXT as replacing OLD_ID... (a correction; the old ones become anti-hits)")
    p.add_argument("old_ids", nargs="+", metavar="OLD_ID")
    p.add_argument("--text", metavar="TEXT", help="the new, correct words (default: read stdin)")
    p.defer(lambda p: contract_options(p, "memory_capture", skip=("text", "supersedes")))
    json_flag(p)

    p = command("list", cmd_list, "list memories by state, tags, session or time, newest first")
    p.defer(lambda p: contract_options(p, "memory_list"))
    json_flag(p)

    json_flag(command("tags", cmd_tags, "the tags on active memories, most used first"))

    p = command("show", cmd_show, "show one memory and its provenance (when, by which cue, in which session)")
    p.add_argument("id", metavar="ID")
    json_flag(p)
