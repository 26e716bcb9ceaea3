"""Leave-one-out tuning of recall's ranking knobs on both dev sets.

Rebuilds what ``core.recall.fused_scores`` computes (BM25 over the records,
cosines, ``retrieval.fuse`` over rows grouped by session) straight from the
datasets, with the real MiniLM vectors from the benchmarks' embedding cache
(``bench.recall_eval.CachedEmbedder``; run ``bench.locomo`` and
``bench.longmemeval`` first, or this embeds what is missing), so one knob
setting costs about a second instead of a benchmark run.

Six folds: the three LoCoMo conversations and LongMemEval's questions split
in three (by position). For each knob, one at a time with the others at
their defaults, each fold in turn is held out: the value with the best mean
turn R@10 over the other five folds is chosen and scored on the held-out
fold. Reported per dataset: the held-out turn R@10 of the chosen values
against the defaults', and the values each fold chose. Knobs are chosen by
turn R@10 on the training folds, except those meant for another figure
(``SELECT_BY``: session evidence by session R@5). Questions are asked at
their date (LongMemEval's ``question_date``; LoCoMo's, undated, after the
last session), so the time prior reads "last week" as ``bench.longmemeval``
and ``bench.locomo`` do. ``--min-score`` measures the knobs under the
relevance floor (with its keyword rescue, the knob ``rescue``); ``--floors``
the floor itself, per hit against a per-query gate, and chosen
leave-one-fold-out as ``MiniLMEmbedder.relevance_floor`` was.

Dataset figures are pooled over questions, as ``bench.locomo`` and
``bench.longmemeval`` pool them. The ranking here is a copy of recall's
wiring (``fuse`` with the same inputs, no store), so every full run checks
that on the defaults it gives those benchmarks' figures (``reference_check``:
ours and BM25, to 3 decimals, against their JSON in bench/results) and stops
if not. The JSON records the command, commit and machine as the other
benchmarks' do. ``--quick``: two sessions per LoCoMo conversation, three
LongMemEval questions with cut-down haystacks, two knobs; a smoke run.

    python -m bench.tune_recall --locomo DIR --longmemeval DIR [--min-score 0.2 | --floors] [--knobs when,rescue]
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import RESULTS_DIR, print_table
from bench.recall_eval import CachedEmbedder, K
from iai_mcp.retrieval.fusion import FLOOR_RESCUE

NAME = "tune_recall"
FOLDS_PER_LME = 3
#: ``--quick`` measures these knobs only (one weight, one non-weight).
QUICK_KNOBS = ("dense", "stemmer")
ROLE_CODES = {"user": 1, "assistant": 2}


@dataclass
class Store:
    """One dataset store: records (identical texts folded, as capture does)."""

    dataset: str
    fold: int
    texts: list[str]
    session: np.ndarray            # session code per record
    turns: list[list[Any]]         # turn ids per record
    session_of: Callable[[Any], Any]
    questions: list[tuple[str, set[Any], set[Any]]]  # (cue, evidence turns, evidence sessions)
    roles: np.ndarray | None = None  # per record: 1 user, 2 assistant, 0 unknown
    times: np.ndarray | None = None  # per record: when it was said, POSIX seconds
    asked: Any = None                # when the questions are asked (datetime)
    vectors: np.ndarray | None = None
    cues: np.ndarray | None = None


def _store(dataset: str, fold: int, turns: list[tuple[Any, str, Any, Any]], questions, session_of,
           roles: dict[Any, str] | None = None, asked: Any = None) -> Store:
    index: dict[str, int] = {}
    texts: list[str] = []
    sessions: list[Any] = []
    owners: list[list[Any]] = []
    times: list[float] = []
    for turn_id, text, session, said_at in turns:
        i = index.setdefault(text, len(texts))
        if i == len(texts):
            texts.append(text)
            sessions.append(session)
            owners.append([])
            times.append(said_at.timestamp())
        owners[i].append(turn_id)
    codes = {s: c for c, s in enumerate(dict.fromkeys(sessions))}
    row_roles = np.array([ROLE_CODES.get((roles or {}).get(o[0]), 0) for o in owners])
    return Store(dataset, fold, texts, np.array([codes[s] for s in sessions]), owners, session_of, questions,
                 roles=row_roles, times=np.array(times), asked=asked)


#: ``--quick``: LoCoMo sessions kept per conversation, LongMemEval questions
#: (one a fold) and haystack sessions kept besides the answer sessions.
QUICK_SESSIONS = 2
QUICK_QUESTIONS = 3
QUICK_HAYSTACK = 3


def load(locomo_dir: Path, lme_dir: Path, quick: bool = False) -> list[Store]:
    from bench.locomo import truncate
    from bench.locomo_data import load_conversations, session_of
    from bench.longmemeval import load_questions

    convs = load_conversations(locomo_dir)
    questions = [q for q in load_questions(lme_dir) if not q.abstention]
    if quick:  # a smoke run: every fold and code path, a few hundred turns
        convs = [truncate(c, QUICK_SESSIONS) for c in convs]
        questions = [replace(q, turns=[t for t in q.turns if t.id[0] in q.answer_sessions
                                       or t.id[0] in sorted(q.haystack_sessions)[:QUICK_HAYSTACK]])
                     for q in questions[:QUICK_QUESTIONS]]

    stores = [
        # LoCoMo gives no question dates: the questions are asked after the last session.
        _store("locomo", i, [(t.dia_id, t.text, t.session, t.said_at) for t in conv.turns],
               [(q.question, set(q.evidence), set(q.sessions)) for q in conv.questions], session_of,
               asked=max(t.said_at for t in conv.turns))
        for i, conv in enumerate(convs)
    ]
    stores += [
        _store("longmemeval", 3 + n % FOLDS_PER_LME, [(t.id, t.text, t.id[0], t.said_at) for t in q.turns],
               [(q.question, q.evidence, set(q.answer_sessions))], lambda t: t[0],
               {t.id: t.role for t in q.turns}, asked=q.asked_at)
        for n, q in enumerate(questions)
    ]
    return stores


def embed(stores: list[Store], embedder: Any) -> None:
    for s in stores:
        s.vectors = embedder.embed(s.texts)
        s.cues = embedder.embed([q[0] for q in s.questions])


@dataclass(frozen=True)
class Knobs:
    """The ranking's knobs: ``retrieval.FusionWeights`` plus candidates."""

    weights: Any
    #: Share of its session's mean positive fused score a row inherits (two-stage: session, then turn).
    session_mean: float = 0.0
    #: Share of its session's evidence (``session_evidence``) a candidate row inherits.
    session: float = 0.0
    stemmer: str = "porter"
    #: Pseudo-relevance feedback: weight of a second BM25 pass with the rarest
    #: terms of the first pass's top hits (0: off).
    prf: float = 0.0
    prf_docs: int = 3
    prf_terms: int = 8
    #: The floor's rescue (``retrieval.fusion.floor_mask``): with the store
    #: above the floor, rows below it still pass with keyword support
    #: (normalised BM25) at least this (None: a plain per-hit floor).
    rescue: float | None = FLOOR_RESCUE
    #: The relevance floor the ranking is measured with (None: none).
    floor: float | None = None


