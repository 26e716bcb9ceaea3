"""Recall over the int8 codes, from the review of issue 14: rows just under
the floor in the codes, the bounds after the exact-mean shift, a scan
beside a growth, and the correction rounds' cap. Every test runs on both
scans (``scan_path``)."""
from __future__ import annotations

from uuid import uuid4

import numpy as np

from iai_mcp.core.dense import Cosines
from iai_mcp.retrieval.quantized import ROUNDING
from iai_mcp.types import EMBED_DIM
from tests.test_vector_index import (  # noqa: F401  (scan_path: every test on both scans)
    _exact_everywhere,
    _fill,
    _near_duplicates,
    _recall,
    _record,
    _scan,
    _unit,
    _with_cosine,
    scan_path,
)


def test_a_row_the_codes_put_just_under_the_floor_is_met_and_rescored(store, monkeypatch):
    """Fewer rows than k clear the floor, all in the head (superseded rows
    fill it); R's cosine from the codes is just under the floor, its exact
    one above it. R must be met and re-scored: a float32 scan returns it."""
    rng = np.random.default_rng(2)
    query = _unit(rng.standard_normal(EMBED_DIM))
    records = []
    for i in range(61):  # superseded, high cosine: the head
        r = _record(_with_cosine(query, 0.9 + 0.0005 * i, rng), f"old {i}")
        r.superseded_by = uuid4()
        records.append(r)
    records += [_record(_with_cosine(query, 0.85 + 0.001 * i, rng), f"act {i}") for i in range(3)]
    records += [_record(_with_cosine(query, 0.1 + 0.001 * i, rng), f"low {i}") for i in range(300)]
    while True:  # R: a vector the codes score well under its exact cosine
        r_vec = _with_cosine(query, 0.5, rng)
        approx, _, exact = _scan(r_vec[None, :], query)
        if exact[0] - approx[0] > 2e-4:
            break
    r = _record(r_vec, "rrr")
    store.insert_many([*records, r])
    index = len(records)
    exact_r = float(store.exact_cosines(np.array([index]), query)[0])
    floor = exact_r - 2e-6
    assert float(store.approx_cosines(query)[0][index]) < floor - 1e-4 <= exact_r
    kw = {"k": 10, "min_score": floor}
    got = _recall(store, query, "unmatched", **kw)
    with monkeypatch.context() as m:
        _exact_everywhere(store, m)
        want = _recall(store, query, "unmatched", **kw)
    assert str(r.id) in [hit[0] for hit in want]
    assert got == want


def test_the_bound_holds_after_the_exact_mean_shift(store):
    """``_exact_mean`` moves every approximate cosine by one shift: each
    one's bound widens by as much. Rows the codes hold exactly (bound of a
    few ROUNDINGs) beside many copies of one spiky vector whose codes all
    err the same way (a large shift), and rows close to the query that make
    the copies too far down to be re-scored first."""
    rng = np.random.default_rng(0)
    spike = np.zeros(EMBED_DIM, dtype=np.float32)
    spike[0] = 5.0
    residual = 0.01 * rng.standard_normal(EMBED_DIM).astype(np.float32)
    residual[0] = 0
    spiky = spike + residual + 1e-5 * rng.standard_normal((300, EMBED_DIM)).astype(np.float32)
    ints = rng.integers(-127, 128, (100, EMBED_DIM)).astype(np.float32)
    ints[:, 0] = 127
    exact_rows = ints * np.float32(2**-7)  # int8 codes times a power of two: no residual
    query = _unit(residual / np.linalg.norm(residual) + 0.3 * _unit(rng.standard_normal(EMBED_DIM)))
    close = np.stack([_with_cosine(query, 0.99, rng) for _ in range(20)])
    vectors = np.concatenate([spiky, exact_rows, close])
    _fill(store, vectors)
    n = len(vectors)
    cosines = Cosines(store, query, n, np.zeros(n, dtype=bool), 1)
    raw = store.approx_cosines(query)[0]
    shift = float(cosines.dense[~cosines.exact][0] - raw[~cosines.exact][0])
    assert abs(shift) > 100 * ROUNDING  # the shift is far above the exact rows' own bound
    exact = store.exact_cosines(np.arange(n), query)
    loose = ~cosines.exact
    assert loose[:300].all() and loose[300:400].sum() > 50
    assert np.all(np.abs(cosines.dense[loose] - exact[loose]) <= cosines.bound[loose])
    assert np.all(cosines.bound[cosines.exact] == 0)


class _GrowsMidScan:
    """Armed, the first read of the slots' arrays during a scan grows them
    and adds rows that land in the old capacity: what a capture on another
    thread does between two reads of the scan."""

    def __init__(self, store, add) -> None:
        self.store, self.add, self.armed = store, add, False

    def install(self, monkeypatch) -> None:
        slots = self.store._slots
        hook = self

        class Hooked(type(slots)):
            def __getattribute__(self, name):
                if hook.armed and name in ("scales", "arrays"):
                    hook.armed = False
                    hook.add()
                return super().__getattribute__(name)

        monkeypatch.setattr(slots, "__class__", Hooked)


def test_a_scan_beside_a_growth_pairs_each_row_with_its_own_scale(store, monkeypatch):
    """The per-slot arrays are published as one value and read once a scan:
    a growth between the reads of the codes and of their scales gave rows
    written since the old codes' zeros with the new scales (approx 0, a
    bound far too small)."""
    rng = np.random.default_rng(1)
    capacity = len(store._slots.codes)
    _fill(store, rng.standard_normal((capacity - 24, EMBED_DIM)).astype(np.float32))
    more = rng.standard_normal((100, EMBED_DIM)).astype(np.float32)
    hook = _GrowsMidScan(store, lambda: _fill(store, more, texts=[f"more {i}" for i in range(100)]))
    hook.install(monkeypatch)
    query = _unit(rng.standard_normal(EMBED_DIM))
    hook.armed = True
    approx, bound = store.approx_cosines(query)
    assert not hook.armed and len(store._slots.codes) > capacity  # it grew during the scan
    exact = store.exact_cosines(np.arange(len(approx)), query)
    assert np.all(np.abs(approx - exact) <= bound)


def test_recall_logs_when_the_correction_rounds_run_out(store, monkeypatch, capfd):
    """After ``MAX_ROUNDS`` the answer stands, with one structured line
    when rows that could change it are still approximate (here: keyword
    hits far down the cosine order, never re-scored with no round left)."""
    from iai_mcp.core import recall

    rng = np.random.default_rng(0)
    n = 600
    texts = [f"note {i} " + ("zebra zebra zebra crossing" if i % 50 == 0 else "plain words") for i in range(n)]
    _fill(store, rng.standard_normal((n, EMBED_DIM)).astype(np.float32), None, texts)
    query = _unit(rng.standard_normal(EMBED_DIM))
    capfd.readouterr()
    full = _recall(store, query, "zebra crossing", k=10, min_score=-1.0)
    assert "recall_rounds_capped" not in capfd.readouterr().err
    monkeypatch.setattr(recall, "MAX_ROUNDS", 0)
    capped = _recall(store, query, "zebra crossing", k=10, min_score=-1.0)
    err = capfd.readouterr().err
    assert err.count('"event": "recall_rounds_capped"') == 1 and '"unsure_rows"' in err
    assert len(capped) == len(full) == 11  # ten hits and the below-floor count
