"""Recall's ranking timed on several code trees at once: this tree and earlier
commits, interleaved in one process on the same store and cue vectors.

On a shared machine absolute times move with the load; two trees timed call
by call against each other see the same load, so their ratio holds. Each
``--rev`` is exported with ``git archive`` into a temporary directory as a
package of its own (``iai_mcp_<rev>``, its imports renamed), and every tree
opens the same working copy of the cached bench store read-only (the first
takes the store's lock; the others read beside it, writing nothing). For each
cue (embedded once with MiniLM), each tree runs ``recall.rank`` (k=10, the
model's floor; ``--part cosines``: only ``core.dense.Cosines``, the candidate
search, on trees that have it), in alternating order. Reported: p50/p95/p99
per tree, its ratio to the first tree, and how many cues every tree answers
with the same hits (``rank`` only).

    python -m bench.rank_ab --rev 0f13edc --rev main --sizes 10k,100k
"""
from __future__ import annotations

import gc
import importlib
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    Run,
    base_parser,
    isolate_key_material,
    print_table,
    summarize,
)
from bench.corpus import add_sized_args, build_store, sized_setup, working_copy

NAME = "rank_ab"
K = 10


def export(rev: str, into: Path) -> str:
    """The tree of ``rev`` as package ``iai_mcp_<rev>`` under ``into``; its name."""
    name = "iai_mcp_" + re.sub(r"\W", "_", rev)
    blob = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", rev, "src/iai_mcp"],
                          check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(blob)) as tar:
        tar.extractall(into, filter="data")
    package = into / name
    (into / "src" / "iai_mcp").rename(package)
    pattern = re.compile(r"\biai_mcp\b")
    for path in package.rglob("*.py"):
        path.write_text(pattern.sub(name, path.read_text("utf-8")), "utf-8")
    return name


class Tree:
    """One code tree's store, ranking and candidate search."""

    def __init__(self, package: str, path: Path, embedder_of: dict[str, Any], share_lock: bool) -> None:
        self.name = package
        imp = lambda m: importlib.import_module(f"{package}.{m}")
        store_mod: ModuleType = imp("store")
        if share_lock:  # one flock per store: the first tree holds it, read-only, for all
            store_mod.take_reader_lock = lambda root: None
        self.embedder = embedder_of.setdefault(package, imp("embed").default_embedder())
        self.store = store_mod.MemoryStore(path=path, embedder=self.embedder, read_only=True)
        self.recall = imp("core.recall")
        self.dead = np.isin(self.store.states(), [store_mod.STATE_CODES["hidden"], store_mod.PURGED])
        try:
            self.cosines = imp("core.dense").Cosines
        except ImportError:
            self.cosines = None

    def rank(self, cue: str, vec: np.ndarray) -> Any:
        return self.recall.rank(self.store, None, self.recall.RecallQuery(cue=cue, cue_embedding=vec, k=K))

    def candidates(self, cue: str, vec: np.ndarray) -> Any:
        return self.cosines(self.store, vec / np.linalg.norm(vec), len(self.dead), self.dead, K)


def measure(path: Path, cues: list[str], packages: list[str], reps: int, part: str) -> dict[str, Any]:
    embedders: dict[str, Any] = {}
    trees = [Tree(p, path, embedders, share_lock=i > 0) for i, p in enumerate(packages)]
    try:
        vecs = np.asarray(trees[0].embedder.embed(cues), dtype=np.float32)
        calls = {t.name: (t.rank if part == "rank" else t.candidates) for t in trees}
        if part != "rank" and any(t.cosines is None for t in trees):
            raise SystemExit("--part cosines needs core.dense.Cosines in every tree")
        same = 0
        for cue, vec in zip(cues, vecs):  # warm-up (keyword indexes), and the answers compared
            answers = [calls[t.name](cue, vec) for t in trees]
            if part == "rank":
                keys = [([(str(h.row.id), h.anti) for h in hits], below) for hits, below in answers]
                same += all(k == keys[0] for k in keys)
        samples: dict[str, list[float]] = {t.name: [] for t in trees}
        gc.collect()
        gc.disable()  # a collection lands on whichever call runs then
        try:
            for r in range(reps):
                for i, (cue, vec) in enumerate(zip(cues, vecs)):
                    for t in (trees if (i + r) % 2 == 0 else trees[::-1]):
                        start = time.perf_counter()
                        calls[t.name](cue, vec)
                        samples[t.name].append((time.perf_counter() - start) * 1e3)
        finally:
            gc.enable()
    finally:
        for t in trees:
            t.store.close()
    return {"records": len(trees[0].dead),
            "cues": len(cues), "calls_per_tree": len(cues) * reps,
            **({"identical_hits": same} if part == "rank" else {}),
            "ms": {name: summarize(s) for name, s in samples.items()}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    add_sized_args(parser, "1k")
    parser.add_argument("--rev", action="append", default=[],
                        help="a commit to time beside this tree (repeatable; listed first, the first is the baseline)")
    parser.add_argument("--reps", type=int, default=3, help="passes over the cues (default 3)")
    parser.add_argument("--part", choices=["rank", "cosines"], default="rank")
    args = parser.parse_args(argv)
    isolate_key_material()
    sizes, queries, pool, corpus = sized_setup(args, "1k")
    run = Run(NAME, args)
    results = []
    with tempfile.TemporaryDirectory(prefix="iai-rank-ab-") as scratch:
        sys.path.insert(0, scratch)
        packages = [export(rev, Path(scratch)) for rev in args.rev] + ["iai_mcp"]
        for n in sizes:
            print(f"[{n:,} records]")
            root = build_store(corpus, n, args.cache_dir, pool)
            cues = corpus.cues(queries, among=n, salt=f"recall-{n}")
            with working_copy(root) as path:
                results.append(measure(path, cues, packages, args.reps, args.part))
    run.data["config"] = {"k": K, "sizes": sizes, "queries_per_size": queries, "reps": args.reps,
                          "part": args.part, "trees": [*args.rev, "this tree"], "corpus": corpus.tag}
    run.data["sizes"] = results
    rows = []
    for r in results:
        first = next(iter(r["ms"].values()))
        for name, s in r["ms"].items():
            rows.append([r["records"], name, s["p50"], s["p95"], s["p99"],
                         round(s["p50"] / first["p50"], 3), round(s["p95"] / first["p95"], 3),
                         f"{r['identical_hits']}/{r['cues']}" if "identical_hits" in r else ""])
            if s is not first:
                run.add_ratio(f"{name} {args.part} p95 @ {r['records']:,}", s["p95"],
                              f"{next(iter(r['ms']))} p95", first["p95"], "ms")
    print_table(f"recall.{'rank' if args.part == 'rank' else 'core.dense.Cosines'}, ms, trees interleaved",
                ["records", "tree", "p50", "p95", "p99", "p50 ratio", "p95 ratio", "same hits"], rows)
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