def _index(texts: list[str], stemmer: str):
    from iai_mcp.retrieval import KeywordIndex
    from iai_mcp.retrieval import text as text_mod

    original = text_mod.stem
    if stemmer == "snowball":
        import Stemmer  # PyStemmer

        snow = Stemmer.Stemmer("english")
        text_mod.stem = snow.stemWord
    try:
        index = KeywordIndex()
        for i, t in enumerate(texts):
            index.add(i, t)
        # Queries are tokenised at scoring time: keep the stemmer for them.
        return index, (snow.stemWord if stemmer == "snowball" else original)
    finally:
        text_mod.stem = original


def session_mean(scores: np.ndarray, grouped: np.ndarray) -> np.ndarray:
    """Per row, the mean positive score of its session (rows grouped by session)."""
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    pos = np.maximum(scores, 0)
    sums = np.add.reduceat(pos, starts)
    counts = np.diff(np.r_[starts, len(scores)])
    return np.repeat(sums / counts, counts)


#: Session evidence (knob "session"): candidates summed over, turns per session summed.
SESSION_HEAD = 200
SESSION_TOP = 3


def session_evidence(scores: np.ndarray, session: np.ndarray, head: int = SESSION_HEAD,
                     top: int = SESSION_TOP) -> np.ndarray:
    """Per row, the sum of the ``top`` best positive scores of its session
    among the ``head`` best rows (0 for rows outside them): a session holding
    several good hits is likelier the one asked about than one lucky turn.
    Candidates only, so it would cost the same at 100k rows as at 1k."""
    from iai_mcp.retrieval import top_k

    bonus = np.zeros(len(scores), dtype=np.float32)
    cand = top_k(scores, head)  # best first
    if cand.size == 0:
        return bonus
    value = np.maximum(scores[cand], 0).astype(np.float32)
    _, group = np.unique(session[cand], return_inverse=True)
    order = np.argsort(group, kind="stable")  # by session, best first within each
    grouped = group[order]
    starts = np.flatnonzero(np.r_[True, grouped[1:] != grouped[:-1]])
    place = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    sums = np.bincount(grouped, weights=np.where(place < top, value[order], 0), minlength=grouped.max() + 1)
    bonus[cand] = sums[group]
    return bonus


