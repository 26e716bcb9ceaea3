"""Retrieval quality on LongMemEval_S: our recall against BM25-only and dense-only.

Protocol (shared/data/longmemeval/README.md, the shape of ``bench.locomo``):
one fresh store per question; every non-empty turn of its haystack captured
through ``dispatch("memory_capture")``, verbatim, with its role, its session
id as ``session_id`` and its session's date as ``ts``; the question is the
cue, asked at its ``question_date`` (memory_recall's ``now``), recalled
with ``k=10`` and a budget that never cuts.

Systems ranking the same records in the same run:

* ours: ``dispatch("memory_recall")`` with the default relevance floor;
* ours_nofloor: the same with ``min_score=-1`` (what the floor costs);
* bm25: ``retrieval.KeywordIndex()`` (default parameters) over the records' text;
* dense: cosine between the question's MiniLM vector and ``store.vectors()``.

Turn-level recall@k: share of the question's ``has_answer`` turns among the
turns of the top k records; session-level recall@k: share of
``answer_session_ids`` among the first k distinct sessions of the hits; MRR:
1/rank of the first record holding an evidence turn. Averaged over the
questions with evidence turns. Negatives for the floor: each question asked
against the next question's store whose haystack holds none of its answer
sessions, and the abstention questions (``*_abs``) against their own.
"""
from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    REPO_ROOT,
    Run,
    base_parser,
    clock_ms,
    isolate_key_material,
    summarize,
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
    floor_sweep,
    negative_trace,
    positive_trace,
    rejected_share,
    report,
    score,
)

NAME = "longmemeval"
DEFAULT_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "longmemeval"

TurnId = tuple[str, int]  # (session id, turn index in the session)


@dataclass(frozen=True)
class Turn:
    id: TurnId
    role: str
    text: str
    said_at: datetime
    evidence: bool


@dataclass(frozen=True)
class Question:
    id: str
    kind: str
    question: str
    answer_sessions: frozenset[str]
    haystack_sessions: frozenset[str]
    turns: list[Turn]
    #: The question's date (``question_date``): "last week" in it is resolved against this.
    asked_at: datetime | None = None

    @property
    def evidence(self) -> set[TurnId]:
        return {t.id for t in self.turns if t.evidence}

    @property
    def abstention(self) -> bool:
        return self.id.endswith("_abs")


def parse_date(text: str) -> datetime:
    """``"2023/05/20 (Sat) 02:21"`` -> 2023-05-20T02:21:00+00:00."""
    day, _, clock = text.split(" ")
    return datetime.strptime(f"{day} {clock}", "%Y/%m/%d %H:%M").replace(tzinfo=timezone.utc)


def load_question(path: Path) -> Question:
    data = json.loads(path.read_text("utf-8"))
    turns = [
        Turn((sid, i), t["role"], t["content"], parse_date(date), bool(t.get("has_answer")))
        for sid, date, session in zip(data["haystack_session_ids"], data["haystack_dates"],
                                      data["haystack_sessions"])
        for i, t in enumerate(session) if t["content"].strip()
    ]
    return Question(data["question_id"], data["question_type"], data["question"],
                    frozenset(data["answer_session_ids"]), frozenset(data["haystack_session_ids"]), turns,
                    parse_date(data["question_date"]) if data.get("question_date") else None)


def load_questions(data_dir: Path) -> list[Question]:
    files = sorted(Path(data_dir).glob("*.json"))
    if not files:
        raise SystemExit(f"no LongMemEval question files (*.json) in {data_dir}")
    return [load_question(f) for f in files]


def negative_for(i: int, questions: list[Question]) -> Question | None:
    """The next question (cyclically) whose answer sessions store ``i`` does not hold."""
    here = questions[i]
    for step in range(1, len(questions)):
        other = questions[(i + step) % len(questions)]
        if not other.abstention and not (other.answer_sessions & here.haystack_sessions):
            return other
    return None


