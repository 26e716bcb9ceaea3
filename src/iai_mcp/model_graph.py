"""The embedding model's graph, rewritten so its word-embedding table stays int8.

The shipped model keeps every weight as int8 plus a float scale and
dequantises it in the graph: ``Cast(weight_q) * weight_scale``. onnxruntime
folds those constants when it builds the session, so each weight is held as
float32. For the matrices of the attention and feed-forward layers that is
what makes a query fast (about 3 ms here, 80 ms with folding off), but the
word-embedding table (30,522 x 384) is only ever gathered from: folded, it is
47 MB of float32 of which a query reads a few rows.

``gather_before_dequantise`` moves the ``Gather`` in front of the
dequantisation, for that table only::

    Gather(Cast(weight_q) * weight_scale, ids)
 -> Cast(Gather(weight_q, ids)) * Gather(weight_scale, ids)

Each gathered element goes through the same cast and the same float
multiply as before, so the outputs are bit-identical (checked by
``tests/test_model_graph.py`` against the unchanged model), and the model's
name (its weights' sha256) still describes the vectors it makes. Measured on
the model alone (onnxruntime 1.32, 2 threads, after one batch and
``malloc_trim``): VmRSS 152 -> 119 MB, VmHWM 268 -> 180 MB, session build
0.15 -> 0.08 s.

The rewrite works on protobuf's wire format directly (the ``onnx`` package
would be a 30 MB dependency and half a second of import for three nodes), in
memory on every load: about 13 ms, so there is no derived file to cache,
keep private or verify. A graph that does not have the expected shape is
returned unchanged (same outputs, the old footprint): ``None`` says so.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

#: The initializers of the table that is rewritten (the shipped model's names).
TABLE = "inner.embeddings.word_embeddings"

# Field numbers of onnx.proto (ModelProto, GraphProto, NodeProto).
_MODEL_GRAPH = 7
_GRAPH_NODE = 1
_NODE_INPUT, _NODE_OUTPUT, _NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE = 1, 2, 3, 4, 5
_GRAPH_INITIALIZER = 5
_TENSOR_DIMS, _TENSOR_NAME = 1, 8
_ATTR_NAME, _ATTR_INT = 1, 3
_VARINT, _FIXED64, _BYTES, _FIXED32 = 0, 1, 2, 5


class _Malformed(ValueError):
    """Not protobuf, or not the fields onnx.proto gives them."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@dataclass(frozen=True)
class _Field:
    number: int
    wire: int
    start: int  # of the tag: data[start:end] is the whole field, as encoded
    end: int
    payload: memoryview  # the value of a length-delimited field


def _fields(data: memoryview) -> Iterator[_Field]:
    pos = 0
    while pos < len(data):
        start = pos
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        payload = data[pos:pos]
        if wire == _VARINT:
            _, pos = _varint(data, pos)
        elif wire == _FIXED64:
            pos += 8
        elif wire == _FIXED32:
            pos += 4
        elif wire == _BYTES:
            size, pos = _varint(data, pos)
            payload = data[pos:pos + size]
            pos += size
        else:
            raise _Malformed(f"wire type {wire}")
        if pos > len(data) or number == 0:
            raise _Malformed("field runs past its message")
        yield _Field(number, wire, start, pos, payload)


def bytes_field(number: int, value: bytes) -> bytes:
    """Field ``number`` of a message, length-delimited (strings, bytes, messages)."""
    return _encode_varint(number << 3 | _BYTES) + _encode_varint(len(value)) + value


def varint_field(number: int, value: int) -> bytes:
    """Field ``number`` of a message, a non-negative integer (int32/int64/enum)."""
    return _encode_varint(number << 3 | _VARINT) + _encode_varint(value)


@dataclass
class _Node:
    inputs: list[str]
    outputs: list[str]
    op_type: str
    attributes: list[bytes]  # each AttributeProto field, as encoded


def _node(field: _Field) -> _Node:
    inputs: list[str] = []
    outputs: list[str] = []
    op_type = ""
    attributes: list[bytes] = []
    for f in _fields(field.payload):
        if f.number == _NODE_INPUT:
            inputs.append(bytes(f.payload).decode())
        elif f.number == _NODE_OUTPUT:
            outputs.append(bytes(f.payload).decode())
        elif f.number == _NODE_OP_TYPE:
            op_type = bytes(f.payload).decode()
        elif f.number == _NODE_ATTRIBUTE:
            attributes.append(bytes(f.payload))
    return _Node(inputs, outputs, op_type, attributes)


def _encode_node(name: str, op_type: str, inputs: list[str], outputs: list[str],
                 attributes: list[bytes]) -> bytes:
    body = b"".join(
        [bytes_field(_NODE_INPUT, i.encode()) for i in inputs]
        + [bytes_field(_NODE_OUTPUT, o.encode()) for o in outputs]
        + [bytes_field(_NODE_NAME, name.encode()), bytes_field(_NODE_OP_TYPE, op_type.encode())]
        + [bytes_field(_NODE_ATTRIBUTE, a) for a in attributes]
    )
    return bytes_field(_GRAPH_NODE, body)


