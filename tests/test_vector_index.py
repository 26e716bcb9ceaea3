"""The vectors in int8 with exact re-scoring (issue 14, footprint).

Memory holds int8 codes with a per-row scale and error bound
(``retrieval.quantized``); the exact float32 vectors are re-read sealed
(``store.sealed_vectors``). These tests pin that the saving costs nothing in
results: the bound holds, the two-stage scan returns exactly the float32
top-k with exact scores (also on near-duplicates, where the codes alone
rank wrongly), recall returns what a float32 scan of every row returns, and
the arrays stay aligned with the slots through growth, purge, update and reopen.
"""
from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import numpy as np
import pytest

from iai_mcp.core.capture import related_to
from iai_mcp.int8_kernel import int8_dots, matmul_integer_model
from iai_mcp.core.recall import RecallQuery, rank
from iai_mcp.retrieval.quantized import approx_cosines, exact_top, quantize
from iai_mcp.store import PURGED, MemoryStore
from iai_mcp.types import EMBED_DIM, MemoryRecord


@pytest.fixture(autouse=True, params=["cast_and_blas", "int8_kernel", "onnxruntime"])
def scan_path(request, monkeypatch):
    """Every test here runs on all three scans: numpy's (codes cast to
    float32 a block at a time) and the integer product with a quantised
    query (used from ``KERNEL_ROWS`` rows up; here from the first row), by
    simsimd, and by onnxruntime as when simsimd is missing."""
    from iai_mcp import int8_kernel
    from iai_mcp.retrieval import quantized

    if request.param != "cast_and_blas":
        monkeypatch.setattr(quantized, "KERNEL_ROWS", 0)
    if request.param == "onnxruntime":
        monkeypatch.setattr(int8_kernel, "_simd_state", [None])
    return request.param


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _near_duplicates(rng: np.random.Generator, n: int, spread: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """``n`` vectors a hair apart around one base, and a query close to them:
    their exact cosines differ by less than the int8 codes' error."""
    base = _unit(rng.standard_normal(EMBED_DIM))
    dupes = _unit(base + spread * rng.standard_normal((n, EMBED_DIM)))
    return dupes, _unit(base + spread * rng.standard_normal(EMBED_DIM))


def _adversarial(rng: np.random.Generator) -> np.ndarray:
    """Random rows, near-duplicates, one spike (one huge component: coarse
    codes for the rest), tiny and zero vectors."""
    spike = rng.standard_normal((20, EMBED_DIM)) * 0.01
    spike[:, 0] = 5.0
    return np.concatenate([
        rng.standard_normal((300, EMBED_DIM)), _near_duplicates(rng, 200)[0], spike,
        rng.standard_normal((10, EMBED_DIM)) * 1e-6, np.zeros((2, EMBED_DIM)),
    ]).astype(np.float32)


def _scan(vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12).astype(np.float32)
    codes, scales, slack = quantize(vectors, norms)
    approx, bound = approx_cosines(codes, scales, norms, slack, query, int8_dots)
    return approx, bound, (vectors @ query) / norms


@pytest.mark.parametrize("seed", range(5))
def test_the_bound_holds_for_every_row(seed):
    rng = np.random.default_rng(seed)
    vectors = _adversarial(rng)
    for query in [_unit(rng.standard_normal(EMBED_DIM)), vectors[305] / np.linalg.norm(vectors[305]),
                  rng.standard_normal(EMBED_DIM).astype(np.float32) * 3]:
        approx, bound, exact = _scan(vectors, query.astype(np.float32))
        exact = exact * np.float32(1 / np.linalg.norm(query))
        assert np.all(np.abs(approx * np.float32(1 / np.linalg.norm(query)) - exact)
                      <= bound / np.linalg.norm(query))


def test_the_int8_kernel_is_integer_arithmetic_exactly():
    rng = np.random.default_rng(3)
    for n in (0, 1, 7, 5000):
        codes = rng.integers(-127, 128, (n, EMBED_DIM), dtype=np.int8)
        query = rng.integers(-127, 128, EMBED_DIM, dtype=np.int8)
        np.testing.assert_array_equal(int8_dots(codes, query), codes.astype(np.int32) @ query.astype(np.int32))
    extreme = np.full((2, EMBED_DIM), 127, dtype=np.int8)
    extreme[1] = -127
    assert list(int8_dots(extreme, np.full(EMBED_DIM, 127, dtype=np.int8))) == [127 * 127 * EMBED_DIM,
                                                                               -127 * 127 * EMBED_DIM]
    assert matmul_integer_model(EMBED_DIM)[:2] == b"\x08\x08"  # ir_version 8, the model's first field


def test_without_the_kernel_the_cast_and_blas_scan_gives_the_same_bounds(scan_path, monkeypatch):
    """A kernel that cannot run (no onnxruntime, a failed graph) answers None:
    the scan falls back and the bound still holds."""
    from iai_mcp.retrieval import quantized

    monkeypatch.setattr(quantized, "KERNEL_ROWS", 0)
    rng = np.random.default_rng(5)
    vectors = _adversarial(rng)
    norms = np.maximum(np.linalg.norm(vectors, axis=1), 1e-12).astype(np.float32)
    codes, scales, slack = quantize(vectors, norms)
    query = _unit(rng.standard_normal(EMBED_DIM))
    with_kernel = approx_cosines(codes, scales, norms, slack, query, int8_dots)
    without = approx_cosines(codes, scales, norms, slack, query, lambda c, q: None)
    exact = (vectors @ query) / norms
    for approx, bound in (with_kernel, without):
        assert np.all(np.abs(approx - exact) <= bound)
    # The quantised query's own rounding widens the kernel's bound, never narrows it.
    assert np.all(with_kernel[1] >= without[1])


def test_codes_take_a_quarter_of_float32_and_a_zero_vector_scores_zero():
    vectors = np.zeros((3, EMBED_DIM), dtype=np.float32)
    vectors[1, 5] = 1.0
    codes, scales, slack = quantize(vectors, np.maximum(np.linalg.norm(vectors, axis=1), 1e-12))
    assert codes.dtype == np.int8 and codes.nbytes * 4 == vectors.nbytes
    assert scales[0] == 0 and slack[0] == 0 and codes[1, 5] == 127


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [1, 10, 50])
def test_two_stage_scan_returns_exactly_the_float32_top_k(seed, k):
    rng = np.random.default_rng(seed)
    vectors = _adversarial(rng)
    query = _near_duplicates(rng, 1)[1] if seed % 2 else _unit(rng.standard_normal(EMBED_DIM))
    if seed % 2:  # a query among the near-duplicates
        query = _unit(vectors[300:500].mean(axis=0))
    approx, bound, exact = _scan(vectors, query)
    rows, scores = exact_top(approx, bound, k, lambda r: exact[r])
    best = np.argsort(-exact, kind="stable")[:k]
    order = np.argsort(-scores, kind="stable")[:k]
    np.testing.assert_array_equal(np.sort(exact[rows[order]]), np.sort(exact[best]))
    assert set(rows[order]) == set(best) or np.all(np.isin(exact[best], scores))  # ties aside
    np.testing.assert_array_equal(scores, exact[rows])  # every score given is the exact one


