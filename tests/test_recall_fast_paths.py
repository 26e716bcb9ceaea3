"""The shortcuts that bring recall's latency back (issue 14) answer exactly
what the whole-array computations they replace answer: the best few rows by
a sampled threshold (``retrieval.top.at_least``), the rows ``unsure`` finds
near the last hit, the batched exact re-scoring, the speaker-label
shortcut, and onnxruntime's fallback on one thread or two."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from iai_mcp.core.dense import Cosines
from iai_mcp.core.recall import fused_scores
from iai_mcp.retrieval import KeywordIndex, top
from iai_mcp.retrieval.fusion import DEFAULT_WEIGHTS, top_k
from iai_mcp.retrieval.quantized import exact_top
from iai_mcp.types import EMBED_DIM
from tests.test_vector_index import _record


def _every_row_reaching(values: np.ndarray, m: int) -> np.ndarray:
    """``at_least`` as a partition of every value computes it."""
    n = len(values)
    if m <= 0:
        return np.zeros(0, dtype=np.int64)
    if m >= n:
        return np.arange(n)
    return np.flatnonzero(values >= np.partition(values, n - m)[n - m])


_values = st.lists(st.sampled_from([-np.inf, -1.0, 0.0, 0.25, 0.5, 0.5, 1.0, 2.0]) | st.floats(-3, 3, width=32),
                   min_size=0, max_size=300)


@settings(max_examples=300, deadline=None)
@given(values=_values, m=st.integers(0, 320), stride=st.sampled_from([2, 3, 16]))
def test_at_least_is_every_row_reaching_the_mth_best(values, m, stride):
    """Ties, -inf (masked rows), m of 0, m at or past the row count; the
    sampled threshold forced on from the first row."""
    values = np.asarray(values, dtype=np.float32)
    want = _every_row_reaching(values, m)
    np.testing.assert_array_equal(top.at_least(values, m), want)
    saved = top.SAMPLE_ROWS, top.SAMPLE_STRIDE
    top.SAMPLE_ROWS, top.SAMPLE_STRIDE = 0, stride
    try:
        np.testing.assert_array_equal(top.at_least(values, m), want)
    finally:
        top.SAMPLE_ROWS, top.SAMPLE_STRIDE = saved


def test_the_sample_serves_large_arrays_and_top_k_keeps_ties_in_row_order():
    rng = np.random.default_rng(0)
    values = np.round(rng.standard_normal(100_000), 2).astype(np.float32)  # many ties
    values[rng.choice(100_000, 5000, replace=False)] = -np.inf
    for m in (1, 10, 64, 200):
        np.testing.assert_array_equal(top.at_least(values, m), _every_row_reaching(values, m))
    best = top_k(values, 64)
    assert list(best) == list(np.argsort(-values, kind="stable")[:64])


@pytest.mark.parametrize("k", [1, 5, 40])
def test_exact_top_with_masked_rows_ties_and_fewer_rows_than_k(k):
    """Every row that can be among the k best exact scores comes back, with
    its exact score; masked rows never; fewer rows than k: all live ones."""
    rng = np.random.default_rng(k)
    exact = np.round(rng.standard_normal(30_000), 3).astype(np.float32)
    approx = (exact + rng.uniform(-0.01, 0.01, exact.shape)).astype(np.float32)
    bound = np.full(exact.shape, 0.0101, dtype=np.float32)
    approx[::7] = -np.inf
    rows, scores = exact_top(approx, bound, k, lambda r: exact[r])
    live = np.isfinite(approx)
    kth = np.sort(exact[live])[-k]
    assert set(np.flatnonzero(live & (exact >= kth))) <= set(rows)
    assert not np.any(approx[rows] == -np.inf)
    np.testing.assert_array_equal(scores, exact[rows])
    few = approx[: k // 2 + 1].copy()
    got, _ = exact_top(few, bound[: len(few)], k, lambda r: exact[r])
    assert set(got) == set(np.flatnonzero(np.isfinite(few)))


def _whole_array_unsure(cos: Cosines, *, picked, anti, visited, fused, dead, k, floor, anchored, context):
    """``Cosines.unsure`` as it ran before issue 14's round 3: every test over every row."""
    slope = np.float32(cos._slope)
    loose = ~cos.exact & ~dead
    slack = slope * cos.bound
    found = np.asarray([*picked, *anti], dtype=np.int64)
    unsure = [found]
    if context is not None and len(found):
        unsure.append(context.could_lend_most(found, cos.bound, slope))
    if len(picked) >= k:
        lent = DEFAULT_WEIGHTS.window_weight * float(slack[loose].max()) if context and loose.any() else 0.0
        near = ~dead & (fused + slack + np.float32(lent) >= np.float32(fused[picked[-1]]))
        unsure.append(np.flatnonzero(near & loose))
        if context is not None:
            unsure.append(context.could_lend_most(np.flatnonzero(near), cos.bound, slope))
    if floor is not None:
        met = np.asarray(visited, dtype=np.int64)
        unsure.append(met[loose[met] & (np.abs(cos.dense[met] - np.float32(floor)) <= cos.bound[met])])
        if anchored is not None:
            surely = cos.dense - cos.bound >= np.float32(floor)
            if not anchored(surely):
                maybe = cos.could_clear(floor)
                if anchored(maybe):
                    unsure.append(np.flatnonzero(maybe & ~surely))
    rows = np.concatenate(unsure)
    return rows[~cos.exact[rows]]