def expansion(index: Any, texts: list[str], cue: str, n_terms: int) -> str:
    """The ``n_terms`` terms of ``texts`` with the best tf x idf that the cue lacks."""
    from iai_mcp.retrieval.text import tokenize

    have = set(tokenize(cue))
    n = len(index)
    weight: dict[str, float] = {}
    for text in texts:
        for term in tokenize(text):
            tid = index._terms.get(term)
            if term in have or tid is None:
                continue
            df = len(index._docs[tid])
            weight[term] = weight.get(term, 0.0) + float(np.log(1 + n / df))
    return " ".join(sorted(weight, key=weight.get, reverse=True)[:n_terms])


def rank(store: Store, index: Any, cue: str, cue_vec: np.ndarray, knobs: Knobs, floor: float | None = None) -> np.ndarray:
    from iai_mcp.retrieval import fuse, top_k
    from iai_mcp.retrieval.fusion import floor_mask
    from iai_mcp.retrieval.person import cue_role
    from iai_mcp.retrieval.when import time_window, window_match

    dense = store.vectors @ cue_vec
    keyword = index.scores(cue)
    label = index.label_match(cue)
    order = np.argsort(store.session, kind="stable")
    grouped = store.session[order]
    want = cue_role(cue)
    role = None if want is None else (store.roles == ROLE_CODES[want])[order]
    window = time_window(cue, store.asked) if store.asked is not None and knobs.weights.when else None
    when = None if window is None else window_match(store.times, window)[order]
    fused = fuse(dense[order], keyword[order], grouped, label=label[order], role=role, when=when,
                 weights=knobs.weights)
    if knobs.prf:
        first = order[top_k(fused, knobs.prf_docs)]
        extra = expansion(index, [store.texts[i] for i in first], cue, knobs.prf_terms)
        if extra:
            keyword = keyword + knobs.prf * index.scores(extra)
            fused = fuse(dense[order], keyword[order], grouped, label=label[order], role=role, when=when,
                         weights=knobs.weights)
    if knobs.session_mean:
        fused = fused + knobs.session_mean * session_mean(fused, grouped)
    if knobs.session:
        fused = fused + knobs.session * session_evidence(fused, grouped)
    out = np.empty_like(fused)
    out[order] = fused
    floor = knobs.floor if floor is None else floor
    if floor is not None:  # per hit: rows below the floor never rank
        passes = floor_mask(dense, keyword, floor, rescue=knobs.rescue)
        out = np.where(passes, out, -np.inf).astype(np.float32)
        return top_k(out, K)[: int(np.count_nonzero(np.isfinite(out)))]
    return top_k(out, K)


METRICS = ("turn_r@10", "turn_r@1", "session_r@5")


