"""Cosines over int8 vectors, each with a bound on its error, and the exact
top-k found from them by re-scoring only the candidates the bounds allow.

Each vector ``v`` is kept as int8 codes ``c`` and one float32 scale ``s``
(``v ~ s * c``, the largest component mapped to 127): a quarter of the
float32 matrix (100k x 384: 38 MB against 154 MB). The residual ``r = v - s*c``
is what is lost; for a query ``q`` the cosine from the codes differs from the
exact one by ``|q . r| / |v| <= |q| * |r| / |v|`` (Cauchy-Schwarz), so each
row carries that ``slack`` and no exact score can lie outside
``approx +- slack``. On MiniLM vectors the slack is about 0.01 of cosine and
the real error about 0.0005: a candidate pass over the codes, then the exact
cosine of the few rows whose interval reaches the k-th best exact score,
returns exactly the float32 top-k.

Measured (numpy 2.4, 2 cores, 100k x 384): float32 matvec 3.3 ms; int8
codes cast block by block into a reused float32 buffer, then BLAS: 4.0 ms;
float16 cast the same way: 47 ms, so int8.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from iai_mcp.retrieval.top import at_least

#: Rows cast to float32 at a time: the buffer (1024 x 384 x 4 B = 1.5 MB per
#: thread that recalls) is reused, not faulted in per call; 512 to 8192-row blocks
#: timed alike (6.9-10.7 ms at 100k on the loaded 2-core machine, f32 matvec 10.2 ms).
SCAN_ROWS = 1024
#: Added to every slack: float32 rounding of the two dot products (384 terms,
#: values below 1) stays far under it.
ROUNDING = 1e-5

#: Rows from which an ``int8_dots`` kernel is used: below it, its fixed cost
#: per call (~40 us) is more than the cast-and-BLAS pass.
KERNEL_ROWS = 4096

_buffers = threading.local()


def quantize(vectors: np.ndarray, norms: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(codes, scales, slack)`` of ``vectors`` (rows), ``norms`` their
    exact norms (clamped above 0). A zero vector gets scale 0 and slack 0."""
    vectors = np.asarray(vectors, dtype=np.float32)
    peak = np.abs(vectors).max(axis=1) if vectors.size else np.zeros(len(vectors), np.float32)
    scales = (peak / np.float32(127)).astype(np.float32)
    safe = np.where(scales > 0, scales, np.float32(1))
    # Two float32 temporaries of the block's size, worked in place.
    work = vectors / safe[:, None]
    np.rint(work, out=work)
    np.clip(work, -127, 127, out=work)
    codes = work.astype(np.int8)
    np.multiply(work, scales[:, None], out=work)
    np.subtract(vectors, work, out=work)  # the residual
    slack = np.linalg.norm(work, axis=1) / norms
    # Above the measured residual by a hair, so float rounding here never makes it a bound too tight.
    return codes, scales, (slack * np.float32(1.001)).astype(np.float32)


def _buffer(dim: int) -> np.ndarray:
    buf = getattr(_buffers, "buf", None)
    if buf is None or buf.shape[1] != dim:
        buf = _buffers.buf = np.empty((SCAN_ROWS, dim), dtype=np.float32)
    return buf


def _dots(codes: np.ndarray, query: np.ndarray) -> np.ndarray:
    """``codes @ query``, the codes cast block by block into this thread's buffer."""
    out = np.empty(len(codes), dtype=np.float32)
    buf = _buffer(codes.shape[1])
    for start in range(0, len(codes), SCAN_ROWS):
        end = min(len(codes), start + SCAN_ROWS)
        block = buf[: end - start]
        block[...] = codes[start:end]  # the cast, into the reused buffer
        np.matmul(block, query, out=out[start:end])
    return out


