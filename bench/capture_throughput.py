"""Capture throughput: single captures and batched import into a store holding N.

Single: ``dispatch(store, "memory_capture", ...)`` one new text at a time
(500 texts by default), into a copy of the cached store of N records, with the
real embedder (model loaded before timing). Batched: ``capture.capture_many``
in batches (250 by default, 2,000 texts in all) into the same store. Texts are
new (never folded into an existing record).

Single, daemon's store: the same single captures (other new texts) into a
second copy opened as the daemon opens it (``compact_when_idle``): a write
never pays the compaction the daemon runs between requests, so its rate and
its slowest capture show what a client of the daemon meets in a burst.

Baselines measured in the same run: ``embedder.embed`` of the same texts one
at a time and in the same batches (the model's share), and
``store.insert_many`` of precomputed records in the same batches (the store's
share: sealing, the LanceDB commit, the SQLite log, the in-memory index).
"""
from __future__ import annotations

from typing import Any

from bench.common import (
    Run, base_parser, clock_ms, isolate_key_material, parse_sizes, print_table, summarize,
    time_calls,
)
from bench.corpus import Corpus, add_corpus_args, build_store, embed_pool, make_records, working_copy

NAME = "capture_throughput"


def _rate(count: int, ms: float) -> float:
    return round(count / (ms / 1000.0), 1) if ms > 0 else 0.0


def _single_params(texts: list[str]) -> list[dict[str, Any]]:
    return [{"text": t, "session_id": f"bench-{i // 20}", "role": "user" if i % 2 else "assistant"}
            for i, t in enumerate(texts)]


def measure_deferred(path, corpus: Corpus, n: int, singles: int) -> dict[str, Any]:
    """Single captures into a store opened with ``compact_when_idle``."""
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    store = backend.open_store(path, compact_when_idle=True)
    try:
        embedder = MiniLMEmbedder()
        embedder.warmup()
        store.bind_embedder(embedder)
        params = _single_params(corpus.fresh_texts(singles, f"single-idle-{n}"))
        start = clock_ms()
        single = time_calls(lambda p: dispatch(store, "memory_capture", p), params)
        wall = clock_ms() - start
        return {"captures": singles, "records_per_s": _rate(singles, wall), "latency_ms": summarize(single),
                "compaction_due_after": store.compaction_due}
    finally:
        store.close()


