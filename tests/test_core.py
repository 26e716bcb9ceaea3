"""core.dispatch: the method contract, typed errors, and no writes on bad input."""
from __future__ import annotations

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.limits import MAX_K, MAX_TEXT_CHARS
from iai_mcp.errors import InvalidInput, LimitExceeded, NotFound, UnknownMethod
from iai_mcp.store import MemoryStore


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})


def _state(store: MemoryStore):
    return (len(store), store._log.count(), store.stats()["versions"])


def test_capture_is_verbatim_and_get_returns_it(store):
    text = "  Exact words, kept as said:\n\ttabs, trailing space ,  ünïcode 🧠  "
    out = _capture(store, text, session_id="s1", role="user", tags=["t1"], ts="2023-05-08T13:56:00Z")
    assert out["status"] == "inserted" and out["reason"]
    got = dispatch(store, "memory_get", {"id": out["record_id"]})
    assert got["literal_surface"] == text
    assert got["session_id"] == "s1" and got["role"] == "user" and got["tags"] == ["t1"]
    assert got["ts"].startswith("2023-05-08T13:56:00")
    assert got["provenance"] == []


def test_identical_text_reinforced_not_duplicated(store):
    first = _capture(store, "I prefer green tea", session_id="a")
    second = _capture(store, "I prefer green tea", session_id="b")
    assert second["status"] == "reinforced" and second["record_id"] == first["record_id"]
    assert len(store) == 1
    assert dispatch(store, "memory_get", {"id": first["record_id"]})["reinforcements"] == 1


def test_same_turn_delivered_twice_is_skipped(store):
    args = {"session_id": "s", "ts": "2024-01-01T00:00:00+00:00"}
    first = _capture(store, "hook turn", **args)
    again = _capture(store, "hook turn", **args)
    assert again["status"] == "skipped" and again["record_id"] == first["record_id"]
    assert dispatch(store, "memory_get", {"id": first["record_id"]})["reinforcements"] == 0


def test_capture_cue_is_kept_as_first_provenance_entry(store):
    out = _capture(store, "the answer is 42", cue="what is the answer?", session_id="s")
    prov = dispatch(store, "memory_get", {"id": out["record_id"]})["provenance"]
    assert [p["cue"] for p in prov] == ["what is the answer?"]


def test_recall_returns_hits_and_writes_one_provenance_entry_each(store):
    for text in ["Alice adopted a beagle named Max", "The quarterly report is due Friday",
                 "Bob plays the cello on weekends"]:
        _capture(store, text)
    out = dispatch(store, "memory_recall", {"cue": "beagle dog Max", "session_id": "s9", "k": 2})
    assert out["anti_hits"] == []
    assert out["hits"][0]["literal_surface"] == "Alice adopted a beagle named Max"
    assert len(out["hits"]) == 2
    assert out["budget_used"] > 0
    for key in ("record_id", "score", "literal_surface", "reason", "tier", "tags", "session_id", "role", "ts"):
        assert key in out["hits"][0]
    for hit in out["hits"]:
        prov = dispatch(store, "memory_get", {"id": hit["record_id"]})["provenance"]
        assert len(prov) == 1
        assert prov[0]["cue"] == "beagle dog Max" and prov[0]["session_id"] == "s9" and prov[0]["ts"]