def test_near_duplicates_rank_wrongly_from_the_codes_alone():
    """The data the tests above use defeats the codes: skipping the exact
    re-scoring would return the wrong rows in the wrong order."""
    rng = np.random.default_rng(7)
    vectors, query = _near_duplicates(rng, 200)
    approx, _, exact = _scan(vectors, query)
    assert list(np.argsort(-approx)[:10]) != list(np.argsort(-exact)[:10])
    assert np.abs(approx - exact).max() > 10 * np.diff(np.sort(exact)[-11:]).min()


def test_masked_rows_are_never_candidates():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((50, EMBED_DIM)).astype(np.float32)
    approx, bound, exact = _scan(vectors, _unit(vectors[3]))
    approx[3] = -np.inf
    rows, _ = exact_top(approx, bound, 5, lambda r: exact[r])
    assert 3 not in rows and len(rows) >= 5


# ---------------------------------------------------------------- the store


def _record(vec: np.ndarray, text: str, session: str | None = None) -> MemoryRecord:
    now = datetime.now(UTC)
    return MemoryRecord(
        id=uuid4(), tier="episodic", literal_surface=text, aaak_index="", embedding=vec.tolist(),
        community_id=None, centrality=0.0, detail_level=2, pinned=False, stability=0.0, difficulty=0.0,
        last_reviewed=None, never_decay=False, never_merge=False, provenance=[], created_at=now,
        updated_at=now, language="en", session_id=session,
    )