def measure(path, corpus: Corpus, n: int, singles: int, batch: int, total: int) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core.capture import CaptureRequest, capture_many
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    store = backend.open_store(path)
    try:
        embedder = MiniLMEmbedder()
        embedder.warmup()
        store.bind_embedder(embedder)
        single_texts = corpus.fresh_texts(singles, f"single-{n}")
        params = _single_params(single_texts)
        start = clock_ms()
        single = time_calls(lambda p: dispatch(store, "memory_capture", p), params)
        single_wall = clock_ms() - start
        after_singles = len(store)

        batch_texts = corpus.fresh_texts(total, f"batch-{n}")
        chunks = [batch_texts[i:i + batch] for i in range(0, total, batch)]
        start = clock_ms()
        per_batch = time_calls(
            lambda chunk: capture_many(store, embedder, [CaptureRequest(text=t, session_id="import") for t in chunk]),
            chunks,
        )
        batch_wall = clock_ms() - start
        batch_inserted = len(store) - after_singles

        embed_single = time_calls(lambda t: embedder.embed([t]), single_texts)
        vecs = []
        start = clock_ms()
        embed_batch = time_calls(lambda chunk: vecs.append(embedder.embed(chunk)), chunks)
        embed_batch_wall = clock_ms() - start

        insert_texts = corpus.fresh_texts(total, f"insert-{n}")
        records = [make_records(insert_texts[i:i + batch], vecs[j], corpus.seed, start=10_000_000 + i)
                   for j, i in enumerate(range(0, total, batch))]
        start = clock_ms()
        insert = time_calls(store.insert_many, records)
        insert_wall = clock_ms() - start
        final = len(store)
    finally:
        store.close()
    return {
        "records_before": n,
        "records_after": final,
        "single": {"captures": singles, "inserted": after_singles - n, "records_per_s": _rate(singles, single_wall),
                   "latency_ms": summarize(single)},
        "batched": {"records": total, "batch_size": batch, "inserted": batch_inserted,
                    "records_per_s": _rate(total, batch_wall), "batch_ms": summarize(per_batch)},
        "baseline_embed_single": {"records_per_s": _rate(singles, sum(embed_single)),
                                  "latency_ms": summarize(embed_single)},
        "baseline_embed_batched": {"records_per_s": _rate(total, embed_batch_wall),
                                   "batch_ms": summarize(embed_batch)},
        "baseline_insert_many": {"records_per_s": _rate(total, insert_wall), "batch_ms": summarize(insert)},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--sizes", default=None, help="records already in the store (default 1k,10k,100k; 200 quick)")
    parser.add_argument("--singles", type=int, default=None, help="single captures per size (default 500; 20 quick)")
    parser.add_argument("--batch", type=int, default=None, help="capture_many batch size (default 250; 30 quick)")
    parser.add_argument("--total", type=int, default=None, help="texts imported per size (default 2000; 60 quick)")
    add_corpus_args(parser)
    args = parser.parse_args(argv)
    isolate_key_material()
    sizes = parse_sizes(args.sizes or ("200" if args.quick else "1k,10k,100k"))
    singles = args.singles or (20 if args.quick else 500)
    batch = args.batch or (30 if args.quick else 250)
    total = args.total or (60 if args.quick else 2000)
    corpus = Corpus(args.seed, args.source, args.data)
    run = Run(NAME, args)
    results = []
    for n in sizes:
        print(f"[{n:,} records]")
        root = build_store(corpus, n, args.cache_dir, embed_pool(args))
        with working_copy(root) as path:
            results.append(measure(path, corpus, n, singles, batch, total))
        with working_copy(root) as path:
            results[-1]["single_compact_when_idle"] = measure_deferred(path, corpus, n, singles)
    run.data["config"] = {"sizes": sizes, "singles": singles, "batch": batch, "total": total,
                          "corpus": corpus.tag}
    run.data["sizes"] = results
    print_table("Capture throughput (records/s; latency in ms)",
                ["records before", "single rec/s", "single p50", "single p95", "single p99",
                 "batched rec/s", "embed-only single rec/s", "embed-only batched rec/s", "insert_many rec/s"],
                [[r["records_before"], r["single"]["records_per_s"], r["single"]["latency_ms"]["p50"],
                  r["single"]["latency_ms"]["p95"], r["single"]["latency_ms"]["p99"],
                  r["batched"]["records_per_s"], r["baseline_embed_single"]["records_per_s"],
                  r["baseline_embed_batched"]["records_per_s"], r["baseline_insert_many"]["records_per_s"]]
                 for r in results])
    print_table("Single captures: inline compaction (in process) vs the daemon's store (compaction when idle)",
                ["records before", "inline rec/s", "inline max ms", "when idle rec/s", "when idle max ms"],
                [[r["records_before"], r["single"]["records_per_s"], r["single"]["latency_ms"]["max"],
                  r["single_compact_when_idle"]["records_per_s"], r["single_compact_when_idle"]["latency_ms"]["max"]]
                 for r in results])
    for r in results:
        n = r["records_before"]
        run.add_ratio(f"single capture rec/s @ {n:,}", r["single"]["records_per_s"],
                      "embed one text at a time rec/s", r["baseline_embed_single"]["records_per_s"], "rec/s")
        run.add_ratio(f"single capture rec/s @ {n:,}, daemon's store", r["single_compact_when_idle"]["records_per_s"],
                      "embed one text at a time rec/s", r["baseline_embed_single"]["records_per_s"], "rec/s")
        run.add_ratio(f"batched import rec/s @ {n:,}", r["batched"]["records_per_s"],
                      "embed the same batches rec/s", r["baseline_embed_batched"]["records_per_s"], "rec/s")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
