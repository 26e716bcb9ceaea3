"""bench.tune_recall: its figures are those of bench.locomo / bench.longmemeval
(pooled over questions, checked against their JSON), and the relevance floor
is chosen leave-one-fold-out. No model: the suite's hash embedder."""
from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # bench/ is a package at the repo root, not under src/
    sys.path.insert(0, str(REPO))

from bench import tune_floor
from bench import tune_recall as tr
from iai_mcp.embed import HashEmbedder
from iai_mcp.retrieval import DEFAULT_WEIGHTS

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def _store(fold: int, topics: list[str], questions: list[tuple[str, set[str]]]) -> tr.Store:
    turns = [(f"D1:{i}", text, 1, T0) for i, text in enumerate(topics)]
    qs = [(cue, evidence, {1}) for cue, evidence in questions]
    return tr._store("locomo", fold, turns, qs, lambda t: 1, asked=T0)


TOPICS = ["I adopted a grey cat named Miso", "We deploy with Jenkins on Fridays", "My sister lives in Lisbon",
          "The billing service runs on Postgres", "I bought a red bicycle for commuting",
          "Our standup is at half past nine", "I am learning to bake sourdough bread",
          "The dentist appointment is on Tuesday", "My favourite band is Radiohead",
          "We moved the office to the seventh floor", "I run five kilometres every morning",
          "The API rate limit is one hundred per minute"]


def _stores() -> list[tr.Store]:
    # Fold 0: three questions; fold 1: one, and missed (its evidence is a
    # turn the cue shares nothing with, under fifteen that match it). A mean over folds weighs the single
    # miss as much as the three others; bench.locomo pools questions.
    stores = [
        _store(0, TOPICS, [("what is the cat called", {"D1:0"}), ("where does my sister live", {"D1:2"}),
                           ("which band do I like", {"D1:8"})]),
        _store(1, TOPICS + [f"zebra quantum xylophone note {i}" for i in range(15)],
               [("zebra quantum xylophone", {"D1:5"})]),
        _store(2, TOPICS, [("the red bicycle", {"D1:4"}), ("sourdough bread", {"D1:6"})]),
    ]
    tr.embed(stores, HashEmbedder())
    return stores


def _indexes(stores: list[tr.Store]) -> dict:
    return {(n, "porter"): tr._index(s.texts, "porter") for n, s in enumerate(stores)}


def _per_question_r10(stores: list[tr.Store], indexes: dict, knobs: tr.Knobs) -> list[float]:
    out = []
    for n, s in enumerate(stores):
        index, _ = indexes[(n, "porter")]
        for (cue, evidence, _), vec in zip(s.questions, s.cues):
            top = tr.rank(s, index, cue, vec, knobs)
            out.append(len(evidence & {t for i in top for t in s.turns[i]}) / len(evidence))
    return out


def test_dataset_figures_are_pooled_over_questions_as_the_benchmarks_pool_them():
    stores = _stores()
    indexes = _indexes(stores)
    knobs = tr.Knobs(DEFAULT_WEIGHTS)
    per_question = _per_question_r10(stores, indexes, knobs)
    assert len(per_question) == 6 and len(set(per_question)) > 1  # unequal folds with different figures
    report = tr.leave_one_out(stores, indexes, knobs, ["dense"])
    assert report["default_by_dataset"]["locomo"]["turn_r@10"] == pytest.approx(np.mean(per_question), abs=1e-4)
    default = tr.evaluate(stores, knobs, indexes)
    assert [default[f]["questions"] for f in (0, 1, 2)] == [3, 1, 2]
    assert tr.pooled(default, (0, 1, 2), "turn_r@10") == pytest.approx(np.mean(per_question), abs=1e-4)


def _reference(tmp_path: Path, data: Path, ours: dict, bm25: dict, floor: float = 0.2) -> Path:
    for ds in tr.DATASETS:
        (tmp_path / f"{ds}.json").write_text(json.dumps({
            "config": {"data": str(data / ds)}, "floor": {"default": floor}, "machine": {"git_commit": "abc1234"},
            "systems": {"ours": ours, "ours_nofloor": ours, "bm25": bm25}}))
    return tmp_path


def test_reference_check_passes_on_equal_figures_and_fails_loudly_otherwise(tmp_path):
    stores = _stores()
    indexes = _indexes(stores)
    knobs = tr.Knobs(DEFAULT_WEIGHTS)
    default = tr.evaluate(stores, knobs, indexes)
    bm25 = tr.evaluate(stores, knobs, indexes, ranker=tr.bm25_rank)
    folds = tr.DATASETS["locomo"]
    ours = {m: tr.pooled(default, folds, m) for m in tr.METRICS}
    theirs_bm25 = {m: tr.pooled(bm25, folds, m) for m in tr.METRICS}
    data = {ds: tmp_path / ds for ds in tr.DATASETS}
    results = _reference(tmp_path, tmp_path, ours, theirs_bm25)
    # Only LoCoMo folds here: LongMemEval's reference has figures for no questions of ours.
    checks = tr.reference_check(default, bm25, None, {"locomo": data["locomo"], "longmemeval": tmp_path / "other"},
                                results)
    assert checks["locomo"]["ours_turn_r@10"]["tune_recall"] == ours["turn_r@10"]
    assert "skipped" in checks["longmemeval"]
    off = {**ours, "turn_r@10": round(ours["turn_r@10"] - 0.02, 4)}
    _reference(tmp_path, tmp_path, off, theirs_bm25)
    with pytest.raises(SystemExit, match="locomo ours turn_r@10"):
        tr.reference_check(default, bm25, None, {"locomo": data["locomo"], "longmemeval": tmp_path / "other"},
                           results)
    # A run under another floor than the reference's is not compared.
    skipped = tr.reference_check(default, bm25, 0.3, {"locomo": data["locomo"], "longmemeval": tmp_path / "x"},
                                 results)
    assert "skipped" in skipped["locomo"]


def test_floor_is_chosen_on_the_training_folds_and_scored_on_the_held_out_one():
    floors = tune_floor.FLOORS
    hi = floors.index(0.2)

    def fold(kept_until: int, r10: float, rejected_from: int) -> dict:
        # R@10 kept stays at r10 up to floors[kept_until], then halves; a negative is rejected from floors[rejected_from].
        return {f: ([r10 if i <= kept_until else r10 / 2], [i >= rejected_from]) for i, f in enumerate(floors)}

    folds = {n: fold(hi, 0.8, hi) for n in range(6)}
    folds[3] = fold(hi - 1, 0.9, hi)  # one LongMemEval fold loses recall from 0.2 on
    out = tune_floor.floor_leave_one_out(folds)["per_fold"]
    # Held out, fold 3 leaves the others at 0.2 and is scored there: its own loss shows.
    assert out["3"]["chosen_min_score"] == 0.2 and out["3"]["held_out_turn_r@10_kept"] == 0.45
    assert out["3"]["held_out_turn_r@10_lowest_floor"] == 0.9
    # Trained with fold 3, LongMemEval's pooled recall drops at 0.2: 0.15 is chosen, no negative rejected.
    assert out["0"]["chosen_min_score"] == 0.15 and out["0"]["held_out_negatives_rejected"] == 0.0
    assert out["0"]["held_out_turn_r@10_kept"] == 0.8
