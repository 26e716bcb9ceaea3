"""Provenance: enqueue cost, drain rate, a slow log write vs recall, store growth.

1. Enqueue: ``ProvenanceWriteQueue.enqueue`` of 10-pair batches (what one
   recall with k=10 hands over), timed call by call while the worker drains:
   once back to back (a stress case: the worker competes for the GIL), once
   paced at one enqueue every 2 ms (a recall rate no single client exceeds).
   Baseline: the synchronous ``store.append_provenance_batch`` of the same
   batch, the cost the queue takes off the recall path.
2. Drain: batches enqueued into a stopped queue, then ``start`` and ``flush``
   timed: entries/s. Baseline: ``append_provenance_batch`` in 512-pair chunks.
3. Slow write: recall latency (dispatch, real embedder, queue on) with the
   store's ``append_provenance_batch`` wrapped in a 500 ms sleep, against the
   same recalls with the normal write, in alternating blocks. Control: the same slow write with the
   queue off, where recall pays it.
4. Growth: 10,000 recalls through dispatch (cue vectors precomputed and passed
   as ``cue_embedding``: the embedder is not what grows the store), then the
   store's LanceDB versions, fragments, files and bytes, before and after
   ``store.compact()``. "The data's own size" is defined as the sealed bytes
   the store cannot do without: every record's sealed payload and sealed
   vector, plus every provenance row's sealed entry, entry id and record id
   (and 8 bytes for its sequence number).
5. Paths: the two ways a recall's entries can reach the log, on a log that
   already holds ~10k and then ~100k entries. Synchronous: one
   ``store.append_provenance_batch`` of the recall's 10 pairs (every hit
   shares one entry, as recall gives them) on the request thread. Queued:
   ``queue.enqueue`` of the same pairs (which seals the batch once and
   appends it to the journal) with the worker writing behind it. Both paced
   at one call per ``--enqueue-gap-ms``; p50/p95/p99 in us. Then recall p95
   end to end through dispatch (real embedder, k=10) with the queue on and
   off (off: the synchronous append on the request thread), in alternating
   blocks over the same cues.
"""
from __future__ import annotations

import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import (
    Run, base_parser, clock_ms, dir_stats, fmt, isolate_key_material, parse_sizes, print_table,
    summarize, time_calls,
)
from bench.corpus import Corpus, add_corpus_args, build_store, embed_pool, working_copy

NAME = "provenance"
SLOW_WRITE_S = 0.5
PAIRS_PER_RECALL = 10


#: The floor off (``min_score`` -1): every recall here returns its k hits, so
#: each one logs exactly PAIRS_PER_RECALL entries and the load is the same
#: whatever the synthetic cues' similarity to the store (the relevance floor
#: would cut some of them, and the "none lost" count would no longer be exact).
ALL_K = {"min_score": -1}


def _pairs(ids, i: int) -> list[tuple[Any, dict[str, Any]]]:
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return [(ids[(i * PAIRS_PER_RECALL + j) % len(ids)], {"ts": now, "cue": f"bench cue {i}", "session_id": "bench"})
            for j in range(PAIRS_PER_RECALL)]