def evaluate(q: Question, negative: Question | None, embedder: Any, scratch: Path) -> dict[str, Any]:
    from iai_mcp import backend
    from iai_mcp.core import dispatch
    from iai_mcp.core.limits import MAX_BUDGET_TOKENS

    embedder.embed([t.text for t in q.turns])  # one batch; the captures then read the cache
    store = backend.open_store(scratch / q.id)
    try:
        store.bind_embedder(embedder)
        turns_of, capture_s = capture_turns(store, (
            ({"text": turn.text, "role": turn.role, "session_id": turn.id[0], "ts": turn.said_at.isoformat()},
             turn.id) for turn in q.turns))
        base = Baselines(store, turns_of, embedder)

        # Asked on the question's date: "last week" in it is read against that.
        asked = {"now": q.asked_at.isoformat()} if q.asked_at else {}

        def recall(cue: str, **extra: Any) -> tuple[list[dict[str, Any]], np.ndarray, float]:
            start = clock_ms()
            hits = dispatch(store, "memory_recall", {"cue": cue, "k": K, "budget_tokens": MAX_BUDGET_TOKENS,
                                                     **asked, **extra})["hits"]
            took = clock_ms() - start
            return hits, base.cosines(cue), took

        out: dict[str, Any] = {"id": q.id, "type": q.kind, "records": len(base.rows),
                               "capture_turns_per_s": round(len(q.turns) / capture_s, 1)}
        hits, dense, out["recall_ms"] = recall(q.question)
        raw, _, _ = recall(q.question, min_score=-1)
        cosine = lambda rid: float(dense[base.index_of[rid]])
        if q.abstention:
            out["abstention"] = {"best_cosine": negative_trace(raw, cosine), "rejected": not hits}
        else:
            evidence = q.evidence
            ranked = {
                "ours": [turns_of[h["record_id"]] for h in hits],
                "ours_nofloor": [turns_of[h["record_id"]] for h in raw],
                **base.ranked(q.question, dense),
            }
            out["scores"] = {name: score(r, evidence, set(q.answer_sessions), lambda t: t[0])
                             for name, r in ranked.items()}
            out["trace"] = positive_trace(raw, cosine, lambda rid: turns_of[rid], evidence)
        if negative is not None:
            n_hits, n_dense, _ = recall(negative.question)
            n_raw, _, _ = recall(negative.question, min_score=-1)
            out["negative"] = {"question": negative.id, "rejected": not n_hits,
                               "best_cosine": negative_trace(n_raw, lambda rid: float(n_dense[base.index_of[rid]]))}
    finally:
        store.close()
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = base_parser(NAME, __doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR,
                        help="directory of LongMemEval question json files (default: %(default)s)")
    parser.add_argument("--questions", default=None,
                        help="comma-separated question ids; default all, or the first 3 with --quick")
    args = parser.parse_args(argv)
    isolate_key_material()
    from iai_mcp.embed import MiniLMEmbedder

    questions = load_questions(args.data)
    if args.questions:
        wanted = set(args.questions.split(","))
        questions = [q for q in questions if q.id in wanted]
    elif args.quick:
        questions = questions[:3]
    embedder = CachedEmbedder(MiniLMEmbedder(), args.cache_dir)
    embedder.warmup()
    run = Run(NAME, args)
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="iai-bench-longmemeval-") as scratch:
            for i, q in enumerate(questions):
                print(f"[{q.id} ({q.kind}): {len(q.turns)} turns]", flush=True)
                results.append(evaluate(q, negative_for(i, questions), embedder, Path(scratch)))
    finally:
        embedder.save()
    scored = [r for r in results if "scores" in r]
    rows = [r["scores"] for r in scored]
    systems = {name: average(rows, name) for name in SYSTEMS}
    by_type = by_group({kind: [r["scores"] for r in scored if r["type"] == kind]
                        for kind in sorted({r["type"] for r in scored})})
    negatives = [r["negative"] for r in results if "negative" in r]
    abstentions = [r["abstention"] for r in results if "abstention" in r]
    run.data["config"] = {"k": K, "data": str(args.data), "questions": len(results),
                          "with_evidence": len(scored), "embedder": embedder.name,
                          "bm25": "retrieval.KeywordIndex() defaults", "min_score": embedder.relevance_floor}
    run.data["systems"] = systems
    run.data["turn_r@10_by_type"] = by_type
    run.data["floor"] = {
        **floor_report(systems, [r["trace"] for r in scored], negatives, embedder.relevance_floor),
        "abstentions_rejected": rejected_share(abstentions),
        "sweep_abstentions": floor_sweep([], [a["best_cosine"] for a in abstentions]),
    }
    run.data["recall_ms"] = summarize([r["recall_ms"] for r in results])
    run.data["questions"] = [{k: v for k, v in r.items() if k not in ("scores", "trace")} for r in results]

    report(run, f"LongMemEval_S retrieval, {len(scored)} questions with evidence", systems,
           "question type", by_type, ("turn_r@10", "turn_r@1", "mrr", "session_r@5"))
    run.finish()
    return run.data


if __name__ == "__main__":
    main()
