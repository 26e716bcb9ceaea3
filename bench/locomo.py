"""Retrieval quality on LoCoMo: our recall against BM25-only and dense-only.

Protocol (shared/data/locomo/README.md): each conversation gets its own store;
every turn is captured through ``dispatch("memory_capture")`` as
``"Speaker: text"`` (+ ``" [shares a photo: caption]"``) with the session's
date as ``ts``; every question of categories 1-4 with evidence is a cue.

Three systems rank the same records in the same run:

* ours: ``dispatch("memory_recall", {"cue", "k": 10, "budget_tokens": 100000})``
  (the budget never truncates ten turns);
* bm25: ``retrieval.KeywordIndex()`` (default parameters) over the records' text;
* dense: cosine between the question's MiniLM vector and ``store.vectors()``.

Turn-level recall@k: share of a question's evidence turns among the turns of
the top k records; MRR: 1/rank of the first record holding an evidence turn
(0 beyond 10). Session-level recall@k: share of the evidence's sessions among
the first k distinct sessions of the hit list, in order of first appearance.
Scores are averaged over questions (all conversations pooled). ``ours_nofloor``
is ours with ``min_score=-1``; the floor's negatives are every other
conversation's questions asked against this conversation's store
(``bench.recall_eval``). A turn whose
text is identical to an earlier one is folded into that record by capture; the
record then stands for both turns.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from bench.common import (
    DEFAULT_LOCOMO_DIR,
    Run,
    base_parser,
    clock_ms,
    isolate_key_material,
    summarize,
)
from bench.locomo_data import (
    CATEGORIES,
    Conversation,
    Question,
    load_conversations,
    session_of,
)
from bench.recall_eval import (
    SYSTEMS,
    Baselines,
    CachedEmbedder,
    K,
    average,
    by_group,
    capture_turns,
    floor_report,
    negative_trace,
    positive_trace,
    report,
    score,
)

NAME = "locomo"


def score_question(ranked_turns: list[list[str]], question: Question) -> dict[str, float]:
    """Turn R@k, MRR and session R@k of one ranked list of records (each a list of dia ids)."""
    return score(ranked_turns, set(question.evidence), set(question.sessions), session_of)


def evaluate(conv: Conversation, embedder, scratch: Path, negatives: list[Question] = ()) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.core.limits import MAX_BUDGET_TOKENS

    store = backend.open_store(scratch / conv.name)
    try:
        store.bind_embedder(embedder)
        turns_of, capture_s = capture_turns(store, (
            ({"text": turn.text, "session_id": f"{conv.name}:session_{turn.session}",
              "ts": turn.said_at.isoformat()}, turn.dia_id) for turn in conv.turns))
        base = Baselines(store, turns_of, embedder)

        # LoCoMo dates no question: they are asked after the last session
        # (memory_recall's ``now``), so "last year" is read against it.
        asked = max(turn.said_at for turn in conv.turns).isoformat()

        def recall(cue: str, **extra: Any) -> list[dict[str, Any]]:
            return dispatch(store, "memory_recall", {"cue": cue, "k": K, "budget_tokens": MAX_BUDGET_TOKENS,
                                                     "now": asked, **extra})["hits"]

        per_question = []
        recall_ms = []
        for q in conv.questions:
            start = clock_ms()
            hits = recall(q.question)
            recall_ms.append(clock_ms() - start)
            raw = recall(q.question, min_score=-1)
            dense = base.cosines(q.question)
            ranked = {
                "ours": [turns_of[h["record_id"]] for h in hits],
                "ours_nofloor": [turns_of[h["record_id"]] for h in raw],
                **base.ranked(q.question, dense),
            }
            per_question.append({
                "category": q.category, **{name: score_question(r, q) for name, r in ranked.items()},
                "trace": positive_trace(raw, lambda rid, dense=dense: float(dense[base.index_of[rid]]),
                                        lambda rid: turns_of[rid], set(q.evidence)),
            })
        negative = []
        for q in negatives:  # another conversation's questions: their answers are not here
            hits = recall(q.question)
            dense = base.cosines(q.question)
            negative.append({"rejected": not hits, "best_cosine": negative_trace(
                recall(q.question, min_score=-1), lambda rid, dense=dense: float(dense[base.index_of[rid]]))})
    finally:
        store.close()
    return {
        "name": conv.name,
        "turns": len(conv.turns),
        "records": len(base.rows),
        "turns_folded_into_identical_records": len(conv.turns) - len(base.rows),
        "questions": len(conv.questions),
        "capture_turns_per_s": round(len(conv.turns) / capture_s, 1),
        "recall_ms": summarize(recall_ms),
        "_per_question": per_question,
        "_negatives": negative,
    }


def truncate(conv: Conversation, sessions: int) -> Conversation:
    return Conversation(
        conv.name,
        [t for t in conv.turns if t.session <= sessions],
        [q for q in conv.questions if max(q.sessions) <= sessions],
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_LOCOMO_DIR,
                        help="directory of LoCoMo conversation json files (default: %(default)s)")
    parser.add_argument("--conversations", default=None,
                        help="comma-separated names (e.g. conv-30); default all, or the smallest with --quick")
    parser.add_argument("--max-sessions", type=int, default=None,
                        help="keep only the first N sessions of each conversation, and the questions "
                             "whose evidence lies in them (default all; 6 with --quick)")
    args = parser.parse_args(argv)
    isolate_key_material()
    from iai_mcp.embed import MiniLMEmbedder

    convs = load_conversations(args.data)
    if args.conversations:
        wanted = set(args.conversations.split(","))
        convs = [c for c in convs if c.name in wanted]
    elif args.quick:
        convs = [min(convs, key=lambda c: len(c.turns))]
    max_sessions = args.max_sessions or (6 if args.quick else None)
    if max_sessions:
        convs = [truncate(c, max_sessions) for c in convs]
    embedder = CachedEmbedder(MiniLMEmbedder(), args.cache_dir)
    embedder.warmup()
    run = Run(NAME, args)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="iai-bench-locomo-") as scratch:
            for conv in convs:
                print(f"[{conv.name}: {len(conv.turns)} turns, {len(conv.questions)} questions]")
                others = [q for c in convs if c is not conv for q in c.questions]
                results.append(evaluate(conv, embedder, Path(scratch), others))
    finally:
        embedder.save()
    rows = [q for r in results for q in r.pop("_per_question")]
    negatives = [n for r in results for n in r.pop("_negatives")]
    systems = {name: average(rows, name) for name in SYSTEMS}
    by_category = by_group({CATEGORIES[cat]: [r for r in rows if r["category"] == cat] for cat in sorted(CATEGORIES)})
    run.data["config"] = {"k": K, "data": str(args.data), "conversations": [c.name for c in convs],
                          "max_sessions": max_sessions,
                          "embedder": embedder.name, "bm25": "retrieval.KeywordIndex() defaults",
                          "questions": len(rows)}
    run.data["conversations"] = results
    run.data["systems"] = systems
    run.data["turn_r@10_by_category"] = by_category
    run.data["floor"] = floor_report(systems, [r["trace"] for r in rows], negatives, embedder.relevance_floor)
    report(run, f"LoCoMo retrieval, {len(rows)} questions ({', '.join(c.name for c in convs)})", systems,
           "category", by_category, ("turn_r@10", "turn_r@5", "mrr", "session_r@10"))
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