def enqueue_and_drain(path: Path, enqueues: int, drain_batches: int, gap_ms: float) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.provenance_queue import ProvenanceWriteQueue

    store = backend.open_store(path)
    try:
        ids = [row.id for row in store.rows()]
        queue = store.enable_provenance_queue()
        batches = [_pairs(ids, i) for i in range(enqueues)]
        burst_ms = time_calls(queue.enqueue, batches)
        assert queue.flush(timeout=120), "the queue did not drain within 120 s"
        paced_ms = []
        gap = gap_ms / 1000

        def paced(batch):
            start = time.perf_counter_ns()
            queue.enqueue(batch)
            paced_ms.append((time.perf_counter_ns() - start) / 1e6)
            time.sleep(gap)

        for batch in batches:
            paced(batch)
        assert queue.flush(timeout=120), "the queue did not drain within 120 s"
        sync_ms = time_calls(store.append_provenance_batch, batches[: max(50, enqueues // 20)])

        with tempfile.TemporaryDirectory(prefix="iai-bench-spill-") as spill:
            drain_queue = ProvenanceWriteQueue(store, spill_dir=spill)
            for i in range(drain_batches):
                drain_queue.enqueue(_pairs(ids, i))
            entries = drain_batches * PAIRS_PER_RECALL
            start = clock_ms()
            drain_queue.start()
            drained = drain_queue.flush(timeout=300)
            drain_ms = clock_ms() - start
            drain_queue.stop()
        assert drained, "the drain queue did not finish within 300 s"
        flat = [pair for i in range(drain_batches) for pair in _pairs(ids, i)]
        start = clock_ms()
        for k in range(0, len(flat), 512):
            store.append_provenance_batch(flat[k:k + 512])
        direct_ms = clock_ms() - start
    finally:
        store.close()
    return {
        "enqueue_us": summarize([ms * 1000 for ms in paced_ms]),
        "enqueue_gap_ms": gap_ms,
        "enqueue_burst_us": summarize([ms * 1000 for ms in burst_ms]),
        "enqueue_pairs_per_call": PAIRS_PER_RECALL,
        "sync_append_batch_us": summarize([ms * 1000 for ms in sync_ms]),
        "drain": {"entries": entries, "seconds": round(drain_ms / 1000, 3),
                  "entries_per_s": round(entries / (drain_ms / 1000), 1)},
        "direct_append_512": {"entries": entries, "seconds": round(direct_ms / 1000, 3),
                              "entries_per_s": round(entries / (direct_ms / 1000), 1)},
    }


def slow_write(path: Path, cues: list[str], control_calls: int, blocks: int) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    store = backend.open_store(path)
    original = store.append_provenance_batch
    slow_calls = []

    def slow_append(pairs, records_cache=None):
        slow_calls.append(len(pairs))
        time.sleep(SLOW_WRITE_S)
        return original(pairs, records_cache)

    try:
        embedder = MiniLMEmbedder()
        embedder.warmup()
        store.bind_embedder(embedder)
        call = lambda cue: dispatch(store, "memory_recall", {"cue": cue, "k": PAIRS_PER_RECALL, **ALL_K})  # noqa: E731
        for cue in cues[:5]:
            call(cue)
        # Alternating blocks (normal, slow, normal, slow) over the same cues, with a
        # flush between blocks, so a quiet or busy minute on the machine lands on both.
        normal: list[float] = []
        slow: list[float] = []
        queue = store._provenance_queue
        assert queue is not None
        for block in range(blocks):
            chunk = cues[block * len(cues) // blocks:(block + 1) * len(cues) // blocks]
            for use_slow, samples in ((False, normal), (True, slow)):
                if use_slow:
                    store.append_provenance_batch = slow_append  # the worker looks it up on the store
                samples.extend(time_calls(call, chunk))
                assert queue.flush(timeout=120), "the queue did not drain within 120 s"
                store.append_provenance_batch = original
        writes_while_slow = len(slow_calls)
        store.disable_provenance_queue()
        store.append_provenance_batch = slow_append
        control = time_calls(call, cues[:control_calls])
    finally:
        store.append_provenance_batch = original
        store.close()
    return {
        "recalls": len(cues),
        "blocks_each": blocks,
        "slow_write_s": SLOW_WRITE_S,
        "normal_ms": summarize(normal),
        "slow_ms": summarize(slow),
        "slow_writes_made": writes_while_slow,
        "control_slow_write_queue_off_ms": summarize(control),
    }


def data_size(path: Path) -> dict[str, int]:
    """Sealed bytes the store needs (see the module docstring)."""
    from iai_mcp.store.records_table import RecordsTable

    records = sum(len(r.payload) + len(r.vector) for r in RecordsTable(path).scan())
    with sqlite3.connect(path / "provenance.sqlite3") as conn:
        count, prov = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(LENGTH(sealed) + LENGTH(entry_id) + LENGTH(record_id) + 8), 0)"
            " FROM entries").fetchone()
    conn.close()
    return {"records_sealed_bytes": records, "provenance_rows": count, "provenance_bytes": prov,
            "total_bytes": records + prov}


def growth(path: Path, cues: list[str], recalls: int) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    vectors = [v.tolist() for v in embedder.embed(cues)]

    def snapshot(store) -> dict[str, Any]:
        stats = store.stats()
        return {"versions": stats["versions"], "fragments": stats["fragments"],
                "provenance_entries": stats["provenance_entries"], **dir_stats(path)}

    store = backend.open_store(path)
    try:
        store.bind_embedder(embedder)
        records = len(store)
        before = snapshot(store)
        start = clock_ms()
        for i in range(recalls):
            j = i % len(cues)
            dispatch(store, "memory_recall", {"cue": cues[j], "cue_embedding": vectors[j], "k": PAIRS_PER_RECALL, **ALL_K})
        recall_s = (clock_ms() - start) / 1000
        assert store._provenance_queue is not None and store._provenance_queue.flush(timeout=120)
        after_recalls = snapshot(store)
        compact_ms = clock_ms()
        store.compact()
        compact_ms = clock_ms() - compact_ms
        after_compact = snapshot(store)
    finally:
        store.close()
    closed = dir_stats(path)
    own = data_size(path)
    return {
        "records": records,
        "recalls": recalls,
        "recall_seconds": round(recall_s, 1),
        "before_recalls": before,
        "after_recalls": after_recalls,
        "after_compact": after_compact,
        "compact_ms": round(compact_ms, 1),
        "after_close": closed,
        "data_own_size": own,
        "disk_over_data_after_compact": round(after_compact["bytes"] / own["total_bytes"], 3),
    }


def _paced(fn, args, gap_s: float) -> list[float]:
    """Microseconds of each ``fn(arg)``, one call every ``gap_s`` (a recall rate)."""
    samples = []
    for arg in args:
        start = time.perf_counter_ns()
        fn(arg)
        samples.append((time.perf_counter_ns() - start) / 1e3)
        time.sleep(gap_s)
    return samples


def paths(path: Path, cues: list[str], log_sizes: list[int], calls: int, gap_ms: float,
          blocks: int) -> list[dict[str, Any]]:
    """Section 5: synchronous append vs enqueue (+ journal), and recall with each."""
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    store = backend.open_store(path, provenance_queue=False)
    out = []
    try:
        embedder = MiniLMEmbedder()
        embedder.warmup()
        store.bind_embedder(embedder)
        ids = [row.id for row in store.rows()]
        recall = lambda cue: dispatch(store, "memory_recall", {"cue": cue, "k": PAIRS_PER_RECALL, **ALL_K})  # noqa: E731
        for cue in cues[:5]:
            recall(cue)
        gap = gap_ms / 1000

        def one_recall(i: int) -> list[tuple[Any, dict[str, Any]]]:
            entry = {"ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "cue": f"paths cue {i}", "session_id": "bench"}
            return [(ids[(i * PAIRS_PER_RECALL + j) % len(ids)], entry) for j in range(PAIRS_PER_RECALL)]

        made = 0
        for size in log_sizes:
            missing = size - store.stats()["provenance_entries"]
            filler = [pair for i in range(max(0, missing) // PAIRS_PER_RECALL) for pair in one_recall(i)]
            for k in range(0, len(filler), 512):
                store.append_provenance_batch(filler[k:k + 512])
            entries_before = store.stats()["provenance_entries"]
            batches = [one_recall(made + i) for i in range(calls)]
            made += calls
            sync_us = _paced(store.append_provenance_batch, batches[: calls // 2], gap)
            queue = store.enable_provenance_queue()
            enqueue_us = _paced(queue.enqueue, batches[calls // 2:], gap)
            assert queue.flush(timeout=120), "the queue did not drain within 120 s"
            queued_ms: list[float] = []
            sync_ms: list[float] = []
            for block in range(blocks):
                chunk = cues[block * len(cues) // blocks:(block + 1) * len(cues) // blocks]
                queue = store.enable_provenance_queue()
                queued_ms += time_calls(recall, chunk)
                store.disable_provenance_queue()  # drains; later recalls append on this thread
                sync_ms += time_calls(recall, chunk)
            out.append({
                "log_entries": entries_before,
                "sync_append_us": summarize(sync_us),
                "enqueue_us": summarize(enqueue_us),
                "recall_queue_on_ms": summarize(queued_ms),
                "recall_sync_append_ms": summarize(sync_ms),
            })
    finally:
        store.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=None, help="store size (default 1000; 200 quick)")
    parser.add_argument("--enqueues", type=int, default=None, help="timed enqueue calls (default 10000; 1000 quick)")
    parser.add_argument("--enqueue-gap-ms", type=float, default=2.0,
                        help="pause between paced enqueues, as recalls arrive (default %(default)s)")
    parser.add_argument("--drain-batches", type=int, default=None, help="batches drained (default 2000; 200 quick)")
    parser.add_argument("--recalls", type=int, default=None, help="recalls before the growth check (default 10000; 300 quick)")
    parser.add_argument("--slow-recalls", type=int, default=None, help="recalls per phase of the slow-write test (default 200; 10 quick)")
    parser.add_argument("--log-sizes", default=None,
                        help="log sizes for the paths section (default 10k,100k; 1k,3k quick)")
    parser.add_argument("--path-calls", type=int, default=None,
                        help="timed calls per path and log size (default 2000; 200 quick)")
    parser.add_argument("--path-recalls", type=int, default=None,
                        help="recalls per path and log size (default 200; 10 quick)")
    parser.add_argument("--paths-only", action="store_true",
                        help="run only section 5 (sync append vs enqueue, recall with each)")
    add_corpus_args(parser)
    args = parser.parse_args(argv)
    isolate_key_material()
    q = args.quick
    n = args.records or (200 if q else 1000)
    enqueues = args.enqueues or (1000 if q else 10_000)
    drain_batches = args.drain_batches or (200 if q else 2000)
    recalls = args.recalls or (300 if q else 10_000)
    slow_recalls = args.slow_recalls or (10 if q else 200)
    corpus = Corpus(args.seed, args.source, args.data)
    root = build_store(corpus, n, args.cache_dir, embed_pool(args))
    run = Run(NAME, args)
    log_sizes = parse_sizes(args.log_sizes or ("1k,3k" if q else "10k,100k"))
    path_calls = args.path_calls or (200 if q else 2000)
    path_recalls = args.path_recalls or (10 if q else 200)
    run.data["config"] = {"records": n, "enqueues": enqueues, "drain_batches": drain_batches,
                          "recalls": recalls, "slow_recalls": slow_recalls, "corpus": corpus.tag,
                          "log_sizes": log_sizes, "path_calls": path_calls, "path_recalls": path_recalls}
    with working_copy(root) as path:
        run.data["paths"] = pa = paths(path, corpus.cues(path_recalls, among=n, salt="paths"), log_sizes,
                                       path_calls, args.enqueue_gap_ms, blocks=1 if q else 2)
    print_table(f"One recall's entries into the log, one call per {args.enqueue_gap_ms} ms (us)",
                ["log entries", "path", "p50", "p95", "p99"],
                [row for p in pa for row in (
                    [p["log_entries"], "sync append_provenance_batch", *(p["sync_append_us"][k] for k in ("p50", "p95", "p99"))],
                    [p["log_entries"], "enqueue (+ journal)", *(p["enqueue_us"][k] for k in ("p50", "p95", "p99"))])])
    print_table("Recall end to end (ms)", ["log entries", "path", "p50", "p95", "p99"],
                [row for p in pa for row in (
                    [p["log_entries"], "queue on", *(p["recall_queue_on_ms"][k] for k in ("p50", "p95", "p99"))],
                    [p["log_entries"], "sync append", *(p["recall_sync_append_ms"][k] for k in ("p50", "p95", "p99"))])])
    for p in pa:
        run.add_ratio(f"sync append p99 @ {p['log_entries']:,} entries", p["sync_append_us"]["p99"],
                      "enqueue p99", p["enqueue_us"]["p99"], "us")
        run.add_ratio(f"recall p95, sync append @ {p['log_entries']:,} entries",
                      p["recall_sync_append_ms"]["p95"], "recall p95, queue on",
                      p["recall_queue_on_ms"]["p95"], "ms")
    if args.paths_only:
        run.finish()
        return run.data
    with working_copy(root) as path:
        run.data["queue"] = qd = enqueue_and_drain(path, enqueues, drain_batches, args.enqueue_gap_ms)
    with working_copy(root) as path:
        run.data["slow_write"] = sw = slow_write(path, corpus.cues(slow_recalls, among=n, salt="slow"),
                                                 control_calls=2 if q else 5, blocks=1 if q else 4)
    with working_copy(root) as path:
        run.data["growth"] = gr = growth(path, corpus.cues(200, among=n, salt="growth"), recalls)

    print_table("Provenance queue", ["figure", "p50", "p99", "max"],
                [[f"enqueue, one per {qd['enqueue_gap_ms']} ms (us, 10 pairs)", qd["enqueue_us"]["p50"],
                  qd["enqueue_us"]["p99"], qd["enqueue_us"]["max"]],
                 ["enqueue, back to back (us, 10 pairs)", qd["enqueue_burst_us"]["p50"],
                  qd["enqueue_burst_us"]["p99"], qd["enqueue_burst_us"]["max"]],
                 ["sync append_provenance_batch (us, 10 pairs)", qd["sync_append_batch_us"]["p50"],
                  qd["sync_append_batch_us"]["p99"], qd["sync_append_batch_us"]["max"]]])
    print(f"drain: {qd['drain']['entries_per_s']:,.0f} entries/s through the queue; "
          f"{qd['direct_append_512']['entries_per_s']:,.0f} entries/s appended directly")
    print_table(f"Recall with a {SLOW_WRITE_S * 1000:.0f} ms provenance write (ms)", ["case", "p50", "p95", "p99"],
                [["normal write, queue on", sw["normal_ms"]["p50"], sw["normal_ms"]["p95"], sw["normal_ms"]["p99"]],
                 ["slow write, queue on", sw["slow_ms"]["p50"], sw["slow_ms"]["p95"], sw["slow_ms"]["p99"]],
                 ["slow write, queue off (control)", sw["control_slow_write_queue_off_ms"]["p50"],
                  sw["control_slow_write_queue_off_ms"]["p95"], sw["control_slow_write_queue_off_ms"]["p99"]]])
    print_table(f"Store growth over {recalls:,} recalls ({n:,} records)",
                ["when", "versions", "fragments", "files", "bytes", "provenance entries"],
                [[label, s.get("versions", "-"), s.get("fragments", "-"), s["files"], s["bytes"],
                  s.get("provenance_entries", "-")]
                 for label, s in (("before recalls", gr["before_recalls"]), ("after recalls", gr["after_recalls"]),
                                  ("after compact", gr["after_compact"]), ("after close", gr["after_close"]))])
    print(f"data's own size: {fmt(gr['data_own_size']['total_bytes'])} bytes "
          f"(records {fmt(gr['data_own_size']['records_sealed_bytes'])}, "
          f"provenance {fmt(gr['data_own_size']['provenance_bytes'])})")

    run.add_ratio("enqueue p99", qd["enqueue_us"]["p99"], "sync append of the same batch p50",
                  qd["sync_append_batch_us"]["p50"], "us")
    run.add_ratio("drain entries/s", qd["drain"]["entries_per_s"], "direct append in 512s entries/s",
                  qd["direct_append_512"]["entries_per_s"], "/s")
    run.add_ratio("recall p50, slow write", sw["slow_ms"]["p50"], "recall p50, normal write", sw["normal_ms"]["p50"], "ms")
    run.add_ratio("recall p95, slow write", sw["slow_ms"]["p95"], "recall p95, normal write", sw["normal_ms"]["p95"], "ms")
    run.add_ratio("store bytes after compact", gr["after_compact"]["bytes"], "data's own size",
                  gr["data_own_size"]["total_bytes"], "B")
    run.add_target(f"provenance enqueue p99, one per {qd['enqueue_gap_ms']} ms (us)",
                   qd["enqueue_us"]["p99"], 50, unit=" us")
    run.add_target("provenance enqueue p99, back to back (us)", qd["enqueue_burst_us"]["p99"], 50, unit=" us")
    # "Adds nothing": the slow run's p95 may exceed the normal one by noise only,
    # taken as at most 2 ms or 20% of the normal p95, whichever is larger.
    allowance = max(2.0, 0.2 * sw["normal_ms"]["p95"])
    run.add_target("recall p95 added by a 500 ms provenance write (ms; noise allowance max(2 ms, 20%))",
                   round(sw["slow_ms"]["p95"] - sw["normal_ms"]["p95"], 3), round(allowance, 3), unit=" ms")
    run.add_target(f"LanceDB versions after {recalls:,} recalls + compact", gr["after_compact"]["versions"], 50, op="<")
    run.add_target(f"LanceDB fragments after {recalls:,} recalls + compact", gr["after_compact"]["fragments"], 50, op="<")
    run.add_target("store bytes / data's own size after compact", gr["disk_over_data_after_compact"], 2.0, unit="x")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
