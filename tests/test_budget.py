"""Recall and the session pack keep their budget promises (issue 10).

The budget holds (an oversized hit comes back as a marked excerpt that
fits), one long hit no longer hides the shorter ones after it, and the
session pack carries pinned memories first under any budget without counting
its delivery as a use.
"""
from __future__ import annotations

from uuid import UUID

from iai_mcp.core import dispatch
from iai_mcp.core.excerpt import excerpt
from iai_mcp.core.recall import estimate_tokens

FILLER = "The weather was mild and the meeting ran long as meetings do. "


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _recall(store, cue, **extra):
    return dispatch(store, "memory_recall", {"cue": cue, **extra})


def _postmortem() -> str:
    return (FILLER * 200 + "Root cause of the outage: the postmortem found an expired TLS "
            "certificate on the load balancer. " + FILLER * 200)


def test_an_oversized_hit_comes_back_as_an_excerpt_that_fits(store):
    text = _postmortem()
    rid = _capture(store, text)
    out = _recall(store, "postmortem outage root cause", k=1, budget_tokens=50)
    assert out["budget_used"] <= 50
    [hit] = out["hits"]
    span = hit["excerpt"]
    assert span is not None and span["length"] == len(text)
    assert text[span["start"]:span["end"]] == hit["literal_surface"]
    assert "expired TLS certificate" in hit["literal_surface"]  # the best window, not the opening
    assert estimate_tokens(hit["literal_surface"]) <= 50
    full = dispatch(store, "memory_get", {"id": rid})
    assert full["literal_surface"] == text  # memory_get fetches the rest


def test_the_budget_holds_even_at_one_token(store):
    _capture(store, "note: " + "word " * 50)
    out = _recall(store, "note", budget_tokens=1)
    assert out["budget_used"] <= 1 and len(out["hits"]) == 1
    assert out["hits"][0]["excerpt"] is not None


def test_a_whole_hit_says_it_is_whole(store):
    _capture(store, "a short note about beagles")
    [hit] = _recall(store, "beagles")["hits"]
    assert hit["excerpt"] is None and hit["literal_surface"] == "a short note about beagles"


def test_one_large_hit_no_longer_hides_the_rest(store, fake_embedder):
    big = _capture(store, "deploy checklist " + "deploy step details " * 2000)
    smalls = [_capture(store, f"deploy note {i}") for i in range(4)]
    out = _recall(store, "deploy", k=5, budget_tokens=200)
    ids = [h["record_id"] for h in out["hits"]]
    assert out["budget_used"] <= 200
    assert set(smalls) <= set(ids)  # the small hits survive, wherever the big one ranked
    scores = [h["score"] for h in out["hits"]]
    assert scores == sorted(scores, reverse=True)
    for hit in out["hits"]:
        if hit["record_id"] != big:
            assert hit["excerpt"] is None


def test_a_large_later_hit_is_excerpted_into_what_is_left(store):
    first = _capture(store, "garden plan: tomatoes garden garden")
    big = _capture(store, "garden " + "the soil needs compost and patience. " * 500)
    out = _recall(store, "garden", k=2, budget_tokens=300)
    by_id = {h["record_id"]: h for h in out["hits"]}
    assert by_id[first]["excerpt"] is None
    assert by_id[big]["excerpt"] is not None
    assert out["budget_used"] <= 300


def test_only_returned_hits_get_provenance(store):
    rid = _capture(store, _postmortem())
    out = _recall(store, "postmortem", k=1, budget_tokens=50, session_id="s1")
    assert [h["record_id"] for h in out["hits"]] == [rid]
    store.flush_provenance(5)
    assert len(store.provenance_of(UUID(rid))) == 1


def test_anti_hits_never_push_the_budget_over(store):
    old = _capture(store, "launch date is March 3 " + "detail " * 50)
    new = _capture(store, "launch date moved to June 3 " + "more " * 400, supersedes=[old])
    out = _recall(store, "launch date", budget_tokens=60)
    assert [h["record_id"] for h in out["hits"]] == [new]
    assert out["budget_used"] <= 60


def test_the_excerpt_is_deterministic_and_grows_around_the_best_sentence():
    text = "Alpha one. Beta two. Gamma cue word here. Delta four. Epsilon five."
    a = excerpt(text, "cue word", 40)
    assert a == excerpt(text, "cue word", 40)
    assert "Gamma cue word here." in a.text and len(a.text) <= 40
    assert text[a.start:a.end] == a.text and a.length == len(text)
    whole = excerpt(text, "cue", len(text))
    assert (whole.start, whole.end, whole.text) == (0, len(text), text)
    opening = excerpt(text, "", 25)
    assert opening.start == 0 and len(opening.text) <= 25
    long_sentence = "x " * 500 + "needle " + "y " * 500
    cut = excerpt(long_sentence, "needle", 60)
    assert "needle" in cut.text and len(cut.text) <= 60


def test_session_pack_puts_pinned_first_under_a_small_budget(store):
    pinned = _capture(store, "Always answer in British English, with metric units, and never "
                             "use American spellings such as color or organize.", pinned=True)
    recalled = _capture(store, "ok")
    dispatch(store, "memory_recall", {"cue": "ok", "k": 1})
    out = dispatch(store, "session_start", {"budget_tokens": 50})
    assert out["memories"] and out["memories"][0]["record_id"] == pinned
    assert out["memories"][0]["why"] == "pinned"
    assert out["budget_used"] <= 50 and estimate_tokens(out["text"]) <= 50
    span = out["memories"][0]["excerpt"]
    assert span is not None and span["start"] == 0 and span["length"] > span["end"]
    assert "Always answer in British English" in out["text"] and "[…]" in out["text"]
    roomy = dispatch(store, "session_start", {"budget_tokens": 3000})
    assert [m["record_id"] for m in roomy["memories"]][:2] == [pinned, recalled]
    assert roomy["memories"][0]["excerpt"] is None


def test_session_pack_does_not_count_its_delivery_as_a_use(store):
    pinned = _capture(store, "Prefer tabs over spaces", pinned=True)
    other = _capture(store, "the build uses make")
    before = store.stats()["provenance_entries"]
    first = dispatch(store, "session_start", {})
    second = dispatch(store, "session_start", {})
    store.flush_provenance(5)
    assert store.stats()["provenance_entries"] == before
    assert first == second
    assert {m["why"] for m in second["memories"]} == {"pinned", "captured"}
    for rid in (pinned, other):
        got = dispatch(store, "memory_get", {"id": rid})
        assert got["reinforcements"] == 0 and not [
            p for p in got["provenance"] if p.get("kind") != "capture"
        ]


def test_the_cli_marks_an_excerpt(cli):
    long_text = "Intro line. " + "The postmortem root cause was a stale cache key. " * 200
    cli("capture", long_text)
    code, out, _ = cli("recall", "postmortem root cause", "--budget-tokens", "50")
    assert code == 0 and "[excerpt: characters " in out and f"of {len(long_text)};" in out
