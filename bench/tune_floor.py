"""The relevance floor for ``bench.tune_recall --floors``: per hit against a
per-query gate on negatives, and ``min_score`` chosen leave-one-fold-out.

Negatives are questions whose answer the store does not hold (as
``bench.locomo`` and ``bench.longmemeval`` pick them). The floor is chosen on
the training folds as ``MiniLMEmbedder.relevance_floor`` was chosen on all
the dev data (the highest floor that costs no recall on either dataset) and
scored on the held-out fold: R@10 kept and negatives left with no hit.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from bench.tune_recall import DATASETS, Knobs, Store, rank

FLOORS = (0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3)


def _negatives(n: int, stores: list[Store]) -> list[tuple[str, np.ndarray]]:
    """Questions whose answer store ``n`` does not hold: LoCoMo, every other
    conversation's; LongMemEval, the next question whose answer sessions are
    not in this haystack (as ``bench.longmemeval``)."""
    here = stores[n]
    if here.dataset == "locomo":
        return [(q[0], v) for s in stores if s.dataset == "locomo" and s is not here
                for q, v in zip(s.questions, s.cues)]
    sessions = {here.session_of(t) for turns in here.turns for t in turns}
    for step in range(1, len(stores)):
        other = stores[(n + step) % len(stores)]
        if other.dataset == here.dataset and not (other.questions[0][2] & sessions):
            return [(other.questions[0][0], other.cues[0])]
    return []


def floor_modes(stores: list[Store], knobs: Knobs, indexes: dict) -> dict[str, Any]:
    """Per dataset and floor: turn R@10 kept by positives and share of
    negatives rejected, for a per-hit floor (rows below it never rank) and a
    per-query gate (nothing when the best of the top 10 is below it); then
    the per-hit floor chosen leave-one-fold-out (``floor_leave_one_out``)."""
    out: dict[str, Any] = {}
    # Per fold: per floor, (R@10 kept per positive question, rejected per negative).
    folds: dict[int, dict[float, tuple[list[float], list[bool]]]] = {}
    for ds in DATASETS:
        pos_hit = {f: [] for f in FLOORS}
        pos_gate = {f: [] for f in FLOORS}
        neg_best: list[float] = []
        for n, s in enumerate(stores):
            if s.dataset != ds:
                continue
            fold = folds.setdefault(s.fold, {f: ([], []) for f in FLOORS})
            index, _ = indexes[(n, knobs.stemmer)]
            for (cue, evidence, _), vec in zip(s.questions, s.cues):
                top = rank(s, index, cue, vec, knobs)
                best = float(max((s.vectors[i] @ vec for i in top), default=-1))
                found = len(evidence & {t for i in top for t in s.turns[i]}) / len(evidence)
                for f in FLOORS:
                    kept = rank(s, index, cue, vec, knobs, floor=f)
                    pos_hit[f].append(len(evidence & {t for i in kept for t in s.turns[i]}) / len(evidence))
                    pos_gate[f].append(found if best >= f else 0.0)
                    fold[f][0].append(pos_hit[f][-1])
            for cue, vec in _negatives(n, stores):
                top = rank(s, index, cue, vec, knobs)
                neg_best.append(float(max((s.vectors[i] @ vec for i in top), default=-1)))
                for f in FLOORS:  # as recall applies it: rejected when no hit clears the floor
                    fold[f][1].append(rank(s, index, cue, vec, knobs, floor=f).size == 0)
        out[ds] = {"negatives": len(neg_best), "floors": [
            {"min_score": f, "per_hit_turn_r@10": round(float(np.mean(pos_hit[f])), 4),
             "per_query_turn_r@10": round(float(np.mean(pos_gate[f])), 4),
             "negatives_rejected": round(float(np.mean([b < f for b in neg_best])), 4)}
            for f in FLOORS]}
    out["leave_one_out"] = floor_leave_one_out(folds)
    return out


#: A floor "costs no recall" when its R@10 kept is within this of no floor's
#: (the rounding of the figures it is judged on).
FLOOR_TOLERANCE = 0.0005


def floor_leave_one_out(folds: dict[int, dict[float, tuple[list[float], list[bool]]]]) -> dict[str, Any]:
    """For each held-out fold, the floor picked on the other five as
    ``MiniLMEmbedder.relevance_floor`` was picked on all six: the highest
    floor that costs no recall on either dataset (R@10 kept, pooled over
    each dataset's training questions, within ``FLOOR_TOLERANCE`` of the
    lowest floor's); then its R@10 kept and share of negatives rejected
    (no hit at all, as recall applies the floor) on the held-out fold."""
    def mean(values: list) -> float | None:
        return round(float(np.mean(values)), 4) if values else None

    per_fold = {}
    for held in sorted(folds):
        train = [[g for g in ds_folds if g != held and g in folds] for ds_folds in DATASETS.values()]
        kept_by = [{f: float(np.mean([r for g in gs for r in folds[g][f][0]])) for f in FLOORS} for gs in train if gs]
        chosen = max(f for f in FLOORS if all(k[f] >= k[FLOORS[0]] - FLOOR_TOLERANCE for k in kept_by))
        kept, rejected = folds[held][chosen]
        per_fold[str(held)] = {"chosen_min_score": chosen,
                               "held_out_turn_r@10_kept": mean(kept),
                               "held_out_turn_r@10_lowest_floor": mean(folds[held][FLOORS[0]][0]),
                               "held_out_negatives": len(rejected),
                               "held_out_negatives_rejected": mean(rejected)}
    return {"criterion": f"highest floor whose training R@10 kept is within {FLOOR_TOLERANCE} of the "
                         f"lowest floor's ({FLOORS[0]}) on each dataset's training folds",
            "per_fold": per_fold}