def _fill(store: MemoryStore, vectors: np.ndarray, session: str | None = None,
          texts: list[str] | None = None) -> list:
    texts = texts or [f"memory number {i} about topic {i % 7}" for i in range(len(vectors))]
    records = [_record(v, text, session) for v, text in zip(vectors, texts)]
    store.insert_many(records)
    return records


def _check_aligned(store: MemoryStore, expected: dict) -> None:
    """Every live slot gives back its exact vector, and its codes' bound holds."""
    rows = store.rows()
    query = _unit(np.random.default_rng(0).standard_normal(EMBED_DIM))
    approx, bound = store.approx_cosines(query)
    assert len(approx) == len(rows)
    for i, row in enumerate(rows):
        if store.states()[i] == PURGED:
            assert not store.exact_vectors(np.array([i])).any() and row.id not in expected
            continue
        np.testing.assert_array_equal(store.exact_vectors(np.array([i]))[0], expected[row.id])
        exact = store.exact_cosines(np.array([i]), query)[0]
        assert abs(float(approx[i]) - float(exact)) <= float(bound[i])
    # The sum of the ranked rows' unit vectors (recall's exact mean) follows hides, restores and purges.
    ranked = [v / np.linalg.norm(v) for row in rows if row.id in expected and row.state != "hidden"
              for v in [expected[row.id].astype(np.float64)]]
    count, total = store.ranked_unit_sum()
    assert count == len(ranked)
    np.testing.assert_allclose(total, np.sum(ranked, axis=0), atol=1e-5)


def test_growth_purge_update_and_reopen_keep_the_vectors_aligned(tmp_path, fake_embedder):
    rng = np.random.default_rng(3)
    path = tmp_path / "store"
    store = MemoryStore(path=path, embedder=fake_embedder)
    first = rng.standard_normal((40, EMBED_DIM)).astype(np.float32)
    records = _fill(store, first)
    capacity = len(store._slots.codes)
    more = _fill(store, rng.standard_normal((capacity, EMBED_DIM)).astype(np.float32))  # forces growth
    assert len(store._slots.codes) > capacity
    expected = {r.id: np.asarray(r.embedding, dtype=np.float32) for r in [*records, *more]}
    _check_aligned(store, expected)

    gone = [records[5].id, more[100].id]
    store.purge(gone)
    for rid in gone:
        del expected[rid]
    store.update(records[6].id, tags=["kept"])  # rewrites the row, re-sealing its vector
    store.update(records[7].id, hidden_at=datetime.now(UTC))  # forgotten: no longer ranked
    store.update(more[3].id, hidden_at=datetime.now(UTC))
    store.update(more[3].id, hidden_at=None)  # and restored
    _check_aligned(store, expected)
    assert store.get(records[6].id).embedding == pytest.approx(expected[records[6].id].tolist(), abs=0)
    store.close()

    store = MemoryStore(path=path, embedder=fake_embedder)
    try:
        assert len(store) == len(expected)
        _check_aligned(store, expected)
    finally:
        store.close()


def test_vectors_in_memory_take_under_a_third_of_float32(store):
    """The finding: the float32 matrix was most of a large store's memory
    (154 MB at 100k, 173 MB with headroom). Each slot now holds 384 B of codes
    and a few per-row numbers, against 1,536 B of float32 before."""
    _fill(store, np.random.default_rng(0).standard_normal((2000, EMBED_DIM)).astype(np.float32))
    slots = store._slots
    held = sum(v.nbytes for v in [*vars(slots).values(), *slots.arrays] if isinstance(v, np.ndarray))
    assert held / len(slots.states) < EMBED_DIM * 4 / 3


def test_nothing_in_clear_reaches_the_sealed_vectors_file(store):
    vectors = np.random.default_rng(2).standard_normal((20, EMBED_DIM)).astype(np.float32)
    _fill(store, vectors)
    sealed = store._slots.sealed
    raw = b"".join(sealed.read(int(store._slots.where[i])) for i in range(20))
    for v in vectors:
        assert v.tobytes()[:64] not in raw


