"""repair: fix what can be fixed in a store without losing data, and say so.

Meant for ``iai-mcp doctor --repair``: show ``repair(root, apply=False)``
(what would be done, nothing touched), ask, then run ``repair(root,
apply=True)``. Each returned line is one action or one reason an action was
skipped. The steps, in order:

1. A key file other users can read is made 0600, and every directory and
   file under the store and the spill directory other users can read or
   enter (an earlier release made them 0755/0644) is made 0700/0600.
2. Stray temp files (a write killed between writing and renaming; every
   atomic write names its temp file through ``iai_mcp.fs``, so
   ``fs.stray_temps`` finds them all) are moved to
   ``<root>/recovered/<time>/``, never deleted: one may be the only copy of
   something.
3. Journal segments a dead process left, and this store's spill files, are
   replayed into the provenance log (the queue's own start and drain; what
   cannot be read is quarantined there, not deleted).
4. Damage (``core.salvage_plan``): a records table that is behind what the
   store last committed, or has unreadable data files, is salvaged: what can
   be read is copied into a fresh store with the same key, and the damaged
   store is moved aside to ``<root>.damaged-<time>`` (never deleted). A
   damaged provenance log alone is rebuilt from what can be read, the
   damaged file kept in ``recovered/<time>/``.
5. The records table is compacted (fragments folded, old versions pruned).

Steps 3 to 5 open the store, so they need its key and the store must not be
open in another process; otherwise they are skipped with a line saying why.
While a live process (the daemon) has the store open, its journal is its
own, being written, and is not counted as work.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Literal

from iai_mcp import config, fs
from iai_mcp.core.damage import Diagnosis, diagnose, diagnosis_of, fix_damage
from iai_mcp.errors import StoreError
from iai_mcp.fs_modes import describe, loose_in_store_and_spill, make_owner_only
from iai_mcp.provenance_queue import journal_state, spill_state
from iai_mcp.store import JOURNAL_DIR, META_FILE, MemoryStore, fix_key_file_mode
from iai_mcp.store.crypto import KEY_FILE_NAME
from iai_mcp.store.meta import in_use
from iai_mcp.store.records_table import version_count

DRAIN_TIMEOUT_S = 120.0


def _stray_temp_files(root: Path, store_id: str | None, spill_dir: Path) -> list[Path]:
    found = [*fs.stray_temps(root), *fs.stray_temps(root / JOURNAL_DIR)]
    if store_id:  # the spill directory is shared: only this store's temps are ours to move
        found += [path for path in fs.stray_temps(spill_dir) if store_id in path.name]
    return [path for path in found if path.is_file()]


def _narrow_modes(root: Path, spill: Path, apply: bool, skip: Path | None) -> list[str]:
    """Step 1b: what an earlier release left 0755/0644 in the store and the
    spill directory becomes 0700/0600 (``skip``: the key file, said above)."""
    loose = [(path, mode) for path, mode in loose_in_store_and_spill(root, spill) if path != skip]
    if not loose:
        return []
    if not apply:
        return [f"would make {len(loose)} path(s) owner-only (0700 directories, 0600 files): {describe(loose)}"]
    problems = make_owner_only(loose)
    made = len(loose) - len(problems)
    return [f"made {made} path(s) owner-only (0700 directories, 0600 files): {describe(loose)}",
            *(f"could not narrow the mode of {problem}" for problem in problems)]


def _store_id(root: Path) -> str | None:
    try:
        return str(json.loads((root / META_FILE).read_text("utf-8"))["store_id"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_damage(
    store_root: str | os.PathLike[str],
    *,
    salvage_to: str | os.PathLike[str] | None = None,
    verified: dict[str, Any] | None = None,
) -> Diagnosis | None:
    """What ``repair`` would fix in the store at ``store_root``: a salvage into
    ``salvage_to`` when asked; else the damage ``verified`` (a live owner's
    ``memory_verify``) names; else, unless a live process has the store open
    (then nothing here can look), what a read-only open finds."""
    root = Path(store_root).expanduser()
    if salvage_to is not None:
        return Diagnosis("salvage", f"asked to salvage into {salvage_to}")
    if verified is not None:
        return diagnosis_of(verified)
    if not (root / META_FILE).is_file() or in_use(root) is not None:
        return None
    return diagnose(root)


def repair(
    store_root: str | os.PathLike[str],
    *,
    apply: bool,
    spill_dir: str | os.PathLike[str] | None = None,
    salvage_to: str | os.PathLike[str] | None = None,
    diagnosis: Diagnosis | None | Literal["find"] = "find",
) -> list[str]:
    """Repair the store at ``store_root`` (with ``apply``) or say what repairing
    would do (without). ``salvage_to``: copy what can be read into a new store
    there, whatever the damage, and leave this one as it is. ``diagnosis``:
    the damage to fix (``find_damage``), so the plan a user approved is the
    plan that runs; by default it is found now. Returns one line per action."""
    root = Path(store_root).expanduser()
    spill = Path(spill_dir) if spill_dir is not None else config.overflow_dir()
    lines: list[str] = []
    if not (root / META_FILE).is_file():
        return [f"{root} is not an iai-mcp store (no {META_FILE}); nothing to repair"]
    store_id = _store_id(root)

    problem = fix_key_file_mode(root, apply=apply)
    if problem:
        lines.append(f"{'made' if apply else 'would make'} the key file mode 0600 ({problem.split(';')[0]})")
    lines += _narrow_modes(root, spill, apply, skip=root / KEY_FILE_NAME if problem else None)

    strays = _stray_temp_files(root, store_id, spill)
    if strays:
        target = root / "recovered" / time.strftime("%Y%m%dT%H%M%S")
        for path in strays:
            if apply:
                fs.make_private_dir(target)
                os.replace(path, target / path.name)
            lines.append(f"{'moved' if apply else 'would move'} stray temp file {path} to {target}/")

    if store_id is None:
        lines.append(f"{root / META_FILE} is unreadable: restore it from backup before anything else")
        return lines
    # A live owner (the daemon): its journal is being written, not left over,
    # and the store cannot be opened here to look for damage (doctor asks it).
    live = in_use(root) is not None
    if isinstance(diagnosis, str):  # "find"
        diagnosis = find_damage(root, salvage_to=salvage_to)
    if not apply:
        return lines + _plan(root, spill, store_id, diagnosis, salvage_to, live) or ["nothing to repair"]
    if live:
        return lines + _replay_and_compact(root, spill, 0, 0)  # says why it is skipped
    fixed, usable = fix_damage(root, diagnosis, Path(salvage_to) if salvage_to is not None else None)
    lines += fixed
    if not usable:
        return lines
    journal = journal_state(root / JOURNAL_DIR, store_id)
    spilled = spill_state(store_id, spill)
    return lines + _replay_and_compact(root, spill, journal["segments"], spilled["pending"]) or [
        "nothing to repair"
    ]


def _plan(root: Path, spill: Path, store_id: str, diagnosis: Diagnosis | None, salvage_to: object,
          live: bool) -> list[str]:
    lines = [] if diagnosis is None else [diagnosis.plan(root, salvage_to)]
    if diagnosis is not None and not diagnosis.usable_after:
        return lines
    journal = journal_state(root / JOURNAL_DIR, store_id)
    spilled = spill_state(store_id, spill)
    if journal["segments"] and not live:
        lines.append(f"would replay {journal['segments']} journal segment(s) in {journal['dir']}")
    if spilled["pending"]:
        lines.append(f"would replay {spilled['pending']} spill file(s) in {spilled['dir']}")
    if diagnosis is not None and diagnosis.kind in ("behind", "records"):
        return lines  # the salvaged store is compacted as it is written
    try:
        versions = version_count(root)
    except StoreError as exc:
        lines.append(f"cannot compact: {exc}; nothing else here can fix that, restore the store "
                     "directory from a backup")
        return lines
    if versions > 1:
        lines.append(f"would compact the records table ({versions} versions)")
    return lines


def _replay_and_compact(root: Path, spill: Path, segments: int, pending: int) -> list[str]:
    try:
        store = MemoryStore(path=root)
    except StoreError as exc:
        return [f"skipped replay and compaction: {exc}"]
    except Exception as exc:  # damage LanceDB reports in its own terms: say so, never a traceback
        return [f"skipped replay and compaction: the store cannot be opened ({type(exc).__name__}: "
                f"{exc}); restore the store directory from a backup"]
    lines: list[str] = []
    try:
        before = store.stats()["provenance_entries"]
        queue = store.enable_provenance_queue(spill_dir=spill)  # start replays the journal
        if not queue.flush(timeout=DRAIN_TIMEOUT_S):
            lines.append(
                f"replay did not finish within {DRAIN_TIMEOUT_S:.0f} s; what is left stays on disk "
                "and is replayed at the next start"
            )
        store.disable_provenance_queue()
        added = store.stats()["provenance_entries"] - before
        if segments or pending or added:
            lines.append(
                f"replayed {segments} journal segment(s) and {pending} spill file(s): "
                f"{added} provenance entries were missing from the log and are now in it"
            )
        result = store.compact()
        if result["versions_before"] > 1 or result["fragments_before"] > 1:
            lines.append(
                f"compacted the records table: {result['versions_before']} -> "
                f"{result['versions_after']} versions, {result['fragments_before']} -> "
                f"{result['fragments_after']} fragments"
            )
    except Exception as exc:  # as above: a damaged table fails here in LanceDB's own terms
        lines.append(f"skipped replay and compaction: the store cannot be used ({type(exc).__name__}: "
                     f"{exc}); restore the store directory from a backup")
    finally:
        store.close()
    return lines