def _gathers_rows(gather: _Node) -> bool:
    """Whether the Gather takes whole rows (``axis`` 0, its default)."""
    for raw in gather.attributes:
        fields = {f.number: f for f in _fields(memoryview(raw))}
        if _ATTR_NAME in fields and bytes(fields[_ATTR_NAME].payload) == b"axis":
            return _ATTR_INT in fields and _varint(raw, fields[_ATTR_INT].start + 1)[0] == 0
    return True


def _dims(fields: list[_Field], name: str) -> list[int] | None:
    """The shape of initializer ``name`` of the graph, None if there is none."""
    for f in fields:
        if f.number != _GRAPH_INITIALIZER or f.wire != _BYTES:
            continue
        tensor = list(_fields(f.payload))
        if not any(t.number == _TENSOR_NAME and bytes(t.payload) == name.encode() for t in tensor):
            continue
        dims: list[int] = []
        for t in tensor:
            if t.number == _TENSOR_DIMS and t.wire == _VARINT:
                dims.append(_varint(f.payload, t.start + 1)[0])
            elif t.number == _TENSOR_DIMS and t.wire == _BYTES:  # packed
                pos, data = 0, t.payload
                while pos < len(data):
                    value, pos = _varint(data, pos)
                    dims.append(value)
        return dims
    return None


def _rewritten_graph(graph: memoryview) -> list[bytes | memoryview] | None:
    """The rewritten graph's encoding, in parts (joined once, by the caller:
    each copy of 22 MB costs about 5 ms)."""
    fields = list(_fields(graph))
    nodes = {i: _node(f) for i, f in enumerate(fields) if f.number == _GRAPH_NODE and f.wire == _BYTES}
    weight_q, weight_f, weight, scale = (f"{TABLE}.weight_q", f"{TABLE}.weight_f",
                                         f"{TABLE}.weight", f"{TABLE}.weight_scale")
    found = {"cast": [], "mul": [], "gather": [], "other": []}
    for i, n in nodes.items():
        if n.op_type == "Cast" and n.inputs == [weight_q] and n.outputs == [weight_f]:
            found["cast"].append(i)
        elif n.op_type == "Mul" and n.inputs == [weight_f, scale] and n.outputs == [weight]:
            found["mul"].append(i)
        elif n.op_type == "Gather" and len(n.inputs) == 2 and n.inputs[0] == weight:
            found["gather"].append(i)
        elif {weight_q, weight_f, weight} & set(n.inputs):
            found["other"].append(i)  # another reader of the table: leave the graph alone
    if [len(found[k]) for k in ("cast", "mul", "gather", "other")] != [1, 1, 1, 0]:
        return None
    cast, gather = nodes[found["cast"][0]], nodes[found["gather"][0]]
    if len(gather.outputs) != 1 or len(cast.attributes) != 1 or not _gathers_rows(gather):
        return None
    table, scales = _dims(fields, weight_q), _dims(fields, scale)
    # One scale per row of the table: gathered with the rows, it scales each as before.
    if table is None or scales is None or len(table) != 2 or scales != [table[0], 1]:
        return None
    ids, out = gather.inputs[1], gather.outputs[0]
    rows_q, rows_scale, rows_f = f"{TABLE}.rows_q", f"{TABLE}.rows_scale", f"{TABLE}.rows_f"
    replacement = b"".join([
        _encode_node("iai_gather_rows_q", "Gather", [weight_q, ids], [rows_q], gather.attributes),
        _encode_node("iai_gather_rows_scale", "Gather", [scale, ids], [rows_scale], gather.attributes),
        _encode_node("iai_cast_rows", "Cast", [rows_q], [rows_f], cast.attributes),
        _encode_node("iai_dequantise_rows", "Mul", [rows_f, rows_scale], [out], []),
    ])
    dropped = {found["cast"][0], found["mul"][0]}
    parts: list[bytes | memoryview] = []
    for i, f in enumerate(fields):
        if i in dropped:
            continue
        # In the gather's place: its inputs (initializers, a graph input) come first anyway.
        parts.append(replacement if i == found["gather"][0] else graph[f.start:f.end])
    return parts


def gather_before_dequantise(model: bytes) -> bytes | None:
    """``model`` (a serialised ONNX ModelProto) with the word-embedding table
    gathered before it is dequantised; None if the graph is not the one this
    rewrite knows (then use ``model`` as it is)."""
    data = memoryview(model)
    try:
        parts: list[bytes | memoryview] = []
        rewritten = False
        for f in _fields(data):
            if f.number == _MODEL_GRAPH and f.wire == _BYTES and not rewritten:
                graph = _rewritten_graph(f.payload)
                if graph is None:
                    return None
                size = sum(len(part) for part in graph)
                parts += [_encode_varint(_MODEL_GRAPH << 3 | _BYTES) + _encode_varint(size), *graph]
                rewritten = True
            else:
                parts.append(data[f.start:f.end])
        return b"".join(parts) if rewritten else None
    except (_Malformed, UnicodeDecodeError):
        return None