def _exact_everywhere(store: MemoryStore, monkeypatch) -> None:
    """Make the store answer the candidate pass with exact float32 cosines of
    every row and zero bounds: recall is then today's float32 scan."""
    def exact(query):
        matrix, norms = store.vectors()
        scores = (matrix @ np.asarray(query, dtype=np.float32)) / norms / np.float32(np.linalg.norm(query))
        return scores.astype(np.float32), np.zeros(len(scores), dtype=np.float32)

    monkeypatch.setattr(store, "approx_cosines", exact)


def _recall(store: MemoryStore, query: np.ndarray, cue: str, **kw) -> list[tuple[str, float, str]]:
    hits, below = rank(store, None, RecallQuery(cue=cue, cue_embedding=query, **kw))
    # Scores to float32 rounding: the mean cosine is summed in float64 here, in float32 by fuse.
    return [(str(h.row.id), pytest.approx(h.score, abs=2e-6), h.reason) for h in hits] + [("below", below, "")]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("min_score", [None, "mid"])
def test_recall_returns_what_a_float32_scan_returns(store, monkeypatch, seed, min_score):
    rng = np.random.default_rng(seed)
    dupes, query = _near_duplicates(rng, 150)
    vectors = np.concatenate([rng.standard_normal((400, EMBED_DIM)).astype(np.float32), dupes])
    _fill(store, vectors[rng.permutation(len(vectors))], session=None if seed % 2 else "s1")
    exact = (vectors @ query) / np.linalg.norm(vectors, axis=1)
    kw = {"k": 10, "min_score": float(np.sort(exact)[-20]) if min_score else -1.0}
    for cue in ["unmatched words", "memory about topic 3"]:
        got = _recall(store, query, cue, **kw)
        with monkeypatch.context() as m:
            _exact_everywhere(store, m)
            want = _recall(store, query, cue, **kw)
        assert got == want


@pytest.mark.parametrize("seed", range(4))
def test_recall_is_exact_where_keywords_and_the_floor_decide(store, monkeypatch, seed):
    """Hits far down the cosine order (a strong keyword match) and rows the
    walk meets right at the floor (a weak keyword match, not rescued): their
    cosines come from the codes until the correction pass re-scores them."""
    rng = np.random.default_rng(seed)
    n = 600
    vectors = rng.standard_normal((n, EMBED_DIM)).astype(np.float32)
    texts = [f"note {i} " + ("zebra zebra zebra crossing" if i % 50 == 0 else
                             "crossing" if i % 3 == 0 else "plain words") for i in range(n)]
    session = None if seed % 2 else "s1"
    _fill(store, vectors, session, texts)
    query = _unit(rng.standard_normal(EMBED_DIM))
    exact = (vectors @ query) / np.linalg.norm(vectors, axis=1)
    for cue, k, floor in [("zebra crossing", 20, float(np.median(exact))), ("zebra", 5, None),
                          ("crossing", 30, float(np.quantile(exact, 0.6)))]:
        got = _recall(store, query, cue, k=k, min_score=floor if floor is not None else -1.0)
        with monkeypatch.context() as m:
            _exact_everywhere(store, m)
            want = _recall(store, query, cue, k=k, min_score=floor if floor is not None else -1.0)
        assert got == want


@pytest.mark.parametrize("seed", range(3))
def test_recall_decides_the_floor_on_exact_cosines(store, monkeypatch, seed):
    """A weak keyword match (not enough to be rescued) lifts rows whose
    cosine sits right at the floor, far below the rows made exact first, to
    where the walk meets them: whether each clears the floor is decided on
    its exact cosine."""
    rng = np.random.default_rng(seed)
    n = 2000
    vectors = rng.standard_normal((n, EMBED_DIM)).astype(np.float32)
    texts = [f"note {i} " + ("zebra zebra zebra crossing" if i % 50 == 0 else
                             "crossing" if i % 3 == 0 else "plain words") for i in range(n)]
    _fill(store, vectors, None, texts)
    query = _unit(rng.standard_normal(EMBED_DIM))
    exact = np.sort((vectors @ query) / np.linalg.norm(vectors, axis=1))[::-1]
    for rank_of_floor in (120, 200, 400):
        kw = {"k": 20, "min_score": float(exact[rank_of_floor])}
        got = _recall(store, query, "zebra crossing", **kw)
        with monkeypatch.context() as m:
            _exact_everywhere(store, m)
            want = _recall(store, query, "zebra crossing", **kw)
        assert got == want