def test_recall_budget_packs_in_order_but_always_one(store):
    for i in range(5):
        _capture(store, f"note {i}: " + "word " * 50)
    tiny = dispatch(store, "memory_recall", {"cue": "note", "budget_tokens": 1})
    assert len(tiny["hits"]) == 1
    some = dispatch(store, "memory_recall", {"cue": "note", "budget_tokens": 150})
    assert 1 <= len(some["hits"]) < 5 and some["budget_used"] <= 150
    scores = [h["score"] for h in some["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_recall_filters(store):
    _capture(store, "meeting notes about the garden", tier="semantic", tags=["home"], ts="2023-01-01T00:00:00Z")
    _capture(store, "garden party invitation", tier="episodic", tags=["social"], ts="2024-06-01T00:00:00Z")
    by_tier = dispatch(store, "memory_recall", {"cue": "garden", "tier": "semantic"})
    assert [h["literal_surface"] for h in by_tier["hits"]] == ["meeting notes about the garden"]
    by_tag = dispatch(store, "memory_recall", {"cue": "garden", "tags": ["social"]})
    assert [h["literal_surface"] for h in by_tag["hits"]] == ["garden party invitation"]
    by_time = dispatch(store, "memory_recall", {"cue": "garden", "since": "2024-01-01T00:00:00Z"})
    assert [h["literal_surface"] for h in by_time["hits"]] == ["garden party invitation"]
    none = dispatch(store, "memory_recall", {"cue": "garden", "until": "2020-01-01T00:00:00Z"})
    assert none["hits"] == []


def test_recall_on_empty_store(store):
    assert dispatch(store, "memory_recall", {"cue": "anything"}) == {
        "hits": [], "anti_hits": [], "budget_used": 0, "below_floor": 0, "note": None}


def test_recall_uses_cue_embedding_when_given(store):
    from iai_mcp.types import EMBED_DIM

    a = _capture(store, "alpha text")["record_id"]
    _capture(store, "beta text")
    vec = store.get(a).embedding
    calls = []
    real = store.embedder.embed
    store.embedder.embed = lambda texts: calls.append(texts) or real(texts)
    out = dispatch(store, "memory_recall", {"cue": "zzz unrelated", "cue_embedding": vec, "k": 1})
    assert calls == []
    assert out["hits"][0]["record_id"] == a
    assert len(vec) == EMBED_DIM


def test_recall_survives_provenance_failure(store, capsys):
    _capture(store, "still recalled")

    def broken(pairs):
        raise OSError("log unavailable")

    store.queue_provenance_batch = broken  # type: ignore[method-assign]
    out = dispatch(store, "memory_recall", {"cue": "recalled"})
    assert out["hits"]
    assert "provenance_failed" in capsys.readouterr().err


BAD_CALLS = [
    ("memory_capture", {}, "required"),
    ("memory_capture", {"text": ""}, "empty"),
    ("memory_capture", {"text": "   "}, "empty"),
    ("memory_capture", {"text": 42}, "string"),
    ("memory_capture", {"text": "x", "tier": "cosmic"}, "tier"),
    ("memory_capture", {"text": "x", "role": "wizard"}, "role"),
    ("memory_capture", {"text": "x", "tags": "notalist"}, "tags"),
    ("memory_capture", {"text": "x", "tags": [1]}, "tags"),
    ("memory_capture", {"text": "x", "ts": "yesterday"}, "ISO-8601"),
    ("memory_capture", {"text": "x", "pinned": "yes"}, "true or false"),
    ("memory_capture", {"text": "x", "bogus": 1}, "unknown parameter"),
    ("memory_capture", {"text": "x", "language": ""}, "language"),
    ("memory_capture", ["text"], "object"),
    ("memory_recall", {}, "required"),
    ("memory_recall", {"cue": "x", "k": 0}, "at least"),
    ("memory_recall", {"cue": "x", "k": "5"}, "integer"),
    ("memory_recall", {"cue": "x", "k": True}, "integer"),
    ("memory_recall", {"cue": "x", "budget_tokens": -1}, "at least"),
    ("memory_recall", {"cue": "x", "cue_embedding": [0.1] * 3}, "finite numbers"),
    ("memory_recall", {"cue": "x", "cue_embedding": [float("nan")] * 384}, "finite numbers"),
    ("memory_recall", {"cue": "x", "since": "soon"}, "ISO-8601"),
    ("memory_get", {}, "required"),
    ("memory_get", {"id": "1 OR 1=1"}, "UUID"),
    ("memory_get", {"id": "x' OR id != '"}, "UUID"),
]


@pytest.mark.parametrize("method,params,message", BAD_CALLS)
def test_bad_params_typed_error_and_nothing_written(store, method, params, message):
    _capture(store, "existing memory")
    before = _state(store)
    with pytest.raises(InvalidInput, match=message):
        dispatch(store, method, params)
    assert _state(store) == before


def test_limits(store):
    with pytest.raises(LimitExceeded):
        _capture(store, "x" * (MAX_TEXT_CHARS + 1))
    with pytest.raises(LimitExceeded):
        dispatch(store, "memory_recall", {"cue": "x", "k": MAX_K + 1})
    assert len(store) == 0


def test_unknown_method_and_missing_id(store):
    with pytest.raises(UnknownMethod, match="memory_capture"):
        dispatch(store, "memory_delete_everything", {})
    with pytest.raises(NotFound):
        dispatch(store, "memory_get", {"id": "00000000-0000-0000-0000-000000000000"})


@pytest.mark.slow
def test_real_embedder_end_to_end(tmp_path):
    """Integration: the real MiniLM model through dispatch (no fake)."""
    from iai_mcp.embed import MiniLMEmbedder

    store = MemoryStore(path=tmp_path / "real")
    for text in ["My sister lives in Lisbon and works as an architect.",
                 "We should buy oat milk and coffee beans.",
                 "The train to Berlin leaves at 7:40 tomorrow."]:
        assert _capture(store, text)["status"] == "inserted"
    assert isinstance(store.embedder, MiniLMEmbedder)
    out = dispatch(store, "memory_recall", {"cue": "Where does my sibling live?", "k": 1})
    assert out["hits"][0]["literal_surface"].startswith("My sister lives in Lisbon")
    store.close()
    from iai_mcp.embed import HashEmbedder
    from iai_mcp.errors import EmbedderMismatch

    with pytest.raises(EmbedderMismatch, match="hash-embedder"):
        MemoryStore(path=tmp_path / "real", embedder=HashEmbedder())


def test_capture_many_dedups_within_batch_and_against_store(store):
    from iai_mcp.core.capture import CaptureRequest, capture_many

    _capture(store, "already here", session_id="old")
    results = capture_many(store, store.embedder, [
        CaptureRequest("first new", session_id="s"),
        CaptureRequest("already here", session_id="s"),
        CaptureRequest("second new", session_id="s"),
        CaptureRequest("first new", session_id="other"),
    ])
    assert [r.status for r in results] == ["inserted", "reinforced", "inserted", "reinforced"]
    assert results[3].record_id == results[0].record_id
    assert len(store) == 3


def test_context_from_same_session_survives_interleaving(store):
    """A reply whose words are not in the cue is found through the question
    right before it in the same session, even when another window's turns
    were captured in between."""
    _capture(store, "What breed is your new puppy?", session_id="A", role="user")
    for i in range(12):
        _capture(store, f"unrelated chatter {i} about spreadsheets", session_id="B")
    _capture(store, "She is a golden retriever.", session_id="A", role="assistant")
    for i in range(12):
        _capture(store, f"filler line {i} about taxes and invoices", session_id="B")
    out = dispatch(store, "memory_recall", {"cue": "puppy breed", "k": 2})
    texts = [h["literal_surface"] for h in out["hits"]]
    assert texts[0] == "What breed is your new puppy?"
    assert "She is a golden retriever." in texts


def test_recall_cue_secret_redacted_in_provenance(store):
    rid = _capture(store, "deploy notes for the staging box")["record_id"]
    dispatch(store, "memory_recall", {"cue": "staging deploy password=hunter2hunter2"})
    cues = [p["cue"] for p in dispatch(store, "memory_get", {"id": rid})["provenance"]]
    assert cues and "hunter2" not in cues[0] and "[REDACTED:" in cues[0]


def test_get_sees_provenance_of_a_recall_that_returned(store):
    store.enable_provenance_queue(coalesce_ms=200)
    rid = _capture(store, "queued provenance is visible to get")["record_id"]
    dispatch(store, "memory_recall", {"cue": "queued provenance", "k": 1})
    assert len(dispatch(store, "memory_get", {"id": rid})["provenance"]) == 1


# ------------------------------------------------------------ the contract


def test_every_method_has_a_contract_and_a_function():
    from iai_mcp.core import METHODS, contract

    assert set(METHODS) == set(contract.METHODS)
    for name, method in contract.METHODS.items():
        config = method.params.model_config
        assert config["strict"] and config["extra"] == "forbid", name


def test_resendable_methods_are_declared_in_the_contract():
    from iai_mcp.core import contract
    from iai_mcp.daemon import client, wire

    declared = {name for name, method in contract.METHODS.items() if method.resendable}
    # memory_list and memory_tags only read (issue 9); keyed_digest only computes (issue 11).
    assert declared == {"memory_capture", "memory_recall", "memory_get", "memory_list", "memory_tags", "keyed_digest"}
    assert all(client._resendable(name) for name in declared | {wire.PING})
    assert not any(client._resendable(name) for name in set(contract.METHODS) - declared)
    assert not client._resendable("a_method_added_later")


def test_the_contract_and_the_client_load_nothing_heavy():
    import json
    import subprocess
    import sys

    script = (
        "import json, sys\n"
        "import iai_mcp.daemon.client, iai_mcp.core.contract\n"
        "heavy = ('numpy', 'lancedb', 'pyarrow', 'onnxruntime', 'mcp', 'iai_mcp.store', 'iai_mcp.embed')\n"
        "print(json.dumps([m for m in heavy if m in sys.modules]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert json.loads(done.stdout) == [], done.stderr


def test_none_means_not_given_and_the_contract_default_applies(store):
    out = dispatch(store, "memory_capture", {"text": "defaults", "tier": None, "pinned": None,
                                             "language": None, "tags": None})
    got = dispatch(store, "memory_get", {"id": out["record_id"]})
    assert (got["tier"], got["pinned"], got["language"], got["tags"]) == ("episodic", False, "en", [])


def test_a_precomputed_cue_embedding_may_be_a_tuple(store):
    rid = _capture(store, "tuple vector")["record_id"]
    vec = tuple(store.get(rid).embedding)
    assert dispatch(store, "memory_recall", {"cue": "x", "cue_embedding": vec, "k": 1})["hits"][0]["record_id"] == rid
