"""Recall latency, end to end and by part, at 1k, 10k and 100k records.

End to end is ``core.dispatch(store, "memory_recall", {"cue": ..., "k": 10})``
on a store opened by ``backend.open_store`` (provenance queue on, as a server runs
it), with the real MiniLM embedder embedding each cue (no ``cue_embedding``).
The cold first call is timed apart: a freshly opened store and a fresh
embedder, so it pays the model load and the keyword index build.

Each part is timed by calling the library function itself on the same cue,
all parts in turn for each cue (so a busy moment on a shared machine lands
on every part alike):
``embedder.embed``, the candidate search (``core.dense.Cosines``: the pass
over the int8 codes and the exact re-scoring of the best rows, as rank
starts; the float32 matvec over ``store.vectors()`` on a tree without it),
``recall.keyword_index(store).scores``, ``retrieval.fuse`` (on rows grouped by
session, with session codes, as recall calls it), ``recall.fused_scores``,
``recall.rank`` (everything between the cue vector and the ordered hits),
and the packing loop of ``recall.recall`` (with ``rank`` replaced by one
returning precomputed hits). The baseline for the ratio table is a numpy
brute-force top-10 (matvec + argpartition) over the float32 matrix of the same vectors.

``--forget 0.1`` first forgets every tenth record (evenly spread) of the
working copy, with ``--forget-mode purge`` (default: one ``store.purge``, the
slots stay as emptied tombstones until the next open, which is what recall
then ranks over) or ``hide`` (``memory_forget`` by ids, 1000 per call); the
time it took is reported as ``forget_ms``, and the results go to
``recall_latency_forget.json`` (``recall_latency_forget_hide.json`` for
hide) so the plain run's file stays the baseline.
"""
from __future__ import annotations

import gc
import json
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    Laps, Run, base_parser, command_line, isolate_key_material, print_table, summarize, time_once,
)
from bench.corpus import add_sized_args, build_store, sized_setup, working_copy

NAME = "recall_latency"
K = 10


def _candidate_search(store: Any, matrix: np.ndarray, safe_norms: np.ndarray) -> Any:
    """The dense pass recall runs, as a function of the cue vector: the int8
    codes with exact re-scoring (``core.dense``) where the tree has it, else
    the float32 matvec."""
    try:
        from iai_mcp.core.dense import Cosines
        from iai_mcp.store import PURGED, STATE_CODES
    except ImportError:
        return lambda v: (matrix @ v) / safe_norms
    states = store.states()
    dead = (states == STATE_CODES["hidden"]) | (states == PURGED)
    return lambda v: Cosines(store, v / np.linalg.norm(v), len(dead), dead, K).dense


def _fusion(store, retrieval):
    """``retrieval.fuse`` as recall calls it: rows grouped by session, one integer
    code per session (computed here from the rows, the way recall keeps them)."""
    codes: dict[str | None, int] = {}
    session = np.array([codes.setdefault(r.session_id, len(codes)) for r in store.rows()], dtype=np.int64)
    order = np.argsort(session, kind="stable")
    grouped = session[order]

    def fuse(dense: np.ndarray, keyword: np.ndarray) -> np.ndarray:
        out = np.empty_like(dense)
        out[order] = retrieval.fuse(dense[order], keyword[order], grouped)
        return out

    return fuse


@contextmanager
def _rank_replaced(recall_module, hits):
    original = recall_module.rank
    recall_module.rank = lambda *a, **k: hits
    try:
        yield
    finally:
        recall_module.rank = original


def forget_fraction(store, fraction: float, mode: str) -> dict[str, Any]:
    """Forget every ``1/fraction``-th live record; returns what was done and how long it took."""
    from iai_mcp.core import dispatch
    from iai_mcp.core.limits import MAX_PAGE

    rows = store.rows()
    count = int(len(rows) * fraction)
    if count == 0:
        return {"fraction": fraction, "mode": mode, "forgotten": 0, "forget_ms": 0.0}
    picked = np.linspace(0, len(rows) - 1, count).astype(int)
    ids = [rows[i].id for i in picked]

    def run() -> None:
        if mode == "purge":
            store.purge(ids)
        else:
            for start in range(0, len(ids), MAX_PAGE):
                dispatch(store, "memory_forget", {"ids": [str(i) for i in ids[start:start + MAX_PAGE]]})

    forget_ms, _ = time_once(run)
    return {"fraction": fraction, "mode": mode, "forgotten": count, "forget_ms": round(forget_ms, 1)}


class _Run(Run):
    """Writes ``recall_latency_forget[_hide].json`` when forgetting, with the command as typed."""

    def write(self) -> Path:
        path = super().write()
        data = json.loads(path.read_text("utf-8"))
        data["command"] = command_line(NAME)
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        return path


