"""What an open store's rows cost in memory: RSS after open, and the rows'
objects counted field by field.

    python -m bench.row_footprint [--store PATH]

Opens the store read-only (nothing on disk changes; the default is the
cached 100k-record store ``bench.memory`` builds, ``bench.corpus.build_store``), reads
``VmRSS`` before and after the open (and the peak, ``VmHWM``), and sums ``sys.getsizeof`` over every
object the rows hold, each object counted once however many rows share it:
a field's figure is what its values add to the heap. The vectors' share of
the RSS (the int8 codes and the per-row arrays, ``Slots.arrays``, headroom
included) is printed apart; their exact copies sit in a nameless file, not in
the RSS (``store.sealed_vectors``). What the open added to the RSS is also
split by kind (``bench.rss_kinds``): library pages it touched (mostly
``_lancedb``'s code), Python's object arenas (the rows), glibc's heap (with
what of it is in use) and other anonymous memory (the vectors' arrays).
``--arenas 2`` caps glibc's malloc arenas as ``daemon run`` does
(``heap.limit_malloc_arenas``); by default the process keeps glibc's own
limit, as the figures cited in ``bench/README.md`` were taken. Memory is not
load-sensitive, so unlike timings these figures hold on a busy machine.
"""
from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from uuid import UUID

from bench.common import DEFAULT_CACHE_DIR, clock_ms, isolate_key_material
from bench.memory import proc_status
from bench.rss_kinds import malloc_in_use, resident_kinds

DEFAULT_STORE = DEFAULT_CACHE_DIR / "stores" / "synthetic-v1-s20260501-p10000-100000"


def _deep_size(value: Any, seen: set[int]) -> int:
    """Bytes of ``value`` and what it holds, skipping objects in ``seen``."""
    if id(value) in seen:
        return 0
    seen.add(id(value))
    size = sys.getsizeof(value)
    if isinstance(value, (list, tuple)):
        size += sum(_deep_size(item, seen) for item in value)
    elif isinstance(value, dict):
        size += sum(_deep_size(k, seen) + _deep_size(v, seen) for k, v in value.items())
    elif isinstance(value, UUID):
        size += _deep_size(value.int, seen)
    return size


def row_bytes(rows: Iterable[Any]) -> dict[str, int]:
    """``{field: bytes}`` of the rows' values, plus ``"row objects"``; an
    object shared by several rows (or fields) is counted once."""
    rows = list(rows)
    seen: set[int] = set()
    sizes = {"row objects": sum(sys.getsizeof(row) for row in rows)}
    for name in type(rows[0]).__dataclass_fields__ if rows else ():
        sizes[name] = sum(_deep_size(getattr(row, name), seen) for row in rows)
    return sizes


def vector_bytes(arrays: Any) -> tuple[int, int]:
    """``(codes, per-row arrays)`` bytes of a store's ``Slots.arrays``."""
    return arrays.codes.nbytes, sum(values.nbytes for values in arrays[1:])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.row_footprint", description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE, help="store to open (read-only)")
    parser.add_argument("--arenas", type=int, default=None,
                        help="cap glibc's malloc arenas at this many, as the daemon does (2)")
    args = parser.parse_args(argv)
    isolate_key_material()
    if args.arenas is not None:
        from iai_mcp.heap import limit_malloc_arenas

        limit_malloc_arenas(args.arenas)
    import lancedb  # noqa: F401  (imported before the baseline: the open's cost, not the import's)

    from iai_mcp.embed import default_embedder
    from iai_mcp.store import MemoryStore

    gc.collect()
    kinds_before, malloc_before = resident_kinds(), malloc_in_use()
    before = proc_status()["VmRSS"] / 1024
    start = clock_ms()
    store = MemoryStore(path=args.store, embedder=default_embedder(), read_only=True)
    open_s = (clock_ms() - start) / 1000
    gc.collect()
    status = proc_status()
    kinds_after, malloc_after = resident_kinds(), malloc_in_use()
    after, peak = status["VmRSS"] / 1024, status["VmHWM"] / 1024
    slots = store._slots
    codes, per_row = vector_bytes(slots.arrays)
    vectors = (codes + per_row) / 2**20
    print(f"{len(store)} records, open {open_s:.1f} s")
    print(f"VmRSS {before:.0f} MB before open, {after:.0f} MB after: +{after - before:.0f} MB "
          f"(vectors {vectors:.0f} MB: int8 codes {codes / 2**20:.1f} MB, per-row arrays "
          f"{per_row / 2**20:.1f} MB for {len(slots.arrays.codes)} slots; the rest "
          f"+{after - before - vectors:.0f} MB); peak VmHWM {peak:.0f} MB")
    if kinds_before and kinds_after:
        added = {kind: (kinds_after[kind] - kinds_before[kind]) / 2**20 for kind in kinds_after}
        in_use = "" if malloc_before is None or malloc_after is None else \
            f" ({(malloc_after - malloc_before) / 2**20:+.0f} MB in use)"
        print("  the open's RSS by kind: " + ", ".join(
            f"{kind} {mb:+.0f} MB" + (in_use if kind == "malloc heap" else "") for kind, mb in added.items()))
    sizes = row_bytes(slots.rows)
    seen: set[int] = set()
    sizes["(seqs)"] = _deep_size(slots.seqs, seen)
    sizes["(index_of)"] = _deep_size(slots.index_of, seen | {id(row.id) for row in slots.rows})
    sizes["(by_text)"] = _deep_size(slots.by_text, seen | {id(row.literal_surface) for row in slots.rows})
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1]):
        if size >= 2**19:
            print(f"  {name:18s} {size / 2**20:7.1f} MB")
    print(f"  {'total':18s} {sum(sizes.values()) / 2**20:7.1f} MB "
          f"({sum(sizes.values()) / max(len(store), 1):.0f} B a record)")
    store.close()


if __name__ == "__main__":
    main()
