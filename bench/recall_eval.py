"""What the retrieval-quality benchmarks share: scoring a ranked list, the
relevance-floor sweep, negatives, and an embedding cache.

``bench.locomo`` and ``bench.longmemeval`` follow one protocol: a fresh store
per conversation (or question), every turn captured through ``dispatch``,
each question recalled with ``k=10`` and a budget that never cuts, and BM25
and dense-only rankings of the same records in the same run.

The relevance floor (``memory_recall``'s ``min_score``) is calibrated here
with *negatives*: questions asked against a store that does not hold their
answer (another conversation's, another question's haystack). For each floor
the sweep gives the turn R@10 the positives keep (hits below the floor
dropped, nothing promoted in their place: a lower bound) and the share of
negatives whose every hit falls below it (the recall says "nothing relevant").
"""
from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

K = 10
KS = tuple(range(1, K + 1))
#: The rankings each benchmark compares: ours (with its relevance floor and
#: without), BM25 and dense-only over the same records.
SYSTEMS = ("ours", "ours_nofloor", "bm25", "dense")
#: Floors the sweep reports (cosine, MiniLM).
FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4)


def score(ranked: Sequence[Sequence[Hashable]], evidence: set[Hashable], wanted_sessions: set[Hashable],
          session_of: Callable[[Hashable], Hashable]) -> dict[str, float]:
    """Turn R@k, MRR and session R@k of one ranked list of records (each a
    list of turn ids). Session R@k counts the first k distinct sessions of
    the hit list, in order of first appearance."""
    out: dict[str, float] = {}
    seen: set[Hashable] = set()
    first = 0.0
    for rank, turns in enumerate(ranked[:K], start=1):
        seen.update(turns)
        if not first and evidence & set(turns):
            first = 1.0 / rank
        out[f"turn_r@{rank}"] = len(evidence & seen) / len(evidence)
    sessions: list[Hashable] = []
    for turns in ranked[:K]:
        for turn in turns:
            s = session_of(turn)
            if s not in sessions:
                sessions.append(s)
    for k in KS:
        out.setdefault(f"turn_r@{k}", out.get(f"turn_r@{k - 1}", 0.0))
        out[f"session_r@{k}"] = len(wanted_sessions & set(sessions[:k])) / len(wanted_sessions)
    out["mrr"] = first
    return out


def average(rows: list[dict[str, Any]], system: str) -> dict[str, float]:
    keys = rows[0][system].keys()
    return {key: round(float(np.mean([r[system][key] for r in rows])), 4) for key in keys}


