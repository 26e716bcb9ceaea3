"""The vectors in int8 with exact re-scoring: their memory, and whether recall
still returns what a float32 scan of every row returns (issue 14).

Per size, on a working copy of the cached bench store: the bytes of the
store's per-slot vector arrays (``store.slots``: int8 codes, scales, error
bounds, norms, states, blob positions) against the float32 matrix they
replace (rows x 384 x 4 B, with the same 1/8 headroom); then each cue
(embedded with MiniLM, k=10, the model's relevance floor) is ranked twice by
``recall.rank``: as recall runs (int8 pass, exact re-scoring where it
decides: ``core.dense``) and with the candidate pass answered by exact
float32 cosines of every row with zero bounds (today's scan). Reported:
how many cues return the same hits in the same order, the largest score
difference between them, and how many rows a recall re-scored. Counts, not
timings: the figures do not depend on the machine's load.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Run, base_parser, isolate_key_material, print_table
from bench.corpus import add_sized_args, build_store, sized_setup, working_copy

NAME = "vector_index"
K = 10


def measure(path: Path, cues: list[str]) -> dict[str, Any]:
    from iai_mcp.core.recall import RecallQuery, rank
    from iai_mcp.embed import MiniLMEmbedder
    from iai_mcp.store import MemoryStore
    from iai_mcp.types import EMBED_DIM

    embedder = MiniLMEmbedder()
    store = MemoryStore(path=path, embedder=embedder)
    try:
        slots = store._slots  # the store's own arrays: what this benchmark is about
        held = sum(v.nbytes for v in slots.arrays)  # the codes and the per-slot arrays, one value
        float32 = len(slots.states) * EMBED_DIM * 4 + slots.norms.nbytes + slots.states.nbytes
        matrix, norms = store.vectors()
        exact_fn = store.exact_cosines
        counted: list[int] = []

        def counting(rows: np.ndarray, query: np.ndarray) -> np.ndarray:
            counted[-1] += len(rows)
            return exact_fn(rows, query)

        def everywhere(query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            scores = (matrix @ query) / norms / np.float32(np.linalg.norm(query))
            return scores.astype(np.float32), np.zeros(len(scores), dtype=np.float32)

        same = 0
        worst = 0.0
        for cue, vec in zip(cues, embedder.embed(cues)):
            query = RecallQuery(cue=cue, cue_embedding=vec, k=K)
            counted.append(0)
            store.exact_cosines = counting  # type: ignore[method-assign]
            got, _ = rank(store, embedder, query)
            del store.exact_cosines
            store.approx_cosines = everywhere  # type: ignore[method-assign]
            want, _ = rank(store, embedder, query)
            del store.approx_cosines
            if [h.row.id for h in got] == [h.row.id for h in want]:
                same += 1
                worst = max([worst, *(abs(a.score - b.score) for a, b in zip(got, want))])
        rescored = np.asarray(counted)
        return {
            "records": len(store), "slots": len(slots.states),
            "vector_arrays_mb": round(held / 2**20, 1), "float32_arrays_mb": round(float32 / 2**20, 1),
            "cues": len(cues), "identical_top_k": same, "max_score_difference": worst,
            "rescored_rows": {"mean": round(float(rescored.mean()), 1),
                              "p95": float(np.percentile(rescored, 95)), "max": int(rescored.max())},
        }
    finally:
        store.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    add_sized_args(parser, "200,500")
    args = parser.parse_args(argv)
    isolate_key_material()
    sizes, queries, pool, corpus = sized_setup(args, "200,500")
    run = Run(NAME, args)
    results = []
    for n in sizes:
        print(f"[{n:,} records]")
        root = build_store(corpus, n, args.cache_dir, pool)
        with working_copy(root) as path:
            results.append(measure(path, corpus.cues(queries, among=n, salt=f"recall-{n}")))
    run.data["config"] = {"k": K, "sizes": sizes, "queries_per_size": queries, "corpus": corpus.tag,
                          "embed_pool": pool}
    run.data["sizes"] = results
    print_table(f"Vectors in int8 with exact re-scoring (recall k={K} against a float32 scan)",
                ["records", "vector MB", "float32 MB", "identical top-k", "max score diff",
                 "re-scored mean", "p95", "max"],
                [[r["records"], r["vector_arrays_mb"], r["float32_arrays_mb"],
                  f"{r['identical_top_k']}/{r['cues']}", f"{r['max_score_difference']:.1e}",
                  *r["rescored_rows"].values()] for r in results])
    for r in results:
        run.add_ratio(f"vector arrays at {r['records']:,}", r["vector_arrays_mb"],
                      "float32 matrix", r["float32_arrays_mb"], unit="MB")
        run.add_target(f"identical top-{K} at {r['records']:,}", r["identical_top_k"] / r["cues"], 1.0, op=">=")
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