def test_recall_without_rescoring_would_differ(store, monkeypatch):
    """The comparison above can fail: with the codes' cosines taken as exact
    (no re-scoring), recall on near-duplicates returns another answer."""
    from iai_mcp.core import dense

    rng = np.random.default_rng(0)
    dupes, query = _near_duplicates(rng, 150)
    _fill(store, np.concatenate([rng.standard_normal((400, EMBED_DIM)).astype(np.float32), dupes]))
    got = _recall(store, query, "unmatched words", k=10, min_score=-1.0)
    with monkeypatch.context() as m:
        m.setattr(store, "exact_cosines", lambda rows, q: store.approx_cosines(q)[0][rows])
        m.setattr(dense, "FIRST_FACTOR", 0)
        skipped = _recall(store, query, "unmatched words", k=10, min_score=-1.0)
    assert skipped != got


def test_related_memories_are_the_float32_best_with_exact_scores(store):
    rng = np.random.default_rng(5)
    dupes, query = _near_duplicates(rng, 100)
    vectors = np.concatenate([rng.standard_normal((300, EMBED_DIM)).astype(np.float32), dupes])
    records = _fill(store, vectors)
    found = related_to(store, query, exclude=uuid4())
    exact = (vectors @ query) / np.linalg.norm(vectors, axis=1)
    best = np.argsort(-exact, kind="stable")[: len(found)]
    assert len(found) == 3 and [r.record_id for r in found] == [records[i].id for i in best]
    assert [r.score for r in found] == [round(float(exact[i]), 4) for i in best]


def test_rows_at_the_floor_are_unsure_when_the_walk_ran_out(store):
    """With fewer hits than asked for, the walk met every row: each one whose
    interval straddles the floor could be a hit and must be re-scored."""
    from iai_mcp.core.dense import Cosines

    rng = np.random.default_rng(4)
    _fill(store, rng.standard_normal((800, EMBED_DIM)).astype(np.float32))
    query = _unit(rng.standard_normal(EMBED_DIM))
    dead = np.zeros(800, dtype=bool)
    cosines = Cosines(store, query, 800, dead, k=1)
    floor = float(np.median(cosines.dense))
    unsure = cosines.unsure(picked=[], anti=[], visited=np.arange(800), fused=cosines.dense.copy(), dead=dead,
                            k=1, floor=floor, anchored=None, context=None)
    straddle = np.flatnonzero(~cosines.exact & (np.abs(cosines.dense - floor) <= cosines.bound))
    assert len(straddle) > 10 and set(unsure) == set(straddle)