def measure(path: Path, cues: list[str], warmup: int = 5, forget: float = 0.0,
            forget_mode: str = "purge") -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp import retrieval
    from iai_mcp.core import recall as recall_module
    from iai_mcp.core import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    open_ms, store = time_once(lambda: backend.open_store(path))
    try:
        embedder = MiniLMEmbedder()  # fresh: the cold call pays the model load
        store.bind_embedder(embedder)
        n = len(store)
        forgotten = forget_fraction(store, forget, forget_mode) if forget else None
        call = lambda cue: dispatch(store, "memory_recall", {"cue": cue, "k": K})  # noqa: E731
        cold_ms, first = time_once(lambda: call(cues[0]))
        assert first["hits"], "recall returned nothing on a non-empty store"
        for cue in cues[1:1 + warmup]:
            call(cue)
        matrix, norms = store.vectors()
        safe_norms = np.maximum(norms, 1e-12)
        candidates = _candidate_search(store, matrix, safe_norms)
        fuse = _fusion(store, retrieval)
        lap = Laps()
        gc.collect()
        # Every part is timed once per cue, in turn, so a busy moment on a shared
        # machine lands on all of them alike instead of on whichever ran then.
        for cue in cues:
            lap("end_to_end", call, cue)
            vec = lap("embed", embedder.embed, [cue])[0]
            dense = lap("candidate_search", candidates, vec)
            keyword = lap("keyword_search", lambda c: recall_module.keyword_index(store).scores(c), cue)
            lap("fusion", fuse, dense, keyword)
            if hasattr(recall_module, "fused_scores"):  # keyword scoring + fusion, as rank calls them
                lap("keyword_and_fusion", recall_module.fused_scores, store, dense, cue, n)
            query = recall_module.RecallQuery(cue=cue, cue_embedding=vec, k=K)
            hits = lap("rank", recall_module.rank, store, None, query)
            with _rank_replaced(recall_module, hits):
                lap("packing", recall_module.recall, store, None, query)
            lap("recall_without_embed", recall_module.recall, store, None, query)
            lap("baseline", lambda v: np.argpartition(-(matrix @ v), K)[:K], vec)
    finally:
        store.close()
    samples = dict(lap.samples)
    end_to_end = samples.pop("end_to_end")
    baseline = samples.pop("baseline")
    return {
        "records": n,
        **({"forgotten": forgotten} if forgotten else {}),
        "queries": len(cues),
        "open_store_ms": round(open_ms, 2),
        "cold_first_call_ms": round(cold_ms, 2),
        "end_to_end_ms": summarize(end_to_end),
        "parts_ms": {name: summarize(s) for name, s in samples.items() if s},
        "baseline_numpy_bruteforce_top10_ms": summarize(baseline),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    add_sized_args(parser, "200,500")
    parser.add_argument("--forget", type=float, default=0.0, metavar="FRACTION",
                        help="forget this fraction of each store before timing (e.g. 0.1)")
    parser.add_argument("--forget-mode", choices=["purge", "hide"], default="purge",
                        help="how --forget forgets (default purge)")
    args = parser.parse_args(argv)
    if not 0.0 <= args.forget < 1.0:
        parser.error("--forget is a fraction in [0, 1)")
    isolate_key_material()
    sizes, queries, pool, corpus = sized_setup(args, "200,500")
    suffix = "_forget" + ("" if args.forget_mode == "purge" else f"_{args.forget_mode}")
    run = _Run(NAME + suffix if args.forget else NAME, args)
    results = []
    for n in sizes:
        print(f"[{n:,} records]")
        root = build_store(corpus, n, args.cache_dir, pool)
        cues = corpus.cues(queries, among=n, salt=f"recall-{n}")
        with working_copy(root) as path:
            results.append(measure(path, cues, forget=args.forget, forget_mode=args.forget_mode))
    run.data["config"] = {"k": K, "sizes": sizes, "queries_per_size": queries, "corpus": corpus.tag,
                          "embed_pool": pool, "provenance_queue": True,
                          "forget": {"fraction": args.forget, "mode": args.forget_mode} if args.forget else None}
    run.data["sizes"] = results

    print_table(f"Recall latency, ms (dispatch memory_recall, k={K}, cue embedded with MiniLM)",
                ["records", "open", "cold 1st", "p50", "p95", "p99", "embed p50", "matvec p50",
                 "bm25 p50", "fuse p50", "rank p50", "pack p50", "numpy top10 p50"],
                [[r["records"], r["open_store_ms"], r["cold_first_call_ms"], r["end_to_end_ms"]["p50"],
                  r["end_to_end_ms"]["p95"], r["end_to_end_ms"]["p99"],
                  *(r["parts_ms"][p].get("p50") for p in ("embed", "candidate_search", "keyword_search",
                                                         "fusion", "rank", "packing")),
                  r["baseline_numpy_bruteforce_top10_ms"]["p50"]] for r in results])
    for r in results:
        n = r["records"]
        p95 = r["end_to_end_ms"]["p95"]
        run.add_ratio(f"recall p95 @ {n:,}", p95, "numpy brute-force top-10 p50",
                      r["baseline_numpy_bruteforce_top10_ms"]["p50"], "ms")
        run.add_ratio(f"recall p95 @ {n:,}", p95, "embed one cue p50", r["parts_ms"]["embed"]["p50"], "ms")
    for n, limit in ((10_000, 15), (100_000, 40)):
        for r in results:
            if r["records"] == n:
                run.add_target(f"recall p95 @ {n:,} records (ms, embedding included)",
                               r["end_to_end_ms"]["p95"], limit, unit=" ms")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