@pytest.mark.parametrize("seed", range(6))
def test_unsure_finds_what_the_whole_array_tests_find(store, seed):
    """Dead rows (with finite fused scores too), rows made exact on the way,
    a last hit tied with others, with and without the context term and the
    floor's anchor: the same rows as the tests over every row."""
    rng = np.random.default_rng(seed)
    n = 1500
    base = rng.standard_normal(EMBED_DIM).astype(np.float32)
    vectors = (base + rng.standard_normal((n, EMBED_DIM)) * 1.5).astype(np.float32)
    store.insert_many([_record(v, f"note {i} words {i % 11}", f"s{i % 9}") for i, v in enumerate(vectors)])
    dead = np.zeros(n, dtype=bool)
    dead[rng.choice(n, 150, replace=False)] = True
    query = (base / np.linalg.norm(base)).astype(np.float32)
    cos = Cosines(store, query, n, dead, k=10)
    contexts: list = []
    fused, _, _ = fused_scores(store, cos.dense, "words 3", n, ~dead, None, contexts)
    if seed % 2:
        fused = np.where(dead, rng.standard_normal(n).astype(np.float32) + fused.max(), fused)  # finite dead rows
    order = np.argsort(-fused, kind="stable")
    picked = [int(i) for i in order if not dead[i]][:10]
    fused[picked[3]] = fused[picked[-1]]  # a tie with the last hit
    cos.rescore(rng.choice(n, 40, replace=False))  # exact rows scattered among approximate ones
    floor = float(np.median(cos.dense))
    for context in (None, contexts[0]):
        for anchored in (None, lambda mask: bool(mask[::2].any()), lambda mask: bool(mask[:n // 3].any())):
            kw = {"picked": picked, "anti": [int(order[12])], "visited": order[:200], "fused": fused,
                  "dead": dead, "k": 10, "floor": floor, "anchored": anchored, "context": context}
            got = cos.unsure(**kw)
            want = _whole_array_unsure(cos, **kw)
            assert set(got.tolist()) == set(want.tolist())
            assert len(want)  # the test compares something


def test_a_row_exactly_at_the_edge_of_the_last_hit_is_unsure(store):
    """A row whose fused score plus its slack lands exactly on the last hit's
    (float32), its bound the largest of all, is near it: the one-comparison
    prefilter keeps it."""
    rng = np.random.default_rng(9)
    n = 400
    store.insert_many([_record(v, f"row {i}", f"s{i}") for i, v in
                       enumerate(rng.standard_normal((n, EMBED_DIM)).astype(np.float32))])
    dead = np.zeros(n, dtype=bool)
    query = rng.standard_normal(EMBED_DIM)
    cos = Cosines(store, (query / np.linalg.norm(query)).astype(np.float32), n, dead, k=3)
    fused = rng.uniform(0, 1, n).astype(np.float32)
    order = np.argsort(-fused, kind="stable")
    picked = [int(i) for i in order[:3]]
    slope = np.float32(cos._slope)
    # The row with the largest bound: the prefilter's margin is all that keeps it.
    loose = np.flatnonzero(~cos.exact)
    edge = int(loose[np.argmax(cos.bound[loose])])
    assert cos.bound[edge] == cos.bound.max() and edge not in picked
    fused[edge] = fused[picked[-1]] - slope * cos.bound[edge]
    while fused[edge] + slope * cos.bound[edge] < fused[picked[-1]]:  # lands on it, not under it
        fused[edge] = np.nextafter(fused[edge], np.float32(np.inf))
    assert fused[edge] + slope * cos.bound[edge] >= fused[picked[-1]]
    got = cos.unsure(picked=picked, anti=[], visited=order[:3], fused=fused, dead=dead, k=3,
                     floor=None, anchored=None, context=None)
    assert edge in set(got.tolist())


def test_exact_vectors_in_one_batch_match_one_at_a_time_and_purged_read_zeros(store):
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((60, EMBED_DIM)).astype(np.float32)
    records = [_record(v, f"text {i}", "s") for i, v in enumerate(vectors)]
    store.insert_many(records)
    store.purge([records[5].id, records[17].id])
    picked = np.array([17, 0, 5, 59, 5, 30])
    batch = store.exact_vectors(picked)
    for j, i in enumerate(picked):
        want = np.zeros(EMBED_DIM, np.float32) if i in (5, 17) else vectors[i]
        np.testing.assert_array_equal(batch[j], want)
        np.testing.assert_array_equal(store.exact_vectors(np.array([i]))[0], want)
    assert store.exact_vectors(np.zeros(0, dtype=np.int64)).shape == (0, EMBED_DIM)


def test_label_match_sees_labels_of_docs_added_after_a_call():
    """The set of labelling terms is extended as docs arrive: a cue naming a
    speaker who first spoke after the last call still matches."""
    index = KeywordIndex()
    index.add(0, "plain words about caroline")
    index.add(1, "Melanie: hello there")
    assert not index.label_match("what did caroline say").any()
    assert list(index.label_match("what did melanie say")) == [False, True]
    index.add(2, "Caroline: my research is on adoption")
    assert list(index.label_match("what did caroline say")) == [False, False, True]
    index.remove(2)
    assert not index.label_match("what did caroline say").any()


def test_onnxruntime_fallback_runs_on_one_thread_or_two_with_the_same_products(monkeypatch):
    from iai_mcp import int8_kernel

    monkeypatch.setattr(int8_kernel, "_simd_state", [None])
    monkeypatch.setattr(int8_kernel, "TWO_THREAD_ROWS", 100)
    monkeypatch.setattr(int8_kernel, "_sessions", {})
    rng = np.random.default_rng(1)
    query = rng.integers(-127, 128, EMBED_DIM, dtype=np.int8)
    for n in (99, 100, 5000):
        codes = rng.integers(-127, 128, (n, EMBED_DIM), dtype=np.int8)
        np.testing.assert_array_equal(int8_kernel.int8_dots(codes, query),
                                      codes.astype(np.int32) @ query.astype(np.int32))
    assert set(int8_kernel._sessions) == {(EMBED_DIM, 1), (EMBED_DIM, 2)}


def test_at_least_on_nan_values_takes_no_shortcut_and_does_not_raise():
    """NaN scores (an embedder that returned NaN) made the sampled threshold
    NaN, no row reached it, and the partition of nothing raised IndexError."""
    from iai_mcp.retrieval.top import at_least

    values = np.full(20_000, np.nan, dtype=np.float32)
    assert len(at_least(values, 10)) <= 20_000  # whatever it keeps, it answers
    for n in (20_000, 110):  # the sampled path and the plain one
        values = np.full(n, np.nan, dtype=np.float32)
        values[:10] = 1.0
        assert set(range(5)) <= set(at_least(values, 5).tolist())  # NaN ranks last, not first


def test_simsimd_serves_the_int8_kernel_after_its_self_check():
    """simsimd's kernel is checked once against numpy and then used; a
    kernel that gets a sum wrong is never trusted (onnxruntime serves).
    (Here, not in test_vector_index: every test there runs on each scan path.)"""
    from iai_mcp import int8_kernel

    from simsimd import cdist

    assert int8_kernel._simd() is cdist
    assert int8_kernel._self_check(cdist)

    def saturating(codes, query, **kwargs):  # a kernel whose 16-bit sums saturate
        exact = codes.astype(np.int32) @ query.astype(np.int32).T
        return np.clip(exact, -(2**15), 2**15 - 1)

    assert not int8_kernel._self_check(saturating)
