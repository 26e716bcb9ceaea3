"""Daemon cost: cold spawn, and a recall's round trip through the daemon vs in process.

Cold spawn: on a copy of the cached store of N records with no daemon
running, ``backend.connect(path)`` (which starts ``python -m iai_mcp daemon run``
and returns once it listens), then the first ``ping`` and the first recall
(the daemon loads the model in the background after it starts listening, so
an early recall may wait for it).

Round trip: each cue recalled with ``memory_recall`` (k=10, cue embedded by
MiniLM in whichever process owns the store) through a ``DaemonClient``, and
right after in process with ``core.dispatch`` on a second copy of the store
opened by ``backend.open_store``; alternating keeps both sides under the same
machine load. ``ping`` through the daemon is the protocol alone: socket,
JSON both ways, a thread switch. The overhead of the daemon is the
difference of the recall medians.
"""
from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

from bench.common import (
    Run, base_parser, isolate_key_material, print_table, summarize, time_calls,
    time_once,
)
from bench.corpus import add_sized_args, build_store, sized_setup, working_copy

NAME = "daemon"
K = 10


def measure(daemon_copy: Path, local_copy: Path, cues: list[str], warmup: int = 5) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.daemon import lifecycle as daemon
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    connect_ms, client = time_once(lambda: backend.connect(daemon_copy))
    store = None
    try:
        ping_first_ms, info = time_once(lambda: client.call("ping"))
        remote = lambda cue: client.call("memory_recall", {"cue": cue, "k": K})  # noqa: E731
        first_recall_ms, first = time_once(lambda: remote(cues[0]))
        assert first["hits"], "recall returned nothing on a non-empty store"
        # The in-process side gets its own copy of the store (one owner per
        # store); calls alternate, so both sides see the same machine load.
        store = backend.open_store(local_copy)
        store.bind_embedder(MiniLMEmbedder())
        local = lambda cue: dispatch(store, "memory_recall", {"cue": cue, "k": K})  # noqa: E731
        for cue in cues[:1 + warmup]:
            remote(cue)
            local(cue)
        gc.collect()
        via_daemon, in_process = [], []
        for cue in cues:
            via_daemon += time_calls(remote, [cue])
            in_process += time_calls(local, [cue])
        pings = time_calls(lambda _: client.call("ping"), range(len(cues)))
    finally:
        client.close()
        daemon.stop(daemon_copy, timeout=60)
        if store is not None:
            store.close()
    return {
        "records": info["records"],
        "queries": len(cues),
        "cold_connect_ms": round(connect_ms, 2),
        "cold_first_ping_ms": round(ping_first_ms, 2),
        "cold_first_recall_ms": round(first_recall_ms, 2),
        "recall_via_daemon_ms": summarize(via_daemon),
        "recall_in_process_ms": summarize(in_process),
        "ping_via_daemon_ms": summarize(pings),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    add_sized_args(parser, "200")
    args = parser.parse_args(argv)
    isolate_key_material()
    os.environ.pop("IAI_MCP_TEST_EMBEDDER", None)  # the daemon inherits this environment
    os.environ.pop("IAI_MCP_LOCAL", None)
    sizes, queries, pool, corpus = sized_setup(args, "200")
    run = Run(NAME, args)
    results = []
    for n in sizes:
        print(f"[{n:,} records]")
        root = build_store(corpus, n, args.cache_dir, pool)
        cues = corpus.cues(queries, among=n, salt=f"daemon-{n}")
        with working_copy(root) as daemon_copy, working_copy(root) as local_copy:
            results.append(measure(daemon_copy, local_copy, cues))
    run.data["config"] = {"k": K, "sizes": sizes, "queries_per_size": queries, "corpus": corpus.tag,
                          "embed_pool": pool}
    run.data["sizes"] = results

    print_table(f"Daemon: cold spawn and recall round trip, ms (memory_recall, k={K}, MiniLM)",
                ["records", "connect (spawn)", "1st ping", "1st recall", "daemon p50", "daemon p95",
                 "in-process p50", "in-process p95", "ping p50", "ping p95"],
                [[r["records"], r["cold_connect_ms"], r["cold_first_ping_ms"], r["cold_first_recall_ms"],
                  r["recall_via_daemon_ms"]["p50"], r["recall_via_daemon_ms"]["p95"],
                  r["recall_in_process_ms"]["p50"], r["recall_in_process_ms"]["p95"],
                  r["ping_via_daemon_ms"]["p50"], r["ping_via_daemon_ms"]["p95"]] for r in results])
    for r in results:
        n = r["records"]
        run.add_ratio(f"recall p50 via daemon @ {n:,}", r["recall_via_daemon_ms"]["p50"],
                      "recall p50 in process", r["recall_in_process_ms"]["p50"], "ms")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