def pooled(per_fold: dict[int, dict[str, float]], folds: tuple[int, ...], metric: str) -> float:
    """Mean over the questions of ``folds`` (not over folds: LoCoMo's
    conversations hold 81 to 152 questions, and ``bench.locomo`` pools them)."""
    have = [f for f in folds if f in per_fold]
    n = sum(per_fold[f]["questions"] for f in have)
    return round(sum(per_fold[f][metric] * per_fold[f]["questions"] for f in have) / n, 4) if n else 0.0


def bm25_rank(store: Store, index: Any, cue: str, cue_vec: np.ndarray, knobs: Knobs) -> np.ndarray:
    """The baseline: BM25 alone (``KeywordIndex()`` defaults, as ``bench.locomo``'s)."""
    from iai_mcp.retrieval import top_k

    return top_k(index.scores(cue), K)


def evaluate(stores: list[Store], knobs: Knobs, indexes: dict[tuple[int, str], Any],
             ranker: Callable[..., np.ndarray] = rank) -> dict[int, dict[str, float]]:
    """Per fold: mean turn R@10, turn R@1 and session R@5, and its question count."""
    from iai_mcp.retrieval import text as text_mod

    per_fold: dict[int, list[tuple[float, float, float]]] = {}
    for n, s in enumerate(stores):
        index, stem = indexes[(n, knobs.stemmer)]
        original = text_mod.stem
        text_mod.stem = stem
        try:
            for (cue, evidence, sessions), vec in zip(s.questions, s.cues):
                top = ranker(s, index, cue, vec, knobs)
                got = [set(s.turns[i]) for i in top]
                r10 = len(evidence & set().union(*got)) / len(evidence) if got else 0.0
                r1 = len(evidence & got[0]) / len(evidence) if got else 0.0
                seen: list[Any] = []
                for turns in got:
                    for t in turns:
                        if s.session_of(t) not in seen:
                            seen.append(s.session_of(t))
                s5 = len(sessions & set(seen[:5])) / len(sessions)
                per_fold.setdefault(s.fold, []).append((r10, r1, s5))
        finally:
            text_mod.stem = original
    # Unrounded: pooled() weighs folds by their questions and must equal a pooled mean.
    return {f: {**dict(zip(METRICS, np.mean(v, axis=0).tolist())), "questions": len(v)}
            for f, v in sorted(per_fold.items())}


def knob_grid() -> dict[str, list[Callable[[Knobs], Knobs]]]:
    def w(**kw: float) -> Callable[[Knobs], Knobs]:
        return lambda k: replace(k, weights=replace(k.weights, **kw))

    return {
        "dense": [(v, w(dense=v)) for v in (0.4, 0.6, 0.8, 1.0, 1.3)],
        "neighbour": [(v, w(neighbour=v)) for v in (0.0, 0.25, 0.5, 0.75)],
        "window_weight": [(v, w(window_weight=v)) for v in (0.0, 0.1, 0.2, 0.4)],
        "label": [(v, w(label=v)) for v in (0.0, 0.3, 0.6)],
        "session_mean": [(v, lambda k, v=v: replace(k, session_mean=v)) for v in (0.0, 0.2, 0.4, 0.8)],
        "session": [(v, lambda k, v=v: replace(k, session=v)) for v in (0.0, 0.05, 0.1, 0.2, 0.4)],
        "when": [(v, w(when=v)) for v in (0.0, 0.2, 0.4, 0.8, 1.2, 1.6)],
        "stemmer": [(v, lambda k, v=v: replace(k, stemmer=v)) for v in ("porter", "snowball")],
        "prf": [(v, lambda k, v=v: replace(k, prf=v)) for v in (0.0, 0.15, 0.3, 0.5)],
        "role": [(v, w(role=v)) for v in (0.0, 0.2, 0.3, 0.5, 0.8, 1.2)],
        "rescue": [(v, lambda k, v=v: replace(k, rescue=v)) for v in (None, 0.3, 0.5, 0.7, 0.9)],
    }


#: The metric a knob is chosen by on the training folds, when not turn R@10:
#: session evidence is meant for session-level recall.
SELECT_BY = {"session": "session_r@5"}


DATASETS = {"locomo": (0, 1, 2), "longmemeval": (3, 4, 5)}


