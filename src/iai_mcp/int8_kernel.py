"""Integer dot products of the store's int8 vector codes with an int8 query,
run by onnxruntime's ``MatMulInteger`` (exact: int8 x int8 summed in int32).

numpy has no int8 matrix product that uses the CPU's integer dot
instructions: recall cast the codes to float32 a block at a time and ran BLAS
on each block, 5.8 ms for 100k x 384 on one core (3.2 ms split over two),
against 3.3-3.5 ms for the float32 matrix it replaced. onnxruntime's
MLAS kernel does the same product in 2.5 ms on two threads. The graph is one
node; it is written here in protobuf's wire format (``model_graph``'s
encoder), so no ``onnx`` package is needed.

``int8_dots(codes, query)`` returns None when onnxruntime cannot run the
graph: ``retrieval.quantized`` then keeps its numpy path (same bounds).
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
_THREADS = 2


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


_sessions: dict[int, Any] = {}
_lock = threading.Lock()
_failed = False


def _session(dim: int) -> Any | None:
    global _failed
    with _lock:
        if _failed:
            return None
        session = _sessions.get(dim)
        if session is None:
            try:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                opts.intra_op_num_threads = _THREADS
                opts.inter_op_num_threads = 1
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                session = _sessions[dim] = ort.InferenceSession(
                    matmul_integer_model(dim), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # any failure: the numpy path serves
                _failed = True
                _log("int8_kernel_unavailable", error=f"{type(exc).__name__}: {exc}"[:300],
                     consequence="recall casts the int8 codes with numpy (slower, same results)")
                return None
        return session


def int8_dots(codes: np.ndarray, query: np.ndarray) -> np.ndarray | None:
    """``codes @ query`` in int32 (``codes``: rows of int8, C-contiguous;
    ``query``: int8 of the rows' width), or None without onnxruntime."""
    session = _session(codes.shape[1])
    if session is None:
        return None
    if not len(codes):
        return np.zeros(0, dtype=np.int32)
    try:
        out = session.run(None, {"codes": codes, "query": query.reshape(-1, 1)})[0]
    except Exception as exc:
        global _failed
        _failed = True
        _log("int8_kernel_failed", error=f"{type(exc).__name__}: {exc}"[:300],
             consequence="recall casts the int8 codes with numpy from now on")
        return None
    return out.reshape(-1)