def by_group(groups: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Turn R@10 of every system per group of questions (LoCoMo's category,
    LongMemEval's type), with the group's size; empty groups left out."""
    return {name: {"questions": len(rows), **{s: average(rows, s)["turn_r@10"] for s in SYSTEMS}}
            for name, rows in groups.items() if rows}


def rejected_share(outcomes: list[dict[str, Any]]) -> float | None:
    """Share of negatives (or abstentions) whose recall came back empty."""
    return round(float(np.mean([o["rejected"] for o in outcomes])), 4) if outcomes else None


def floor_report(systems: dict[str, dict[str, float]], traces: list[dict[str, Any]],
                 negatives: list[dict[str, Any]], default: float | None) -> dict[str, Any]:
    """The ``floor`` section of a benchmark's JSON: the default floor, what it
    costs in turn R@10, how many negatives it empties, and the sweep."""
    return {
        "default": default,
        "negatives": len(negatives),
        "negatives_rejected": rejected_share(negatives),
        "turn_r@10_cost": round(systems["ours_nofloor"]["turn_r@10"] - systems["ours"]["turn_r@10"], 4),
        "sweep": floor_sweep(traces, [n["best_cosine"] for n in negatives]),
    }


def report(run: Any, title: str, systems: dict[str, dict[str, float]], group_label: str,
           groups: dict[str, dict[str, Any]], ratio_metrics: Sequence[str]) -> None:
    """Print the tables both benchmarks print (systems, turn R@10 per group,
    the floor sweep) and record the ratios to BM25 and dense and the target."""
    from bench.common import print_table

    metrics = ["turn_r@1", "turn_r@5", "turn_r@10", "mrr", "session_r@1", "session_r@5", "session_r@10"]
    print_table(title, ["system", *metrics], [[name, *(systems[name][m] for m in metrics)] for name in SYSTEMS])
    print_table(f"Turn R@10 by {group_label}", [group_label, "questions", *SYSTEMS],
                [[group, v["questions"], *(v[s] for s in SYSTEMS)] for group, v in groups.items()])
    print_table("Relevance floor sweep (cosine; R@10 kept is a lower bound)",
                ["min_score", "turn R@10 kept", "negatives rejected"],
                [[s["min_score"], s["turn_r@10_kept"], s["negatives_rejected"]] for s in run.data["floor"]["sweep"]])
    for metric in ratio_metrics:
        for base in ("bm25", "dense"):
            run.add_ratio(f"ours {metric}", systems["ours"][metric], f"{base} {metric}", systems[base][metric])
    run.add_target("turn R@10: ours minus BM25 on the same run",
                   round(systems["ours"]["turn_r@10"] - systems["bm25"]["turn_r@10"], 4), 0, op=">")


def capture_turns(store: Any, turns: Iterable[tuple[dict[str, Any], Hashable]]) -> tuple[dict[str, list], float]:
    """Each ``(memory_capture params, turn id)`` captured through ``dispatch``:
    ``(the turn ids each record holds, seconds taken)``. Identical turns fold
    into one record, so a record may hold several."""
    from bench.common import clock_ms
    from iai_mcp.core import dispatch

    turns_of: dict[str, list] = defaultdict(list)
    start = clock_ms()
    for params, turn_id in turns:
        turns_of[dispatch(store, "memory_capture", params)["record_id"]].append(turn_id)
    return turns_of, (clock_ms() - start) / 1000


class Baselines:
    """The compared rankings that are not ours, over a store's records once
    its turns are captured: BM25 over their texts and the embedder's cosines."""

    def __init__(self, store: Any, turns_of: dict[str, list], embedder: Any) -> None:
        from iai_mcp import retrieval

        self.rows = store.rows()
        self.index_of = {str(row.id): i for i, row in enumerate(self.rows)}
        self.row_turns = [turns_of[str(row.id)] for row in self.rows]
        self._matrix, self._norms = store.vectors()
        self._keyword = retrieval.KeywordIndex()
        for i, row in enumerate(self.rows):
            self._keyword.add(i, row.literal_surface)
        self._embedder = embedder

    def cosines(self, cue: str) -> np.ndarray:
        """Every record's cosine to ``cue`` (dense-only retrieval)."""
        return (self._matrix @ self._embedder.embed([cue])[0]) / np.maximum(self._norms, 1e-12)

    def ranked(self, cue: str, dense: np.ndarray) -> dict[str, list]:
        """The BM25 and dense top ``K``, each record as the turn ids it holds
        (``dense``: ``cosines(cue)``, which the caller also traces)."""
        bm25 = self._keyword.scores(cue)
        return {"bm25": [self.row_turns[i] for i in np.argsort(-bm25, kind="stable")[:K]],
                "dense": [self.row_turns[i] for i in np.argsort(-dense, kind="stable")[:K]]}


def positive_trace(hits: list[dict[str, Any]], cosine: Callable[[str], float],
                   turns_of: Callable[[str], list[Hashable]], evidence: set[Hashable]) -> dict[str, Any]:
    """What the floor sweep needs of one positive question: each unfloored
    hit's cosine and the evidence turns it holds."""
    return {"evidence": len(evidence),
            "hits": [[round(cosine(h["record_id"]), 4), len(evidence & set(turns_of(h["record_id"])))]
                     for h in hits]}


def negative_trace(hits: list[dict[str, Any]], cosine: Callable[[str], float]) -> float:
    """The best cosine among a negative's unfloored hits (-1 when none)."""
    return max((cosine(h["record_id"]) for h in hits), default=-1.0)


def floor_sweep(positives: list[dict[str, Any]], negatives: list[float]) -> list[dict[str, float]]:
    """Per floor: positives' turn R@10 keeping only hits at or above it, and
    the share of negatives rejected (best hit below it)."""
    out = []
    for floor in FLOORS:
        kept = [sum(n for cos, n in p["hits"] if cos >= floor) / p["evidence"] for p in positives]
        rejected = [best < floor for best in negatives]
        out.append({"min_score": floor,
                    "turn_r@10_kept": round(float(np.mean(kept)), 4) if kept else None,
                    "negatives_rejected": round(float(np.mean(rejected)), 4) if rejected else None})
    return out


class CachedEmbedder:
    """The real embedder behind a vector cache on disk, so a second run of a
    benchmark embeds only texts it has not seen; the vectors are the model's."""

    def __init__(self, inner: Any, cache_dir: Path) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.relevance_floor = getattr(inner, "relevance_floor", None)
        self.path = Path(cache_dir) / f"vectors-{hashlib.sha1(inner.name.encode()).hexdigest()[:12]}.npz"
        self._cache: dict[bytes, np.ndarray] = {}
        self._added = 0
        if self.path.exists():
            data = np.load(self.path)
            self._cache = dict(zip((bytes(k) for k in data["keys"]), data["vectors"]))

    @staticmethod
    def _key(text: str) -> bytes:
        return hashlib.sha1(text.encode("utf-8")).digest()

    def warmup(self) -> None:
        self.inner.warmup()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        keys = [self._key(t) for t in texts]
        missing = [i for i, k in enumerate(keys) if k not in self._cache]
        if missing:
            fresh = self.inner.embed([texts[i] for i in missing])
            for i, vec in zip(missing, fresh):
                self._cache[keys[i]] = np.asarray(vec, dtype=np.float32)
            self._added += len(missing)
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, self.dim), np.float32)

    def save(self) -> None:
        if not self._added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = list(self._cache)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        np.savez(tmp, keys=np.array(keys, dtype="S20"), vectors=np.stack([self._cache[k] for k in keys]))
        tmp.replace(self.path)
