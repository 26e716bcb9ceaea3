"""memory_recall's relevance floor (issue 10): ``min_score``, a note when it
leaves nothing, provenance only for returned hits, and a session pack that
never fills with what the floor left out."""
from __future__ import annotations

from uuid import UUID

import pytest

from iai_mcp.core import dispatch
from iai_mcp.errors import InvalidInput
from iai_mcp.store import MemoryStore

DEVOPS = [
    "Deploy with GITHUB_TOKEN set in the CI secrets, then run make release.",
    "The staging cluster runs on three nodes behind the nginx ingress.",
    "Rotate the deploy keys every ninety days.",
]
BILLING = "How much was the billing invoice for the accounting team last month?"


def _fill(store) -> list[str]:
    return [dispatch(store, "memory_capture", {"text": t})["record_id"] for t in DEVOPS]


def _recalled_entries(store, ids):
    store.flush_provenance(5)
    return sum(len(store.provenance_of(UUID(rid))) for rid in ids)


def test_nothing_above_the_floor_returns_no_hits_says_so_and_logs_nothing(store):
    ids = _fill(store)
    out = dispatch(store, "memory_recall", {"cue": BILLING, "min_score": 0.9, "session_id": "s"})
    assert out["hits"] == [] and out["budget_used"] == 0
    assert out["below_floor"] == 3
    assert "min_score 0.9" in out["note"]
    assert _recalled_entries(store, ids) == 0


def test_hits_above_the_floor_come_back_and_only_they_get_provenance(store):
    ids = _fill(store)
    # The hash embedder scores the text against itself 1.0 and the others far lower.
    out = dispatch(store, "memory_recall", {"cue": DEVOPS[1], "min_score": 0.9, "k": 3})
    assert [h["record_id"] for h in out["hits"]] == [ids[1]]
    assert out["note"] is None and out["below_floor"] == 2
    assert _recalled_entries(store, ids) == 1


def test_the_session_pack_never_fills_with_hits_below_the_floor(store):
    _fill(store)
    dispatch(store, "memory_recall", {"cue": BILLING, "min_score": 0.9, "session_id": "s1"})
    pack = dispatch(store, "session_start", {"session_id": "s2"})
    assert pack["memories"] and all(m["why"] != "recalled" for m in pack["memories"])


def test_min_score_off_returns_weak_matches_and_bad_values_are_refused(store):
    _fill(store)
    out = dispatch(store, "memory_recall", {"cue": BILLING, "min_score": -1, "k": 3})
    assert len(out["hits"]) == 3 and out["below_floor"] == 0
    store.flush_provenance(5)
    before = store.stats()["provenance_entries"]
    for bad in (1.5, -2, "high"):
        with pytest.raises(InvalidInput, match="min_score"):
            dispatch(store, "memory_recall", {"cue": BILLING, "min_score": bad})
    store.flush_provenance(5)
    assert store.stats()["provenance_entries"] == before == 3


@pytest.mark.slow
def test_the_default_floor_of_the_real_model_rejects_an_unrelated_cue(tmp_path):
    """Integration: MiniLM's calibrated floor (0.2) with no min_score given:
    a billing question against deploy notes returns nothing, a deploy
    question still finds its note."""
    store = MemoryStore(path=tmp_path / "real")
    try:
        ids = _fill(store)
        out = dispatch(store, "memory_recall", {"cue": BILLING, "session_id": "s1"})
        assert out["hits"] == [] and out["note"]
        assert _recalled_entries(store, ids) == 0
        pack = dispatch(store, "session_start", {"session_id": "s2"})
        assert all(m["why"] != "recalled" for m in pack["memories"])
        found = dispatch(store, "memory_recall", {"cue": "how do we deploy a release?"})
        assert found["hits"][0]["record_id"] == ids[0]
    finally:
        store.close()
