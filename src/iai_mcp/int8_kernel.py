"""Integer dot products of the store's int8 vector codes with an int8 query
(exact: int8 x int8 summed in int32), by simsimd's dot-product kernels, or
by onnxruntime's ``MatMulInteger`` where simsimd is missing or fails.

numpy has no int8 matrix product that uses the CPU's integer dot
instructions: recall cast the codes to float32 a block at a time and ran BLAS
on each block, 5.8 ms for 100k x 384 on one core (3.2 ms split over two),
against 3.3-3.5 ms for the float32 matrix it replaced. onnxruntime's MLAS
kernel does it in 2.5 ms on two threads (4.2-4.5 ms on one, under load): it
is a general matrix product, and one column is its worst case. simsimd
(2 MB, no dependencies, 0.5 ms to import) has a kernel per instruction set
for one vector against many (AVX-512 VNNI here, AVX2 or NEON elsewhere):
1.16 ms p50 for 100k x 384 on one thread, 0.085 ms for 10k (onnxruntime
0.39 ms), and one thread means no second thread to wait for on a busy
machine. Its results are checked against numpy once, on values at the
int8 extremes, before it is trusted.

The onnxruntime graph is one node; it is written here in protobuf's wire
format (``model_graph``'s encoder), so no ``onnx`` package is needed.

``int8_dots(codes, query)`` returns None when neither can run:
``retrieval.quantized`` then keeps its numpy path (same bounds).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from iai_mcp.log import logger
from iai_mcp.model_graph import bytes_field, varint_field

_log = logger("iai_mcp.int8_kernel")

#: onnx.proto field numbers and constants this graph uses.
_INT8, _INT32 = 3, 6
#: Rows from which the product is split over two threads. Below it a second
#: thread buys nothing and costs the most: at 10k rows (3.8 MB of codes) one
#: thread takes 0.39-0.42 ms and two 0.40 ms at p50, but waking the second
#: thread on a busy machine made the p95 of the scan 3.5 ms against 0.68 ms
#: (2 cores, load 2.2, ``core.dense.Cosines`` at 10k). At 100k two threads
#: nearly halve a quiet machine's scan (2.5 ms; one thread 4.2-4.5 ms under
#: load); 64k, between the two sizes measured, is where they start.
TWO_THREAD_ROWS = 65536


def _tensor_type(elem_type: int, dims: list[int | str]) -> bytes:
    """A TypeProto of a tensor: ``dims`` are sizes or symbolic names."""
    shape = b"".join(
        bytes_field(1, varint_field(1, d) if isinstance(d, int) else bytes_field(2, d.encode()))
        for d in dims
    )
    return bytes_field(1, varint_field(1, elem_type) + bytes_field(2, shape))


def _value_info(name: str, elem_type: int, dims: list[int | str]) -> bytes:
    return bytes_field(1, name.encode()) + bytes_field(2, _tensor_type(elem_type, dims))


def matmul_integer_model(dim: int) -> bytes:
    """``y[n, m] = codes[n, dim] @ query[dim, m]``, int8 in, int32 out."""
    node = (bytes_field(1, b"codes") + bytes_field(1, b"query") + bytes_field(2, b"y")
            + bytes_field(3, b"dots") + bytes_field(4, b"MatMulInteger"))
    graph = (bytes_field(1, node) + bytes_field(2, b"int8_dots")
             + bytes_field(11, _value_info("codes", _INT8, ["n", dim]))
             + bytes_field(11, _value_info("query", _INT8, [dim, "m"]))
             + bytes_field(12, _value_info("y", _INT32, ["n", "m"])))
    opset = bytes_field(1, b"") + varint_field(2, 13)
    return varint_field(1, 8) + bytes_field(7, graph) + bytes_field(8, opset)


_sessions: dict[tuple[int, int], Any] = {}
_lock = threading.Lock()
_failed = False


def _session(dim: int, threads: int) -> Any | None:
    global _failed
    with _lock:
        if _failed:
            return None
        session = _sessions.get((dim, threads))
        if session is None:
            try:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                session = _sessions[dim, threads] = ort.InferenceSession(
                    matmul_integer_model(dim), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # any failure: the numpy path serves
                _failed = True
                _log("int8_kernel_unavailable", error=f"{type(exc).__name__}: {exc}"[:300],
                     consequence="recall casts the int8 codes with numpy (slower, same results)")
                return None
        return session


_simd_state: list[Any] = []  # [] unchecked; [None] unusable; [simsimd.cdist]


def _self_check(cdist: Any) -> bool:
    """Whether ``cdist``'s int8 dot products are exact on the rows that test
    an integer kernel most: every code at +-127 (the largest sums, which
    16-bit intermediate sums would saturate) and random ones, against numpy."""
    rng = np.random.default_rng(0)
    codes = rng.integers(-127, 128, (67, 384), dtype=np.int8)
    codes[0], codes[1], codes[2, ::2] = 127, -127, -127
    for query in (np.full(384, 127, dtype=np.int8), np.full(384, -127, dtype=np.int8),
                  rng.integers(-127, 128, 384, dtype=np.int8)):
        got = np.asarray(cdist(codes, query.reshape(1, -1), metric="dot", out_dtype="int32")).reshape(-1)
        if not np.array_equal(got, codes.astype(np.int32) @ query.astype(np.int32)):
            return False
    return True


def _simd() -> Any | None:
    """simsimd's ``cdist`` once it has passed ``_self_check``, else None."""
    with _lock:
        if not _simd_state:
            cdist, why = None, ""
            try:
                from simsimd import cdist as candidate

                if _self_check(candidate):
                    cdist = candidate
                else:
                    why = "its int8 dot products differ from numpy's on this CPU"
            except Exception as exc:  # not installed, or no kernel for this CPU
                why = f"{type(exc).__name__}: {exc}"[:300]
            if cdist is None:
                _log("int8_simd_unavailable", error=why,
                     consequence="recall's int8 scan runs on onnxruntime (slower, same results)")
            _simd_state.append(cdist)
        return _simd_state[0]


def _simd_failed(exc: Exception) -> None:
    with _lock:
        _simd_state[:] = [None]
    _log("int8_simd_failed", error=f"{type(exc).__name__}: {exc}"[:300],
         consequence="recall's int8 scan runs on onnxruntime from now on")


def int8_dots(codes: np.ndarray, query: np.ndarray) -> np.ndarray | None:
    """``codes @ query`` in int32 (``codes``: rows of int8, C-contiguous;
    ``query``: int8 of the rows' width), or None when no kernel can run."""
    if not len(codes):
        return np.zeros(0, dtype=np.int32)
    cdist = _simd()
    if cdist is not None:
        try:
            return np.asarray(cdist(codes, query.reshape(1, -1), metric="dot", out_dtype="int32")).reshape(-1)
        except Exception as exc:
            _simd_failed(exc)
    return _onnx_dots(codes, query)


def _onnx_dots(codes: np.ndarray, query: np.ndarray) -> np.ndarray | None:
    session = _session(codes.shape[1], 2 if len(codes) >= TWO_THREAD_ROWS else 1)
    if session is None:
        return None
    try:
        out = session.run(None, {"codes": codes, "query": query.reshape(-1, 1)})[0]
    except Exception as exc:
        global _failed
        _failed = True
        _log("int8_kernel_failed", error=f"{type(exc).__name__}: {exc}"[:300],
             consequence="recall casts the int8 codes with numpy from now on")
        return None
    return out.reshape(-1)