def _rounded(per_fold: dict[int, dict[str, float]]) -> dict[int, dict[str, float]]:
    return {f: {m: round(v, 4) for m, v in r.items()} for f, r in per_fold.items()}


def leave_one_out(stores: list[Store], indexes: dict, base: Knobs, knobs: list[str] | None = None,
                  default: dict[int, dict[str, float]] | None = None) -> dict[str, Any]:
    default = default or evaluate(stores, base, indexes)
    report: dict[str, Any] = {"default": _rounded(default)}
    for name, values in knob_grid().items():
        if knobs and name not in knobs:
            continue
        results = {value: evaluate(stores, make(base), indexes) for value, make in values}
        chosen, held = {}, {}
        for fold in default:
            metric = SELECT_BY.get(name, "turn_r@10")
            train = {v: pooled(r, tuple(f for f in r if f != fold), metric) for v, r in results.items()}
            best = max(train, key=lambda v: (train[v], -abs(list(train).index(v))))
            chosen[fold] = best
            held[fold] = results[best][fold]
        report[name] = {
            "grid": {str(v): _rounded(r) for v, r in results.items()},
            "chosen_per_fold": {str(f): v for f, v in chosen.items()},
            "held_out": {ds: {m: pooled(held, folds, m) for m in METRICS} for ds, folds in DATASETS.items()},
        }
        print(f"{name}: chosen {chosen}", flush=True)
    report["default_by_dataset"] = {ds: {m: pooled(default, folds, m) for m in METRICS}
                                    for ds, folds in DATASETS.items()}
    return report


#: What ``bench.locomo`` / ``bench.longmemeval`` call the same ranking.
REFERENCE_SYSTEM = {None: "ours_nofloor"}


