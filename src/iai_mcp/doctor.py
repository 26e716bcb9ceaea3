"""``iai-mcp doctor``: one line per check, ``PASS|WARN|FAIL name: detail``.

Checks go through the backend like every other command, so they report what
the server would see. A path with no store is one FAIL and nothing is made
(a mistyped ``--store`` used to get a new store, key and daemon, then all
PASS); only ``create`` (the default store on a first run, or ``--init``)
makes one.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from iai_mcp import config
from iai_mcp.errors import IaiError

Status = Literal["PASS", "WARN", "FAIL"]

#: More LanceDB versions than this means compaction is overdue.
VERSIONS_WARN = 100


@dataclass(frozen=True)
class Check:
    status: Status
    name: str
    detail: str


def _key_check(stats: dict[str, Any]) -> Check:
    source = stats["key_source"]
    if source == "file":
        problem = stats["key_file_problem"]
        if problem:
            return Check("FAIL", "key", problem)
        return Check("PASS", "key", f"key file {Path(stats['path']) / 'key'} (mode 0600)")
    if source == "keyring":
        return Check("PASS", "key", "in the OS keyring")
    if source == "passphrase":
        return Check("PASS", "key", f"derived from {config.PASSPHRASE_ENV}")
    return Check("WARN", "key", f"unknown key source {source!r}")


def _store_checks(backend: Any) -> list[Check]:
    stats = backend.call("memory_stats", {})
    checks = [Check("PASS", "store", f"{stats['path']} opens: {stats['records']} memories, "
                                      f"{stats['provenance_entries']} provenance entries, "
                                      f"{stats['disk_bytes']:,} bytes")]
    if stats["unreadable_records"]:
        checks.append(Check("FAIL", "records", f"{stats['unreadable_records']} records cannot be "
                                               "decrypted or parsed (left untouched on disk); "
                                               "restore the store from a backup"))
    checks += _damage_checks(backend.call("memory_verify", {}))
    checks.append(_key_check(stats))
    try:
        warm = backend.call("warmup", {})
        checks.append(Check("PASS", "embedder", f"{warm['embedder']} loaded from the installed "
                                                f"package (no network) in {warm['seconds']:.2f} s"))
    except IaiError as exc:
        checks.append(Check("FAIL", "embedder", str(exc)))
    spill = stats["spill"]
    if spill["quarantined"]:
        checks.append(Check("WARN", "spill", f"{spill['quarantined']} quarantined file(s) in "
                                             f"{spill['dir']} could not be replayed; inspect and delete them"))
    elif spill["pending"]:
        checks.append(Check("WARN", "spill", f"{spill['pending']} provenance batch(es) pending in "
                                             f"{spill['dir']}; replayed while the server runs"))
    else:
        checks.append(Check("PASS", "spill", f"nothing pending in {spill['dir']}"))
    journal = stats["journal"]
    if journal["quarantined"]:
        checks.append(Check("WARN", "journal", f"{journal['quarantined']} quarantined journal file(s) in "
                                               f"{journal['dir']} could not be replayed; inspect and delete them"))
    else:
        checks.append(Check("PASS", "journal", f"{journal['segments']} live segment(s) in {journal['dir']}"))
    versions = f"{stats['versions']} LanceDB versions, {stats['fragments']} fragments"
    if stats["versions"] is None:  # the damage check above says why, and what fixes it
        checks.append(Check("WARN", "versions", f"the version history cannot be read; "
                                                f"{stats['fragments']} fragments"))
    elif stats["versions"] > VERSIONS_WARN:
        checks.append(Check("WARN", "versions", f"{versions}; run: iai-mcp compact"))
    else:
        checks.append(Check("PASS", "versions", versions))
    return checks


def _damage_checks(found: dict[str, Any]) -> list[Check]:
    """What ``memory_verify`` found damaged: served around, reported here."""
    checks = []
    records, provenance = found["records"], found["provenance"]
    fix = "run: iai-mcp doctor --repair (salvages what can be read; the damaged store is moved aside)"
    if records["damaged"]:
        checks.append(Check("FAIL", "damaged", f"{records['damaged']} record(s) are in LanceDB data files that "
                                               f"cannot be read ({records['errors'][0]}); the rest is served; {fix}"))
    if records["history_problem"]:
        checks.append(Check("FAIL", "damaged", f"the records table's version history cannot be read "
                                               f"({records['history_problem']}); {fix}"))
    if provenance["problem"]:
        checks.append(Check("FAIL", "provenance", f"{provenance['problem']}; records are served without "
                                                  "provenance; run: iai-mcp doctor --repair (rebuilds the log "
                                                  "from what can be read, keeping the damaged file)"))
    elif provenance["damaged"]:
        checks.append(Check("FAIL", "provenance", f"{provenance['damaged']} of "
                                                  f"{provenance['damaged'] + provenance['entries']} provenance "
                                                  "entries cannot be read (skipped when shown or exported); run: "
                                                  "iai-mcp doctor --repair"))
    else:
        checks.append(Check("PASS", "provenance", f"{provenance['entries']} entries read and authenticated"))
    return checks


def _daemon_check(store_path: Path) -> Check:
    from iai_mcp.daemon import lifecycle as daemon

    try:
        status = daemon.status(store_path)
    except Exception as exc:  # a broken daemon must not hide the other checks
        return Check("WARN", "daemon", f"cannot query: {type(exc).__name__}: {exc}")
    if status is None:
        return Check("PASS", "daemon", "not running")
    from iai_mcp.cli.format import human  # times for people, not Unix seconds

    return Check("PASS", "daemon", "running: " + ", ".join(
        f"{k}={human(k, v)}" for k, v in status.items() if v is not None))


def _modes_check(store_path: Path) -> Check:
    """Files only the owner may read: what an earlier release made 0755/0644 stays so."""
    from iai_mcp.fs_modes import describe, loose_in_store_and_spill

    spill = config.overflow_dir()
    loose = loose_in_store_and_spill(store_path, spill)
    if loose:
        return Check("WARN", "modes", f"{len(loose)} path(s) other users can read or enter: {describe(loose)}; "
                                      "run: iai-mcp doctor --repair (makes them 0700/0600)")
    return Check("PASS", "modes", f"owner-only (0700 directories, 0600 files) in {store_path} and {spill}")


def run_checks(store: str | Path | None = None, create: bool = True) -> list[Check]:
    """Every check of the store at ``store``; with ``create=False`` a path
    holding no store is a FAIL and nothing is created (no folder, key or daemon)."""
    from iai_mcp.backend import connect, store_exists, store_path

    if not create and not store_exists(store):
        return [Check("FAIL", "store", f"no store at {store_path(store)}; check --store or IAI_MCP_STORE "
                                       "(iai-mcp init, or doctor --init, creates an empty one there)")]
    checks: list[Check] = []
    try:
        backend = connect(store)
    except IaiError as exc:
        checks.append(Check("FAIL", "store", str(exc)))
    else:
        try:
            checks += _store_checks(backend)
        except IaiError as exc:
            checks.append(Check("FAIL", "store", str(exc)))
        finally:
            backend.close()
    # After connecting: connect() starts the daemon on demand, and that daemon
    # is running (checked before, it was reported "not running").
    checks.append(_modes_check(store_path(store)))
    checks.append(_daemon_check(store_path(store)))
    return checks


def backend_checks(backend: Any, store_path: Path) -> list[Check]:
    """The checks through a backend already open (the viewer's Overview)."""
    try:
        checks = _store_checks(backend)
    except IaiError as exc:
        checks = [Check("FAIL", "store", str(exc))]
    return [*checks, _modes_check(store_path), _daemon_check(store_path)]