def quantize_query(query: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(codes, scale, error)`` of a query vector: ``query ~ scale * codes``
    (int8, the largest component mapped to 127), and an upper bound on the
    norm of what that loses."""
    query = np.asarray(query, dtype=np.float64)
    peak = float(np.abs(query).max()) if query.size else 0.0
    if peak == 0.0:
        return np.zeros(len(query), dtype=np.int8), 0.0, 0.0
    scale = peak / 127
    codes = np.clip(np.rint(query / scale), -127, 127).astype(np.int8)
    error = float(np.linalg.norm(query - scale * codes.astype(np.float64)))
    return codes, scale, error * 1.001 + 1e-9


def approx_cosines(codes: np.ndarray, scales: np.ndarray, norms: np.ndarray, slack: np.ndarray,
                   query: np.ndarray,
                   int8_dots: Callable[[np.ndarray, np.ndarray], np.ndarray | None] | None = None,
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``(approx, bound)``: each row's cosine to ``query`` from its codes, and
    how far the exact cosine can be from it (``|exact - approx| <= bound``).

    With ``int8_dots`` (``codes @ int8 query`` in int32: ``iai_mcp.int8_kernel``)
    and at least ``KERNEL_ROWS`` rows, the query is quantised too and the
    product runs on the CPU's integer instructions (100k x 384: 1.2 ms on
    one thread with simsimd, 2.5 ms on two with onnxruntime, against
    3.2-5.8 ms for the cast-and-BLAS below). The query's own
    rounding ``e`` adds ``|s * c . e| / |v| <= (1 + slack) * |e|`` to each
    row's bound (``|s * c| <= |v| + |r|``): on the 100k bench store and its
    cues, 61 rows on average reach the top-k threshold instead of 47."""
    query = np.asarray(query, dtype=np.float32)
    qnorm = float(np.linalg.norm(query))
    n = len(codes)
    # Two passes over the rows for the scores and two for the bounds, not
    # nine: each is ~30 us at 100k rows. Reordering the float32 products
    # moves a score by a few ulps, far under ROUNDING.
    factor = scales[:n] / norms[:n]
    out, q_error = None, 0.0
    if int8_dots is not None and n >= KERNEL_ROWS:
        q_codes, q_scale, q_error = quantize_query(query)
        dots = int8_dots(codes, q_codes)
        if dots is not None:
            # |dots| <= 127 * 127 * 384 < 2**24: exact in float32.
            factor *= np.float32(q_scale)
            out = np.multiply(dots, factor, dtype=np.float32, casting="unsafe")
        else:
            q_error = 0.0  # the cast-and-BLAS pass below uses the query as it is
    if out is None:
        out = _dots(codes, query)
        out *= factor
    # slack * |q| + (1 + slack) * e + ROUNDING, as slack * (|q| + e) + (e + ROUNDING).
    bound = slack[:n] * np.float32(qnorm + q_error)
    bound += np.float32(q_error + ROUNDING)
    return out, bound


def exact_top(approx: np.ndarray, bound: np.ndarray, k: int,
              rescore: Callable[[np.ndarray], np.ndarray], extra: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, exact)``: every row that can be among the ``k`` best exact
    scores, and those scores; ``rescore(rows)`` gives exact scores. Rows
    scoring ``-inf`` in ``approx`` (masked out) are never candidates.

    First the best ``k + extra`` by ``approx`` are re-scored; the k-th best
    exact score among them is a floor ``t`` for the true k-th best, so any
    other row whose ``approx + bound`` reaches ``t`` is re-scored too. Rows
    left out then score below ``t`` for certain: the exact top-k is among
    ``rows`` (ties included)."""
    if k <= 0 or not len(approx):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    first = at_least(approx, k + extra)
    first = first[np.isfinite(approx[first])]
    exact = np.asarray(rescore(first), dtype=np.float32)
    if len(first) < k:
        return first, exact
    t = np.float32(np.partition(exact, len(exact) - k)[len(exact) - k])
    # approx + bound >= t on the rows that can reach it: bound <= its
    # largest, so approx >= t - largest (less a margin for the rounding of
    # that subtraction) holds them all; -inf rows never reach a finite t.
    near = np.flatnonzero(approx >= np.float32(float(t) - float(bound.max()) - 1e-6))
    near = near[approx[near] + bound[near] >= t]
    more = np.setdiff1d(near, first, assume_unique=True)
    if not len(more):
        return first, exact
    return np.concatenate([first, more]), np.concatenate([exact, np.asarray(rescore(more), dtype=np.float32)])
