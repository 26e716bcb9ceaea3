"""Every dispatch method's contract, declared once.

One pydantic model per method gives each parameter's name, type, default,
limit and description; ``METHODS`` says which methods are MCP tools and
which are safe to send again. Everything else is derived from here:

- ``core.dispatch`` checks a call with ``parse(method, params)``;
- ``mcp_server.tools`` builds each tool's parameters from the model (the
  descriptions are the model's manual);
- ``cli`` builds the options of the commands that map to a method
  (``--tier`` choices, defaults and help);
- ``daemon.client`` asks ``resendable(method)`` before sending a request
  again after a broken connection.

What each method returns is declared beside it, in ``core.results``.

Light on purpose (pydantic, no numpy, no store, no model): the CLI and the
daemon client import it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, Field, model_validator
from pydantic_core import PydanticCustomError

from iai_mcp.core.limits import (
    EXPORT_PAGE_BYTES,
    MAX_BUDGET_TOKENS,
    MAX_CUE_CHARS,
    MAX_EXPORT_PAGE_BYTES,
    MAX_ID_CHARS,
    MAX_K,
    MAX_LANGUAGE_CHARS,
    MAX_OFFSET,
    MAX_PAGE,
    MAX_PROVENANCE_PER_RECORD,
    MAX_RECORD_ID_CHARS,
    MAX_TAGS,
    MAX_TEXT_CHARS,
    MAX_TIME_CHARS,
    SESSION_PACK_TOKENS,
)
from iai_mcp.core.params import (
    INVALID,
    OptionalText,
    Params,
    RecordId,
    Tags,
    Text,
    Time,
    Vector,
    ordered_window,
)
from iai_mcp.core.params import (
    parse as parse_model,
)
from iai_mcp.errors import UnknownMethod
from iai_mcp.types import Role, Tier, parse_time

if TYPE_CHECKING:
    from iai_mcp.core.capture import CaptureRequest

_SESSION_ID = "The current conversation's id, if known."
#: A project is a path (a git root or directory); as long as a session id may be.
_PROJECT = "The project it belongs to: the git root of the working directory, else the directory."

# ---- correcting and browsing (issue 9): shared pieces -----------------------

#: Most records one capture may supersede.
MAX_SUPERSEDES = 64
#: Most memories in one memory_list page.
MAX_LIST = 500
MAX_CURSOR_CHARS = 512


def _record_ids(value: list[str] | None) -> list[str] | None:
    for rid in value or ():
        try:
            UUID(rid)
        except ValueError:
            raise PydanticCustomError(INVALID, "must hold record ids (UUIDs), got {rid}", {"rid": repr(rid)[:40]}) from None
    return value


def _optional_record_id(value: str | None) -> str | None:
    return value if value is None else _record_ids([value]) and value


def _not_on_import(value: Any) -> None:
    if value is not None:
        raise PydanticCustomError(INVALID, "is not taken on import: a replaced record carries superseded_by")


RecordIds = Annotated[list[str] | None, AfterValidator(_record_ids)]


class CaptureParams(Params):
    """memory_capture: one memory, verbatim."""

    text: Text = Field(max_length=MAX_TEXT_CHARS, description="The exact words to remember, verbatim.")
    session_id: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=_SESSION_ID)
    role: Role | None = Field(None, description="Who said it.")
    cue: OptionalText = Field(
        None, max_length=MAX_CUE_CHARS, description="What prompted keeping it (a question, a topic)."
    )
    tier: Tier = Field("episodic", description=(
        "episodic: something said or done; semantic: a lasting fact or preference; "
        "procedural: how to do something; working: short-lived."
    ))
    tags: Tags = Field(None, max_length=MAX_TAGS, description="Short labels to filter by later.")
    ts: Time = Field(None, max_length=MAX_TIME_CHARS, description=(
        "When it was said, ISO-8601 (e.g. 2026-05-08T13:56:00Z); default now."
    ))
    pinned: bool = Field(False, description="Always include it in the memories a new session starts with.")
    language: Text = Field("en", max_length=MAX_LANGUAGE_CHARS, description="Language code of the text.")
    supersedes: RecordIds = Field(None, max_length=MAX_SUPERSEDES, description=(
        "record_ids this memory corrects or replaces (\"that's no longer true\"); "
        "they stop being recalled as hits and come back as anti_hits."
    ))
    project: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=_PROJECT)

    def request(self) -> CaptureRequest:
        """The library call these parameters ask for (``core.capture``)."""
        from iai_mcp.core.capture import (
            CaptureRequest,  # imported here: capture loads the store
        )

        return CaptureRequest(
            text=self.text, session_id=self.session_id, role=self.role, cue=self.cue,
            tier=self.tier, tags=tuple(self.tags or ()), said_at=parse_time(self.ts),
            pinned=self.pinned, language=self.language,
            supersedes=tuple(UUID(rid) for rid in self.supersedes or ()),
            project=self.project,
        )


class RecallParams(Params):
    """memory_recall: the memories that matter for a cue."""

    cue: Text = Field(
        max_length=MAX_CUE_CHARS, description=(
            "What you are looking for, in a few words or a question. Written as the user would ask it: "
            "'I'/'my' mean the user and 'you'/'your' the assistant (a first-person cue ranks the user's "
            "turns a little higher, a second-person one the assistant's)."
        ),
    )
    session_id: OptionalText = Field(
        None, max_length=MAX_ID_CHARS, description="The current conversation's id, recorded as who recalled."
    )
    cue_embedding: Vector = Field(
        None, description="Rarely needed: a precomputed 384-d embedding of the cue."
    )
    k: int = Field(10, ge=1, le=MAX_K, description="Most memories to return.")
    budget_tokens: int = Field(1500, ge=1, le=MAX_BUDGET_TOKENS, description=(
        "Token budget for the returned texts (hits and anti_hits); budget_used never exceeds it. "
        "Hits that fit are returned whole, in score order; one too long for what is left comes "
        "back as an excerpt (its `excerpt` gives the character offsets and full length; "
        "memory_get returns the whole). The best hit is always returned, excerpted if need be."
    ))
    tier: Tier | None = Field(None, description="Only memories of this tier.")
    tags: Tags = Field(None, max_length=MAX_TAGS, description="Only memories carrying all these tags.")
    since: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or after this ISO-8601 time."
    )
    until: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or before this ISO-8601 time."
    )
    include_superseded: bool = Field(False, description=(
        "Also return memories a newer one replaced, as hits; by default they come back "
        "only as anti_hits."
    ))
    min_score: float | None = Field(None, ge=-1.0, le=1.0, description=(
        "Relevance floor: the least semantic similarity (cosine of cue and memory, -1..1, "
        "shown in each hit's reason) a hit must have, unless some memory clears it and the "
        "cue's words match this one strongly. Default: the floor calibrated for the "
        "store's embedding model (0.2 for the default MiniLM), from questions whose answer is "
        "stored against questions whose answer is not. When nothing clears it, there are no "
        "hits and `note` says so; -1 turns the floor off."
    ))
    project: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=(
        "The current project (git root or directory): its memories rank a little higher. "
        "A preference, not a filter: memories of other projects still come back."
    ))
    now: Time = Field(None, max_length=MAX_TIME_CHARS, description=(
        "When the cue is asked (ISO-8601); default: the current time. A time the cue names "
        "('last week', 'in May', '3 days ago', 'on 7 July, 2023') is read against it, and "
        "memories said then rank higher (a preference, not a filter: since/until filter)."
    ))

    _window = model_validator(mode="after")(ordered_window)


class GetParams(Params):
    """memory_get: one memory in full."""

    id: RecordId = Field(
        max_length=MAX_RECORD_ID_CHARS, description="A record_id from memory_recall or memory_capture."
    )


class SessionStartParams(Params):
    """session_start: the memory pack a new conversation starts with."""

    session_id: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=(
        "The new conversation's id; its own memories are left out."
    ))
    budget_tokens: int = Field(
        SESSION_PACK_TOKENS, ge=1, le=MAX_BUDGET_TOKENS, description=(
            "Token budget for the pack; budget_used never exceeds it. Pinned memories come first, "
            "as excerpts when they do not fit whole."
        )
    )
    project: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=(
        "The new conversation's project (git root or directory): the pack then gives its "
        "memories their own share, after pinned ones and before recently used ones from anywhere."
    ))


class ExportParams(Params):
    """memory_export: one page of memories, in insertion order."""

    offset: int = Field(0, ge=0, le=MAX_OFFSET, description=(
        "Where the page starts: 0, then the previous page's next_offset (a position in insertion "
        "order, so memories forgotten between pages shift nothing)."
    ))
    limit: int = Field(200, ge=1, le=MAX_PAGE, description="Most memories in the page.")
    include_hidden: bool = Field(False, description=(
        "Also export forgotten (hidden, still restorable) memories, with their undo deadline."
    ))
    max_bytes: int = Field(EXPORT_PAGE_BYTES, ge=1, le=MAX_EXPORT_PAGE_BYTES, description=(
        "Most bytes of JSON in the page: it stops before the record that would pass them "
        "(a page always holds at least one record)."
    ))


def _json_data(entries: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
    try:
        # allow_nan=False: NaN/Infinity would come back out of export as invalid JSON.
        json.dumps(entries, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise PydanticCustomError(INVALID, "must be JSON data: {problem}", {"problem": str(exc)}) from None
    return entries


class ImportRecord(CaptureParams):
    """One record of memory_import: a capture plus what export wrote beside it.

    An inserted record keeps the exported ``id`` (``transfer.imported_id``;
    an id that is not a UUID is mapped to one), ``created_at``,
    ``updated_at`` and ``reinforcements``, so an export imported into an
    empty store is the same store, and a ``superseded_by`` link finds its
    record in whichever import call brings it.
    """

    id: Any = Field(None, description="The exported id, kept (an id that is not a UUID is mapped to one).")
    created_at: Time = Field(None, max_length=MAX_TIME_CHARS, description="When it was first stored; default now.")
    updated_at: Time = Field(None, max_length=MAX_TIME_CHARS, description="When it last changed; default created_at.")
    reinforcements: int = Field(0, ge=0, le=2**62, description="How many times an identical capture was folded into it.")
    provenance: Annotated[list[dict[str, Any]] | None, AfterValidator(_json_data)] = Field(
        None, max_length=MAX_PROVENANCE_PER_RECORD,
        description="The record's provenance entries, restored when the record is inserted.",
    )
    # ---- lifecycle carried by an export (issue 9) ----
    supersedes: Annotated[Any, AfterValidator(_not_on_import)] = Field(None, description=(
        "Not taken on import: a replaced record carries superseded_by instead."
    ))
    state: Any = Field(None, description="Ignored: derived from hidden_at and superseded_by.")
    valid_from: Any = Field(None, description="Ignored: the record's ts.")
    valid_to: Time = Field(None, max_length=MAX_TIME_CHARS, description="When a newer memory replaced it.")
    superseded_by: Annotated[OptionalText, AfterValidator(_optional_record_id)] = Field(
        None, max_length=MAX_RECORD_ID_CHARS, description=(
        "The exported id of the memory that replaced it (resolved to the record imported from that id)."
    ))
    hidden_at: Time = Field(None, max_length=MAX_TIME_CHARS, description="When it was forgotten (hidden).")
    undo_until: Time = Field(None, max_length=MAX_TIME_CHARS, description=(
        "Until when a hidden memory can be restored; purged automatically afterwards."
    ))
    history: Annotated[list[dict[str, Any]] | None, AfterValidator(_json_data)] = Field(
        None, max_length=MAX_PROVENANCE_PER_RECORD, description="The record's lifecycle history, kept as exported.",
    )

    @model_validator(mode="after")
    def _lifecycle(self) -> ImportRecord:
        if (self.hidden_at is None) != (self.undo_until is None):
            raise PydanticCustomError(INVALID, "hidden_at and undo_until come together (a hidden memory has both)")
        return self

    def request(self) -> CaptureRequest:
        """A capture that restores the exported lifecycle: hidden state,
        supersede link, history, and an id derived from the exported one."""
        from dataclasses import replace

        from iai_mcp.core.capture import Restored
        from iai_mcp.core.transfer import imported_id

        exported = self.id if isinstance(self.id, str) else None
        return replace(super().request(), restored=Restored(
            record_id=imported_id(exported) if exported else None,
            history=tuple(self.history or ()),
            hidden_at=parse_time(self.hidden_at), undo_until=parse_time(self.undo_until),
            valid_to=parse_time(self.valid_to) if self.superseded_by else None,
            superseded_by=imported_id(self.superseded_by) if self.superseded_by else None,
            exported_id=exported,
            created_at=parse_time(self.created_at), updated_at=parse_time(self.updated_at),
            reinforcements=self.reinforcements,
        ))


class ImportParams(Params):
    """memory_import: a batch of exported records, every one checked first."""

    # Each record is checked as an ImportRecord on its own (``parse_records``),
    # so an error names its index and None means "not given" inside it too.
    records: list[Any] = Field(max_length=MAX_PAGE, description=(
        f"Records as memory_export writes them, at most {MAX_PAGE}; only 'text' is required."
    ))
    dry_run: bool = Field(False, description="Check every record, write nothing.")

    def parse_records(self, method: str) -> list[ImportRecord]:
        return [parse_model(ImportRecord, f"{method}: records[{i}]", value)
                for i, value in enumerate(self.records)]


class NoParams(Params):
    """A method that takes no parameters."""


# ------------------------------------------- forgetting and correcting (F)

class ForgetParams(Params):
    """memory_forget: stop recalling memories (hide, restorable), or erase them (purge)."""

    ids: list[RecordId] | None = Field(None, max_length=MAX_PAGE, description=(
        "Record ids to forget (from memory_recall, memory_get or memory_list)."
    ))
    session_id: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=(
        "Only memories captured in this conversation."
    ))
    tags: Tags = Field(None, max_length=MAX_TAGS, description="Only memories carrying all these tags.")
    since: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or after this ISO-8601 time."
    )
    until: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or before this ISO-8601 time."
    )
    mode: Literal["hide", "purge"] = Field("hide", description=(
        "hide: never recalled again, restorable with memory_restore until undo_until, then purged "
        "automatically; purge: erased from disk now, irreversibly."
    ))
    dry_run: bool = Field(False, description="Say what would be forgotten; change nothing.")

    _window = model_validator(mode="after")(ordered_window)


class RestoreParams(Params):
    """memory_restore: bring back memories forgotten in hide mode."""

    ids: list[RecordId] = Field(max_length=MAX_PAGE, description="Record ids that memory_forget hid.")


class UpdateParams(Params):
    """memory_update: pin, unpin, re-tag or re-tier one memory (never its text)."""

    id: RecordId = Field(max_length=MAX_RECORD_ID_CHARS, description="The record to change.")
    pinned: bool | None = Field(None, description=(
        "true: always include it when a conversation starts; false: stop doing so."
    ))
    tags_add: Tags = Field(None, max_length=MAX_TAGS, description="Tags to add.")
    tags_remove: Tags = Field(None, max_length=MAX_TAGS, description="Tags to remove.")
    tier: Tier | None = Field(None, description="Move it to this tier.")


# ---- browsing (issue 9) ------------------------------------------------------


class ListParams(Params):
    """memory_list: memories by state and metadata, a page at a time."""

    state: Literal["active", "hidden", "superseded", "all"] = Field("active", description=(
        "active: recalled and packed; hidden: forgotten, restorable until undo_until; "
        "superseded: replaced by a newer memory; all: every one of these."
    ))
    tier: Tier | None = Field(None, description="Only memories of this tier.")
    tags: Tags = Field(None, max_length=MAX_TAGS, description="Only memories carrying all these tags.")
    tags_any: Tags = Field(None, max_length=MAX_TAGS, description="Only memories carrying at least one of these tags.")
    session_id: OptionalText = Field(None, max_length=MAX_ID_CHARS, description="Only memories of this conversation.")
    project: OptionalText = Field(None, max_length=MAX_ID_CHARS, description=(
        "Only memories of this project (the git root or directory they were said in)."
    ))
    since: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or after this ISO-8601 time."
    )
    until: Time = Field(
        None, max_length=MAX_TIME_CHARS, description="Only memories said at or before this ISO-8601 time."
    )
    pinned: bool | None = Field(None, description="Only pinned (true) or only unpinned (false) memories.")
    order: Literal["newest", "oldest", "most_recalled"] = Field("newest", description=(
        "newest or oldest by when said; most_recalled by how often recalled."
    ))
    limit: int = Field(50, ge=1, le=MAX_LIST, description="Most memories in the page.")
    cursor: OptionalText = Field(None, max_length=MAX_CURSOR_CHARS, description=(
        "next_cursor of the previous page, to continue where it stopped."
    ))

    _window = model_validator(mode="after")(ordered_window)


# ---- the viewer's Overview page (issue 12) ------------------------------------

#: Most days memory_overview charts (a year and a leap day).
MAX_OVERVIEW_DAYS = 366
#: Most memories in memory_overview's most_recalled.
MAX_OVERVIEW_TOP = 100


class OverviewParams(Params):
    """memory_overview: counts, activity per day and the most recalled memories."""

    days: int = Field(30, ge=1, le=MAX_OVERVIEW_DAYS, description="Days of captures and recalls to count, ending today (UTC).")
    top: int = Field(10, ge=1, le=MAX_OVERVIEW_TOP, description="Most recalled memories to return.")
    exclude_session: str | None = Field(
        None, max_length=256, description="Recalls made in this session are not counted (the viewer's own searches)."
    )
# ---- hosts (issue 11) ----------------------------------------------------------


class KeyedDigestParams(Params):
    """keyed_digest: names for values, keyed by the store's key, so an
    adapter can refer to something (a transcript path) without keeping it in clear."""

    purpose: Literal["hook-cursor"] = Field(description="What the digests name; each purpose has its own subkey.")
    values: list[Annotated[str, Field(max_length=4096)]] = Field(
        min_length=1, max_length=MAX_PAGE, description="The values to digest, in order."
    )


@dataclass(frozen=True)
class Method:
    """One dispatch method: its parameters and how adapters may use it."""

    params: type[Params]
    #: Offered to assistants as an MCP tool of the same name.
    tool: bool = False
    #: Safe to send again when the connection broke after sending (it may have run).
    resendable: bool = False
    #: MCP tool annotations (hints to the host, not guarantees): changes nothing
    #: the user would call a change (recall provenance aside); may destroy
    #: data; calling it twice with the same arguments has no further effect.
    read_only: bool = False
    destructive: bool = False
    idempotent: bool = False


#: Every dispatch method. Resendable: memory_get only reads; memory_recall
#: reads and appends provenance, and the resend carries the first send's
#: request key, from which its entry ids derive: the run a killed daemon
#: journaled (replayed by the next one) and the rerun are the same entries,
#: written once (the log ignores an entry id it holds). Refusing to resend
#: would have been less code but turns a daemon crash into a failed recall;
#: the key reuses the dedup the journal replay already relies on. memory_capture is sent with a ``ts``, so a capture that already
#: ran comes back "skipped" with the same record id (one caveat: a capture
#: that reinforced an older identical text would reinforce it a second time).
#: A method added later is not resent until someone has thought about it.
METHODS: dict[str, Method] = {
    "memory_capture": Method(CaptureParams, tool=True, resendable=True),
    "memory_recall": Method(RecallParams, tool=True, resendable=True, read_only=True),
    "memory_get": Method(GetParams, tool=True, resendable=True, read_only=True, idempotent=True),
    "session_start": Method(SessionStartParams, tool=True, read_only=True),
    "memory_stats": Method(NoParams, read_only=True),  # read_only: served on a read-only store
    "memory_export": Method(ExportParams, read_only=True),
    "memory_import": Method(ImportParams),
    "memory_compact": Method(NoParams),
    "warmup": Method(NoParams),
    # Forgetting and correcting (F). None is resent: forget and restore are
    # idempotent in effect but answer differently the second time.
    "memory_forget": Method(ForgetParams, tool=True, destructive=True),
    "memory_restore": Method(RestoreParams, tool=True, idempotent=True),
    "memory_update": Method(UpdateParams, tool=True, idempotent=True),
    # ---- correcting and browsing (issue 9) ----
    "memory_list": Method(ListParams, tool=True, resendable=True, read_only=True, idempotent=True),
    "memory_tags": Method(NoParams, tool=True, resendable=True, read_only=True, idempotent=True),
    # ---- the viewer's Overview page (issue 12) ----
    # Only reads; not resent (a person reloads the page), so the resendable set stays as pinned.
    "memory_overview": Method(OverviewParams, read_only=True, idempotent=True),
    # ---- hosts (issue 11): hook cursors name transcripts by a keyed digest ----
    "keyed_digest": Method(KeyedDigestParams, resendable=True, read_only=True, idempotent=True),
    # ---- damage (issue 13): doctor reads everything once ----
    "memory_verify": Method(NoParams, read_only=True),
}


def method(name: str) -> Method:
    """The contract of ``name``; ``UnknownMethod`` if there is none."""
    found = METHODS.get(name) if isinstance(name, str) else None
    if found is None:
        raise UnknownMethod(f"unknown method {name!r}; known: {sorted(METHODS)}")
    return found


def parse(name: str, params: Any) -> Params:
    """``params`` checked against method ``name``'s contract (see ``params.parse``)."""
    return parse_model(method(name).params, name, params)


def resendable(name: str) -> bool:
    found = METHODS.get(name)
    return found is not None and found.resendable
