"""Forgetting and correcting a memory's metadata: memory_forget,
memory_restore, memory_update, and the automatic purge of forgotten memories
whose undo window has ended (``purge_expired``, run by the daemon and by a
local-mode backend when it opens the store).

Forgetting has two modes. ``hide`` sets ``hidden_at``/``undo_until`` (and a
"hidden" history item): from that commit on the record's state code is
``hidden``, so recall, the session pack and listing stop showing it at once,
in every process, since they all go through the one process that owns the
store. It can be restored until ``undo_until`` (the store's undo window, 30
days unless set), and is purged after. ``purge`` erases at once
(``MemoryStore.purge``: no file of the store keeps its id, text, vector or
provenance).

Every call checks everything before it writes: an unknown id, no selector,
contradictory parameters are a typed error and nothing changed.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from iai_mcp.core.contract import ForgetParams, RestoreParams, UpdateParams
from iai_mcp.core.filters import filter_of
from iai_mcp.core.limits import MAX_FORGET, MAX_TAGS
from iai_mcp.core.redact import redact_label
from iai_mcp.core.results import memory_in_full
from iai_mcp.errors import InvalidInput, LimitExceeded, NotFound
from iai_mcp.log import logger
from iai_mcp.store import PURGED, STATE_CODES, MemoryStore
from iai_mcp.store.history import history_item
from iai_mcp.types import HistoryItem, MemoryRow, utcnow

_log = logger("iai_mcp.core")


def _row_of(store: MemoryStore, method: str, record_id: str) -> MemoryRow:
    row = store.row(UUID(record_id))
    if row is None:
        raise NotFound(f"{method}: no memory with id {record_id} (never stored, or purged)")
    return row


# ------------------------------------------------------------------ forget


def matching(store: MemoryStore, args: ForgetParams) -> list[MemoryRow]:
    """The memories ``args``' selectors match, all of them (AND), in capture
    order; purged slots never. InvalidInput without a selector, NotFound
    for an id that is not in the store."""
    if not (args.ids or args.session_id is not None or args.tags or args.since or args.until):
        raise InvalidInput(
            "memory_forget: give at least one selector (ids, session_id, tags, since, until); "
            "it never forgets everything"
        )
    if args.ids:
        rows = [_row_of(store, "memory_forget", rid) for rid in dict.fromkeys(args.ids)]
    else:
        rows = [row for row, code in zip(store.rows(), store.states().tolist()) if code != PURGED]
    keep = filter_of(args)
    return [row for row in rows if keep.passes(row)]


def forget(store: MemoryStore, args: ForgetParams, now: datetime | None = None) -> dict[str, Any]:
    """memory_forget (``contract.ForgetParams``) -> ``results.ForgetResult``."""
    matched = matching(store, args)
    if len(matched) > MAX_FORGET:
        raise LimitExceeded(
            f"memory_forget: the selectors match {len(matched)} memories; at most {MAX_FORGET} per "
            "call. Narrow them (since/until, tags) and call again; nothing was forgotten"
        )
    now = now or utcnow()
    if args.mode == "purge":
        targets, until = matched, None
    else:
        targets = [row for row in matched if row.hidden_at is None]  # already hidden: deadline kept
        # The deadline this call sets (or, dry, would set): none when it hides nothing.
        until = now + store.undo_window if targets else None
    if not args.dry_run and targets:
        if args.mode == "purge":
            store.purge([row.id for row in targets])
        else:
            assert until is not None
            item = history_item("hidden", now, detail=f"forgotten; restorable until {until.isoformat()}")
            store.update_many([(row.id, {"hidden_at": now, "undo_until": until}, item) for row in targets]
                              + _unlinked_by_hiding(store, {row.id for row in targets}, now))
    return {
        "mode": args.mode,
        "matched": len(matched),
        "forgotten": [str(row.id) for row in targets],
        "undo_until": until.isoformat() if until else None,
    }


def restore(store: MemoryStore, args: RestoreParams, now: datetime | None = None) -> dict[str, Any]:
    """memory_restore (``contract.RestoreParams``) -> ``results.RestoreResult``.

    A hidden memory comes back as it was; one that is not hidden is left
    as it is (and not listed). A purged or unknown id, or one whose undo
    window has ended (it is due for purging), is a NotFound naming it, and
    nothing in the call is restored."""
    now = now or utcnow()
    rows = [_row_of(store, "memory_restore", rid) for rid in dict.fromkeys(args.ids)]
    for row in rows:
        if row.undo_until is not None and row.hidden_at is not None and row.undo_until <= now:
            raise NotFound(
                f"memory_restore: memory {row.id} can no longer be restored: its undo window ended "
                f"at {row.undo_until.isoformat()} and it is being purged; nothing was restored"
            )
    targets = [row for row in rows if row.hidden_at is not None]
    if targets:
        item = history_item("restored", now, detail="restored from forgotten")
        store.update_many([(row.id, {"hidden_at": None, "undo_until": None}, item) for row in targets]
                          + _relinked_by_restoring(store, targets, now))
    return {"restored": [str(row.id) for row in targets]}


# A memory superseded by one that is then forgotten (hidden) is the current
# fact again while its replacement is hidden: recall returns it, and no hit,
# anti-hit, listing or export names the hidden replacement. Restoring the
# replacement supersedes it again; purging the replacement leaves it active
# (``store.purge`` does the same for a replacement that was never hidden).

#: The detail of the "restored" item a hidden replacement leaves; restore looks for it.
REPLACEMENT_HIDDEN = "the memory that replaced it was forgotten"


def _unlinked_by_hiding(
    store: MemoryStore, hidden: set[UUID], now: datetime
) -> list[tuple[UUID, dict[str, Any], HistoryItem]]:
    rows = store.rows()
    superseded = np.flatnonzero(store.states() == STATE_CODES["superseded"])  # only these can be linked
    return [
        (row.id, {"superseded_by": None, "valid_to": None, "updated_at": now},
         history_item("restored", now, detail={"reason": REPLACEMENT_HIDDEN, "replaced_by": str(row.superseded_by)}))
        for row in (rows[i] for i in superseded.tolist())
        if row.superseded_by in hidden
    ]


def _relinked_by_restoring(
    store: MemoryStore, restored: list[MemoryRow], now: datetime
) -> list[tuple[UUID, dict[str, Any], HistoryItem]]:
    by_id = {str(row.id): row for row in restored}
    out = []
    for code, row in zip(store.states().tolist(), store.rows()):
        last = row.history[-1] if code == STATE_CODES["active"] and row.history else None
        detail = last.get("detail") if last and last.get("action") == "restored" else None
        if isinstance(detail, dict) and detail.get("reason") == REPLACEMENT_HIDDEN:
            replacement = by_id.get(str(detail.get("replaced_by")))
            if replacement is not None:
                out.append((row.id, {"superseded_by": replacement.id, "valid_to": replacement.valid_from,
                                     "updated_at": now},
                            history_item("superseded", now, detail={
                                "superseded_by": str(replacement.id),
                                "reason": "the memory that replaced it was restored"})))
    return out


# ------------------------------------------------------------------ update


def update(store: MemoryStore, args: UpdateParams, now: datetime | None = None) -> dict[str, Any]:
    """memory_update (``contract.UpdateParams``) -> the record as memory_get
    shows it. The text is never edited (a correction is a supersede).
    A parameter that asks for what is already so changes nothing."""
    # Tags are stored redacted (core.capture), so both lists are mapped alike.
    add = list(dict.fromkeys(map(redact_label, args.tags_add or ())))
    remove = set(map(redact_label, args.tags_remove or ()))
    if args.pinned is None and args.tier is None and not add and not remove:
        raise InvalidInput("memory_update: nothing to change; give pinned, tags_add, tags_remove or tier "
                           "(iai-mcp: pin, unpin, or tag --add/--remove)")
    both = sorted(set(add) & remove)
    if both:
        raise InvalidInput(f"memory_update: tag(s) {both} are both added and removed; choose one")
    row = _row_of(store, "memory_update", args.id)
    changes: dict[str, Any] = {}
    said: list[str] = []
    if args.pinned is not None and args.pinned != row.pinned:
        changes["pinned"] = args.pinned
        said.append("pinned" if args.pinned else "unpinned")
    if args.tier is not None and args.tier != row.tier:
        changes["tier"] = args.tier
        said.append(f"tier {row.tier} -> {args.tier}")
    tags = [t for t in row.tags if t not in remove] + [t for t in add if t not in row.tags]
    if tags != row.tags:
        if len(tags) > MAX_TAGS:
            raise LimitExceeded(f"memory_update: the memory would carry {len(tags)} tags; the maximum is {MAX_TAGS}")
        changes["tags"] = tags
        said += [f"+{t}" for t in add if t not in row.tags] + [f"-{t}" for t in row.tags if t in remove]
    if changes:
        now = now or utcnow()
        store.update(row.id, history=history_item("updated", now, detail=", ".join(said)), updated_at=now, **changes)
    updated = store.row(row.id)
    assert updated is not None  # under the caller's store lock: it cannot have gone
    return memory_in_full(store, updated)


# -------------------------------------------------------------- auto-purge


def expired(store: MemoryStore, now: datetime) -> list[UUID]:
    """Hidden memories whose undo window has ended by ``now``."""
    hidden = STATE_CODES["hidden"]
    rows = store.rows()
    return [
        rows[i].id for i in (store.states() == hidden).nonzero()[0].tolist()
        if rows[i].undo_until is not None and rows[i].undo_until <= now
    ]


def purge_expired(store: MemoryStore, now: datetime | None = None) -> list[UUID]:
    """Purge every hidden memory whose undo window has ended (one purge for
    all of them: a purge rewrites the fragments that held them), and finish
    a purge an earlier failure left pending. Returns the ids purged now;
    StoreError when a purge still cannot finish (it stays pending, so the
    next run retries it). The daemon runs it at start and then hourly, a
    local-mode backend when it opens the store."""
    due = expired(store, now or utcnow())
    if due:
        store.purge(due)  # finishes a pending purge too
        _log("expired_purged", records=len(due))
    else:
        # Its records are PURGED slots, not hidden ones: nothing above is due for them.
        store.finish_pending_purge()
    return due


def _forget(store: MemoryStore, args: ForgetParams) -> dict[str, Any]:
    return forget(store, args)


def _restore(store: MemoryStore, args: RestoreParams) -> dict[str, Any]:
    return restore(store, args)


def _update(store: MemoryStore, args: UpdateParams) -> dict[str, Any]:
    return update(store, args)


LIFECYCLE_METHODS: dict[str, Callable[[MemoryStore, Any], dict[str, Any]]] = {
    "memory_forget": _forget,
    "memory_restore": _restore,
    "memory_update": _update,
}

__all__: Sequence[str] = ["LIFECYCLE_METHODS", "expired", "forget", "matching", "purge_expired", "restore", "update"]
