"""Damage, as ``doctor --repair`` finds and fixes it (see ``store.salvage``).

``diagnose`` opens the store as the server would and reads everything once
(``MemoryStore.verify``); ``fix_damage`` then salvages a store whose records
table is behind or partly unreadable into a fresh one (the damaged store
moved aside, never deleted), or rebuilds a damaged provenance log.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from iai_mcp.errors import StoreBehind, StoreError
from iai_mcp.log import logger
from iai_mcp.store import MemoryStore
from iai_mcp.store.salvage import move_aside, rebuild_log, salvage

_log = logger("iai_mcp.repair")

Kind = Literal["behind", "records", "log", "cannot_open", "salvage"]


@dataclass(frozen=True)
class Diagnosis:
    kind: Kind
    detail: str

    @property
    def usable_after(self) -> bool:
        """Whether the store at its root can be replayed and compacted once fixed."""
        return self.kind not in ("cannot_open", "salvage")

    def plan(self, root: Path, salvage_to: object) -> str:
        if self.kind in ("behind", "records"):
            return (f"would salvage what can be read into a fresh store with the same key and move this one "
                    f"to {root.name}.damaged-<time> beside it (never deleted): {self.detail}")
        if self.kind == "log":
            return ("would rebuild the provenance log from what can be read, keeping the damaged file in "
                    f"{root / 'recovered'}/: {self.detail}")
        if self.kind == "salvage":
            return f"would salvage what can be read into {salvage_to}, leaving {root} as it is"
        return f"cannot open the store: {self.detail}; nothing here can fix that, restore it from a backup"


def diagnose(root: Path) -> Diagnosis | None:
    """What is damaged in the store at ``root`` (not open elsewhere), or None.

    The store is opened read-only: a writable open compacts a fragmented
    table, rewrites meta.json and finishes a pending purge, and a plan
    (``doctor --repair --dry-run``) must change nothing."""
    try:
        store = MemoryStore(path=root, read_only=True)
    except StoreBehind as exc:
        return Diagnosis("behind", str(exc))
    except StoreError as exc:  # no key, wrong key, unreadable meta: salvage cannot help
        return Diagnosis("cannot_open", str(exc))
    except Exception as exc:  # damage LanceDB or SQLite reports in its own terms
        return Diagnosis("cannot_open", f"{type(exc).__name__}: {exc}")
    try:
        found = store.verify()
    finally:
        store.close()
    return diagnosis_of(found)


def diagnosis_of(found: dict[str, Any]) -> Diagnosis | None:
    """The damage ``MemoryStore.verify`` (``memory_verify``) found, or None."""
    records, provenance = found["records"], found["provenance"]
    if records["damaged"]:
        return Diagnosis("records", f"{records['damaged']} record(s) are in data files that cannot be read "
                                    f"({records['errors'][0]})")
    if records["history_problem"]:
        return Diagnosis("records", f"the records table's version history cannot be read "
                                    f"({records['history_problem']}); its current version can")
    if provenance["problem"]:
        return Diagnosis("log", provenance["problem"])
    if provenance["damaged"]:
        return Diagnosis("log", f"{provenance['damaged']} provenance entr"
                                f"{'y' if provenance['damaged'] == 1 else 'ies'} cannot be read "
                                f"({provenance['errors'][0]})")
    return None


def fix_damage(root: Path, diagnosis: Diagnosis | None, salvage_to: Path | None) -> tuple[list[str], bool]:
    """Fix what ``diagnosis`` found; ``(lines, whether the store at root can
    now be replayed and compacted)``."""
    if diagnosis is None:
        return [], True
    if diagnosis.kind == "cannot_open":
        return [f"skipped replay and compaction: the store cannot be opened ({diagnosis.detail}); "
                "restore the store directory from a backup"], False
    if diagnosis.kind == "log":
        aside, copied, lost = rebuild_log(root)
        _log.warning("provenance_log_rebuilt", copied=copied, lost=lost)
        return [f"rebuilt the provenance log: {copied} entr{'y' if copied == 1 else 'ies'} copied, {lost} "
                f"could not be read; the damaged file is kept in {aside}/"], True
    if diagnosis.kind == "salvage":
        assert salvage_to is not None
        report = salvage(root, salvage_to)
        return [f"salvaged into {salvage_to}: " + "; ".join(report.lines()) + f"; {root} was not changed"], False
    fresh = root.with_name(f"{root.name}.salvage-{time.strftime('%Y%m%dT%H%M%S')}")
    report = salvage(root, fresh)
    aside = move_aside(root)
    os.rename(fresh, root)
    _log.warning("store_salvaged", records=report.records, records_damaged=report.records_damaged,
                 provenance=report.provenance, provenance_damaged=report.provenance_damaged)
    return [f"salvaged the store into a fresh one: {'; '.join(report.lines())}",
            f"moved the damaged store to {aside} (never deleted: remove it yourself once the salvaged "
            "store serves what you expect)"], True