def reference_check(default: dict[int, dict[str, float]], bm25: dict[int, dict[str, float]],
                    min_score: float | None, data: dict[str, Path], results: Path) -> dict[str, Any]:
    """This module ranks with its own copy of recall's wiring (no store: one
    knob setting a second), so on the defaults its figures must be those of
    ``bench.locomo`` / ``bench.longmemeval`` (through ``dispatch``) on the
    same data: turn R@10, turn R@1 and session R@5 of ours and of BM25 equal
    to 3 decimals, or SystemExit.
    A reference run on other data or another floor is skipped and said so."""
    checks: dict[str, Any] = {}
    wrong = []
    for ds, folds in DATASETS.items():
        path = results / f"{ds}.json"
        if not path.is_file():
            checks[ds] = {"skipped": f"no {path}"}
            continue
        ref = json.loads(path.read_text())
        ref_floor = ref.get("config", {}).get("min_score", ref.get("floor", {}).get("default"))
        system = REFERENCE_SYSTEM.get(min_score, "ours" if min_score == ref_floor else None)
        if Path(ref["config"]["data"]).resolve() != data[ds].resolve() or system is None:
            checks[ds] = {"skipped": f"{path} is of other data or another floor"}
            continue
        check = {"reference": str(path), "reference_commit": ref["machine"].get("git_commit"), "system": system}
        for label, figures, theirs in (("ours", default, ref["systems"][system]), ("bm25", bm25, ref["systems"]["bm25"])):
            for metric in METRICS:
                ours = pooled(figures, folds, metric)
                check[f"{label}_{metric}"] = {"tune_recall": ours, f"bench.{ds}": theirs[metric]}
                if abs(ours - theirs[metric]) >= 0.0005:  # equal to 3 decimals
                    wrong.append(f"{ds} {label} {metric}: tune_recall {ours} vs bench.{ds} {theirs[metric]}")
        checks[ds] = check
    if wrong:
        raise SystemExit("tune_recall no longer ranks as recall does (or the reference is stale: rerun "
                         "bench.locomo / bench.longmemeval): " + "; ".join(wrong))
    return checks


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from bench.common import DEFAULT_LOCOMO_DIR, Run, base_parser
    from bench.longmemeval import DEFAULT_DATA_DIR
    from iai_mcp.embed import MiniLMEmbedder
    from iai_mcp.retrieval import DEFAULT_WEIGHTS

    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--locomo", type=Path, default=DEFAULT_LOCOMO_DIR)
    parser.add_argument("--longmemeval", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--floors", action="store_true",
                        help="instead of the knobs: the relevance floor, per hit and per query, on negatives")
    parser.add_argument("--min-score", type=float, default=None,
                        help="measure the knobs with this relevance floor (writes tune_recall_min_score.json)")
    parser.add_argument("--knobs", default=None,
                        help=f"comma-separated knobs to measure (default: all; {','.join(QUICK_KNOBS)} with --quick)")
    args = parser.parse_args(argv)
    stores = load(args.locomo, args.longmemeval, quick=args.quick)
    embedder = CachedEmbedder(MiniLMEmbedder(), args.cache_dir)
    try:
        embed(stores, embedder)
    finally:
        embedder.save()
    indexes = {(n, stemmer): _index(s.texts, stemmer)
               for n, s in enumerate(stores) for stemmer in ("porter", "snowball")}
    run = Run(NAME, args)
    base = Knobs(DEFAULT_WEIGHTS, floor=args.min_score)
    default = evaluate(stores, base, indexes)
    bm25 = evaluate(stores, base, indexes, ranker=bm25_rank)
    run.data["config"] = {"locomo": str(args.locomo), "longmemeval": str(args.longmemeval),
                          "min_score": args.min_score, "embedder": embedder.name, "k": K,
                          "questions": {ds: sum(default[f]["questions"] for f in folds if f in default)
                                        for ds, folds in DATASETS.items()}}
    if not args.quick:  # --quick runs on cut-down data no reference run has seen
        run.data["reference_check"] = reference_check(
            default, bm25, args.min_score, {"locomo": args.locomo, "longmemeval": args.longmemeval}, RESULTS_DIR)
    for ds, folds in DATASETS.items():
        run.add_ratio(f"{ds} turn R@10, defaults", pooled(default, folds, "turn_r@10"),
                      "BM25 alone", pooled(bm25, folds, "turn_r@10"))
    if args.floors:
        from bench.tune_floor import FLOORS, floor_modes

        report = floor_modes(stores, Knobs(DEFAULT_WEIGHTS), indexes)
        for ds in DATASETS:
            r = report[ds]
            print_table(f"{ds}: relevance floor ({r['negatives']} negatives)",
                        ["min_score", "per-hit R@10", "per-query R@10", "negatives rejected"],
                        [[f["min_score"], f["per_hit_turn_r@10"], f["per_query_turn_r@10"], f["negatives_rejected"]]
                         for f in r["floors"]])
        print_table("Floor chosen on the other folds (" + report["leave_one_out"]["criterion"] + ")",
                    ["held-out fold", "min_score", "R@10 kept", f"R@10 at {FLOORS[0]}", "negatives rejected"],
                    [[f, r["chosen_min_score"], r["held_out_turn_r@10_kept"], r["held_out_turn_r@10_lowest_floor"],
                      r["held_out_negatives_rejected"]] for f, r in report["leave_one_out"]["per_fold"].items()])
        run.data.update(report)
        run.filename = "tune_recall_floor"
        run.finish()
        return run.data
    wanted = args.knobs.split(",") if args.knobs else (list(QUICK_KNOBS) if args.quick else list(knob_grid()))
    run.data["config"]["knobs"] = wanted
    report = leave_one_out(stores, indexes, base, wanted, default)
    report["min_score"] = args.min_score
    rows = [["defaults", *(report["default_by_dataset"][ds]["turn_r@10"] for ds in DATASETS), "-"]]
    for name in knob_grid():
        if name not in report:
            continue
        rows.append([name, *(report[name]["held_out"][ds]["turn_r@10"] for ds in DATASETS),
                     ", ".join(str(v) for v in report[name]["chosen_per_fold"].values())])
    print_table("Held-out turn R@10 (leave one fold out, one knob at a time)",
                ["knob", "LoCoMo", "LongMemEval", "chosen per fold (L0 L1 L2 M0 M1 M2)"], rows)
    run.data.update(report)
    run.filename = NAME if args.min_score is None else f"{NAME}_min_score"
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