def _with_cosine(query: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector whose cosine to the unit ``query`` is ``cosine``."""
    other = rng.standard_normal(EMBED_DIM)
    other -= (other @ query) * query
    return (cosine * query + np.sqrt(1 - cosine**2) * other / np.linalg.norm(other)).astype(np.float32)


def _tie(cos: np.ndarray, sessions: np.ndarray) -> float:
    """The cosine of one more row (a session of its own) whose fused score
    ties with the best other row's, given the other rows' cosines (bisection
    over ``fuse``, recall's own fusion)."""
    from iai_mcp.retrieval.fusion import fuse

    lo, hi = 0.5, 0.999999
    for _ in range(60):
        mid = (lo + hi) / 2
        dense = np.append(cos, mid).astype(np.float32)
        fused = fuse(dense, np.zeros_like(dense), np.append(sessions, sessions.max() + 1))
        lo, hi = (mid, hi) if fused[-1] < fused[:-1].max() else (lo, mid)
    return (lo + hi) / 2


@pytest.mark.parametrize("seed", range(3))
def test_a_row_at_the_last_hit_gets_exact_context(store, monkeypatch, seed):
    """B and A are exact and tie but for the context B borrows from its
    neighbour N, whose cosine the codes get wrong (a spiky vector: coarse
    codes). A is placed halfway between its tie with B given N's exact
    cosine and given N's approximate one: which of them is the hit is
    decided only once N is re-scored, though N is neither a hit nor near one.

    Built for the cast-and-BLAS scan's error on N; the correction under test
    does not depend on the scan, so both runs use that one."""
    from iai_mcp.retrieval import quantized

    monkeypatch.setattr(quantized, "KERNEL_ROWS", 10**9)
    rng = np.random.default_rng(seed)
    query = _unit(rng.standard_normal(EMBED_DIM))
    spike = np.zeros(EMBED_DIM, dtype=np.float32)
    spike[int(np.argmin(np.abs(query)))] = 1.0
    n_vec = _unit(0.9 * query + spike + 0.05 * rng.standard_normal(EMBED_DIM)).astype(np.float32)
    background = [_unit(rng.standard_normal(EMBED_DIM)) for _ in range(300)]
    fillers = [_with_cosine(query, 0.75 + 0.001 * i, rng) for i in range(60)]  # the rows made exact first
    rows = [*background, *fillers, _with_cosine(query, 0.9, rng), n_vec]
    cos = np.array([float(v @ query) / float(np.linalg.norm(v)) for v in rows])
    approx_n = float(_scan(n_vec[None, :], query)[0][0])
    assert abs(approx_n - cos[-1]) > 2e-4 and cos[-1] < 0.7  # N: off in the codes, below the fillers
    sessions = np.append(np.arange(360), [360, 360])
    a_vec = _with_cosine(query, (_tie(cos, sessions) + _tie(np.append(cos[:-1], approx_n), sessions)) / 2, rng)
    store.insert_many([_record(v, f"row {i}", f"s{c}") for i, (v, c) in enumerate(zip(rows, sessions))])
    store.insert(_record(a_vec, "row a", "a"))
    got = _recall(store, query, "unmatched", k=1, min_score=-1.0)
    with monkeypatch.context() as m:
        _exact_everywhere(store, m)
        want = _recall(store, query, "unmatched", k=1, min_score=-1.0)
    assert got == want


def test_a_disk_that_refuses_the_sealed_vectors_moves_them_to_memory(store, monkeypatch, capfd):
    """A write LanceDB committed must reach memory: when the nameless file's
    disk is full, its blobs move to memory with one log line, and every
    vector still reads back exactly."""
    import errno
    import os

    from iai_mcp.store import sealed_vectors

    rng = np.random.default_rng(6)
    first = _fill(store, rng.standard_normal((30, EMBED_DIM)).astype(np.float32))

    def full(*_args):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sealed_vectors.os, "pwrite", full)
    later = _fill(store, rng.standard_normal((30, EMBED_DIM)).astype(np.float32))
    assert "sealed_vectors_in_memory" in capfd.readouterr().err
    store.purge([first[0].id])
    monkeypatch.setattr(sealed_vectors.os, "pwrite", os.pwrite)
    expected = {r.id: np.asarray(r.embedding, dtype=np.float32) for r in [*first[1:], *later]}
    _check_aligned(store, expected)


@pytest.mark.slow
def test_recall_with_the_real_model_matches_a_float32_scan(tmp_path, monkeypatch):
    """MiniLM vectors of many similar memories (a few topics, many
    phrasings) in sessions, cues asked through dispatch with the model's own
    floor: the same hits, in the same order, with the same scores as recall
    over exact float32 cosines of every row."""
    import random

    from iai_mcp.core.dispatch import dispatch
    from iai_mcp.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    store = MemoryStore(path=tmp_path / "store", embedder=embedder)
    rng = random.Random(0)
    people, things = ["Ana", "Bo", "Chen", "Dee"], ["the deploy", "the budget", "the garden", "the trip", "the cron job"]
    verbs = ["moved", "fixed", "planned", "postponed", "reviewed", "asked about"]
    try:
        for s in range(12):
            for t in range(40):
                dispatch(store, "memory_capture", {
                    "text": f"{rng.choice(people)} {rng.choice(verbs)} {rng.choice(things)} on day {rng.randint(1, 60)}"
                            f" ({s}-{t})", "session_id": f"s{s}"})
        cues = [f"who {v} {t}" for v in verbs for t in things]
        got = [dispatch(store, "memory_recall", {"cue": c, "k": 10})["hits"] for c in cues]
        with monkeypatch.context() as m:
            _exact_everywhere(store, m)
            want = [dispatch(store, "memory_recall", {"cue": c, "k": 10})["hits"] for c in cues]
        for g, w in zip(got, want):
            assert [h["record_id"] for h in g] == [h["record_id"] for h in w]
            assert [h["reason"] for h in g] == [h["reason"] for h in w]
            assert [h["score"] for h in g] == pytest.approx([h["score"] for h in w], abs=2e-6)
    finally:
        store.close()
