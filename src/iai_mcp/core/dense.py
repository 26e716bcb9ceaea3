"""Recall's cosines: from the int8 codes for every row, exact for every row
whose cosine decides something.

The store keeps vectors as int8 codes, each row's cosine known to within a
bound (``retrieval.quantized``), and re-scores rows exactly on demand
(``MemoryStore.exact_cosines``, about 3 us a row). Recall starts from the
codes, makes the best ``k * FIRST_FACTOR + FIRST_EXTRA`` rows by cosine
exact, together with every row that could outrank them (so the best cosine,
which normalises the dense scores, is exact), ranks, and then asks
``unsure`` which rows could still change the answer: a hit or anti-hit
whose cosine is approximate, a row whose exact cosine could lift it past
the last hit, a row the walk met whose side of the floor is uncertain, or
the floor's anchor when it hangs on approximate rows. Those are re-scored
and their fused scores corrected (``Cosines.correct``), until none is left.

The mean cosine that normalises the dense scores is exact too (the store
keeps the sum of the ranked rows' unit vectors). What stays approximate: the
cosines of rows that decide nothing, and the context a hit borrows from an
approximate neighbour (the window term, ``retrieval.fusion``: at most
``window_weight`` times that neighbour's own error in fused score).
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

from iai_mcp.retrieval.fusion import DEFAULT_WEIGHTS
from iai_mcp.retrieval.quantized import exact_top
from iai_mcp.store import MemoryStore

#: Rows made exact before ranking: every row that can be among the best
#: ``k * FIRST_FACTOR + FIRST_EXTRA`` by cosine (``exact_top``). With the
#: bare k (factor 1, extra 0) the bench stores (200 cues, k=10, MiniLM
#: floor) re-score 41.0 rows a recall at 10k and 50.2 at 100k, against 66.7
#: and 85.0 with 2k+16 (which earlier stores had measured at 72): the
#: correction round re-scores the few that matter instead. Same hits
#: either way; rank p50 0.99 against 1.12 ms at 10k, 3.8 against 4.2 ms at
#: 100k (2 cores under load; rows counted by wrapping ``exact_cosines``).
FIRST_FACTOR = 1
FIRST_EXTRA = 0
#: Correction rounds before recall settles for what it has (each round makes
#: rows exact, so it ends anyway; the cap bounds the rare worst case).
MAX_ROUNDS = 4
#: Relative margin of the one-comparison prefilters in ``Cosines.unsure``:
#: far above float32 rounding of scores of a few units (~1e-6), far below
#: any bound (~1e-2).
_MARGIN = 1e-4


class Cosines:
    """Cosines of the first ``n`` rows to ``query`` (a unit vector), with the
    bound on each approximate one and which are exact."""

    def __init__(self, store: MemoryStore, query: np.ndarray, n: int, dead: np.ndarray, k: int) -> None:
        self._store, self._query = store, query
        approx, bound = store.approx_cosines(query)
        self.dense, self.bound = approx[:n], bound[:n]  # fresh arrays: ours to change
        self.exact = np.zeros(n, dtype=bool)
        any_dead = bool(dead.any())
        live = np.where(dead, np.float32(-np.inf), self.dense) if any_dead else self.dense
        rows, scores = exact_top(live, self.bound, k * FIRST_FACTOR + FIRST_EXTRA,
                                 lambda r: store.exact_cosines(r, query))
        self._set(rows, scores)
        mean = self._exact_mean(rows, dead, any_dead)
        self._slope = self._dense_slope(dead, any_dead, mean)
        #: At least every row's bound (bounds only fall to 0 from here): what
        #: ``unsure`` subtracts to find, in one comparison, the few rows
        #: whose bound can matter.
        self._bound_max = float(self.bound.max()) if n else 0.0

    def _exact_mean(self, rows: np.ndarray, dead: np.ndarray, any_dead: bool) -> float | None:
        """Shift the approximate cosines together so that the mean over the
        ranked rows is the exact one (the store's sum of unit vectors, dotted
        with the query), and return it: ``fuse`` normalises every row by
        that mean, and the codes' errors, small one by one, would move it by
        their average (6e-5 of fused score on 600 random rows). ``rows`` are
        the exact ones, all alive. The shift moves each approximate cosine
        away from the codes' by up to its own size, so it widens their
        bounds by as much. Skipped (None) when a write landed between
        the two reads (the counts differ): the mean is then off by that
        average, as in the codes."""
        count, total = self._store.ranked_unit_sum()
        alive = len(dead) - (int(np.count_nonzero(dead)) if any_dead else 0)
        if count != alive or alive <= len(rows):
            return None
        target = float(total @ self._query.astype(np.float64))
        now = float(self.dense.sum(dtype=np.float64))
        if any_dead:
            now -= float(self.dense[dead].sum(dtype=np.float64))
        exact = self.dense[rows].copy()
        shift = np.float32((target - now) / (alive - len(rows)))
        self.dense += shift  # dead rows too: fuse never reads them
        self.dense[rows] = exact
        self.bound += abs(shift)  # the approximate ones' (a boolean mask of them took 0.1 ms at 100k)
        self.bound[rows] = 0
        return target / alive

    def could_clear(self, floor: float) -> np.ndarray:
        """Rows whose exact cosine may reach ``floor`` (exact rows: whose cosine does)."""
        return self.dense + self.bound >= np.float32(floor)

    def _set(self, rows: np.ndarray, scores: np.ndarray) -> None:
        self.dense[rows] = scores
        self.bound[rows] = 0
        self.exact[rows] = True

    def rescore(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Make ``rows`` exact; ``(rows changed, change of each one's cosine)``."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        rows = rows[~self.exact[rows]]
        if not len(rows):
            return rows, np.zeros(0, dtype=np.float32)
        before = self.dense[rows].copy()
        self._set(rows, self._store.exact_cosines(rows, self._query))
        return rows, self.dense[rows] - before

    def _dense_slope(self, dead: np.ndarray, any_dead: bool, mean: float | None) -> float:
        """How much a row's fused score moves per unit of its cosine: the
        dense weight over the spread ``fuse`` normalises by (best minus mean
        of the live rows: dead ones take the live mean there), as it stands
        before any correction."""
        if not len(self.dense):
            return 0.0
        best = float(np.max(self.dense, where=~dead, initial=-np.inf) if any_dead else self.dense.max())
        if best == -np.inf:
            return 0.0
        if mean is None:
            mean = float(self.dense[~dead].mean()) if any_dead else float(self.dense.mean())
        spread = best - mean
        return DEFAULT_WEIGHTS.dense / spread if spread > 0 else 0.0

    def correct(self, rows: np.ndarray, fused: np.ndarray, context: Context | None) -> np.ndarray:
        """Make ``rows`` exact and move their fused scores with their cosines
        (the mean and the spread ``fuse`` used stay as they were), and the
        context they lend their neighbours; the rows changed."""
        changed, delta = self.rescore(rows)
        if len(changed):
            moved = np.float32(self._slope) * delta
            fused[changed] += moved
            if context is not None:
                context.shift(changed, moved, fused)
        return changed

    def unsure(self, *, picked: list[int], anti: list[int], visited: np.ndarray, fused: np.ndarray,
               dead: np.ndarray, k: int, floor: float | None,
               anchored: Callable[[np.ndarray], bool] | None, context: Context | None) -> np.ndarray:
        """Approximate rows that could still change the answer of a ranking
        that returned ``picked`` and ``anti`` after meeting ``visited``.

        A row's own fused term can move by ``slope * bound`` (its slack).
        The rows near the last hit are few: one comparison with the largest
        bound standing in for each row's (less a margin for float rounding)
        keeps them, and the test itself, as float32 on every row would run
        it, runs on those alone."""
        slope = np.float32(self._slope)
        found = np.asarray([*picked, *anti], dtype=np.int64)
        unsure = [found]
        if context is not None and len(found):
            unsure.append(context.could_lend_most(found, self.bound, slope))
        if len(picked) >= k:
            # A row whose fused score, with its exact cosine and its neighbours', could pass the last hit.
            lent = 0.0
            if context is not None:  # the most an approximate live row's slack can lend (exact ones: 0)
                most = np.max(self.bound, where=~dead, initial=0) if dead.any() else self.bound.max()
                lent = DEFAULT_WEIGHTS.window_weight * float(slope * most)
            last = np.float32(fused[picked[-1]])
            reach = float(last) - float(slope) * self._bound_max - lent
            near = np.flatnonzero(fused >= np.float32(reach - _MARGIN * (1 + abs(reach))))
            near = near[~dead[near]]
            near = near[fused[near] + slope * self.bound[near] + np.float32(lent) >= last]
            unsure.append(near[~self.exact[near]])
            if context is not None:
                unsure.append(context.could_lend_most(near, self.bound, slope))
        if floor is not None:
            f = np.float32(floor)
            met = np.asarray(visited, dtype=np.int64)
            loose = ~self.exact[met] & ~dead[met]
            unsure.append(met[loose & (np.abs(self.dense[met] - f) <= self.bound[met])])
            if anchored is not None:
                # Whole-array tests here: many rows can clear a low floor.
                surely = self.dense - self.bound >= f
                if not anchored(surely):  # else it holds whatever the approximate rows are
                    maybe = self.could_clear(floor)
                    if anchored(maybe):
                        unsure.append(np.flatnonzero(maybe & ~surely))
        rows = np.concatenate(unsure)
        return rows[~self.exact[rows]]


class Context:
    """The context term ``fuse`` added to each row (``window_weight`` times
    the most that a row of the same session within ``window`` rows lends:
    its score before context, floored at 0), redone for the rows around a
    corrected cosine instead of fusing every row again. Arrays stay in
    ``fuse``'s session order; ``pos`` maps a row to its place there."""

    def __init__(self, parts: dict[str, np.ndarray], order: np.ndarray, pos: np.ndarray,
                 grouped_session: np.ndarray, alive: np.ndarray | None) -> None:
        # fuse's own arrays, which it no longer uses: changed here in place.
        self._base, self._context = parts["base"], parts["context"]
        self._order, self._pos, self._session, self._alive = order, pos, grouped_session, alive
        w = DEFAULT_WEIGHTS.window
        self._offsets = np.array([*range(-w, 0), *range(1, w + 1)], dtype=np.int64)

    def _window(self, places: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(places, valid)`` of the neighbours of ``places`` (session order),
        one line each: which of them are of the same session."""
        n = len(self._order)
        q = places[:, None] + self._offsets[None, :]
        clipped = np.clip(q, 0, n - 1)
        valid = (q >= 0) & (q < n) & (self._session[clipped] == self._session[places][:, None])
        return clipped, valid

    def _lend(self, base: np.ndarray, places: np.ndarray) -> np.ndarray:
        lend = np.maximum(base, 0)
        return lend if self._alive is None else np.where(self._alive[self._order[places]], lend, np.float32(0))

    def could_lend_most(self, rows: np.ndarray, bound: np.ndarray, slope: np.float32) -> np.ndarray:
        """Neighbours of ``rows`` that could be the one lending the most to
        it, given each row's base score is known to within ``slope * bound``
        (row order)."""
        near, valid = self._window(self._pos[rows])
        give = slope * bound[self._order[near]]
        low = np.where(valid, self._lend(self._base[near] - give, near), np.float32(0))
        high = np.where(valid, self._lend(self._base[near] + give, near), np.float32(0))
        return self._order[near[valid & (give > 0) & (high > low.max(axis=1, keepdims=True))]]

    def shift(self, rows: np.ndarray, by: np.ndarray, fused: np.ndarray) -> None:
        """``rows``' base scores moved ``by`` (their fused scores already
        have it): redo the context of every row whose window holds one."""
        places = self._pos[rows]
        self._base[places] += by
        near, valid = self._window(places)
        affected = np.unique(near[valid])  # the window is symmetric
        if not len(affected):
            return
        near, valid = self._window(affected)
        lent = np.where(valid, self._lend(self._base[near], near), np.float32(0)).max(axis=1)
        new = DEFAULT_WEIGHTS.window_weight * lent
        fused[self._order[affected]] += new - self._context[affected]
        self._context[affected] = new
