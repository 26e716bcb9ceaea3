"""Recall ranks by the time a cue names, and the relevance floor lets
keyword-backed hits through once the store holds something relevant
(issue 10, "Finding more")."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from iai_mcp.core import dispatch
from iai_mcp.errors import InvalidInput

NOW = datetime(2024, 3, 20, 18, 0, tzinfo=timezone.utc)
# Two hikes among other notes; the older one shares more words with the cue,
# so without the time prior it ranks first.
OLD = "Went hiking in the Dolomites with Marco, two days of hiking."
NEW = "On Saturday I went hiking on the ridge trail above the lake."
CUE = "Where did I go hiking last week?"
OTHER = ["Booked the dentist for a cleaning.", "The sourdough starter needs feeding twice a day.",
         "Marta prefers tea over coffee.", "Renewed the car insurance with the same company.",
         "The quarterly report is due on Friday.", "Bought a new desk lamp for the study."]


def _capture(store, text, said):
    return dispatch(store, "memory_capture", {"text": text, "ts": said.isoformat()})["record_id"]


def _hikes(store):
    for n, text in enumerate(OTHER):
        _capture(store, text, NOW - timedelta(days=30 + 7 * n))
    return _capture(store, OLD, NOW - timedelta(days=60)), _capture(store, NEW, NOW - timedelta(days=4))


def _ids(out):
    return [h["record_id"] for h in out["hits"]]


def test_what_did_i_do_last_week_ranks_last_weeks_memory_first(store):
    old, new = _hikes(store)
    args = {"cue": CUE, "k": 2, "min_score": -1}
    # The same cue with no time in it ranks the older, wordier note first...
    plain = dispatch(store, "memory_recall", {**args, "cue": "Where did I go hiking?", "now": NOW.isoformat()})
    assert _ids(plain) == [old, new]
    # ... "last week", read against the time asked, puts last week's first.
    out = dispatch(store, "memory_recall", {**args, "now": NOW.isoformat()})
    assert _ids(out) == [new, old]
    assert "said around 'last week'" in out["hits"][0]["reason"]
    assert "said around" not in out["hits"][1]["reason"]


def test_the_time_is_read_against_now_and_only_ranks(store):
    old, new = _hikes(store)
    # Asked two months later, "last week" points at neither: words decide.
    later = dispatch(store, "memory_recall", {"cue": CUE, "k": 2, "min_score": -1,
                                              "now": (NOW + timedelta(days=60)).isoformat()})
    assert _ids(later) == [old, new]
    # Asked back then, last week's note is the older one: it stays first, and the other still comes back.
    back = dispatch(store, "memory_recall", {"cue": CUE, "k": 2, "min_score": -1,
                                             "now": (NOW - timedelta(days=56)).isoformat()})
    assert _ids(back) == [old, new]


def test_a_month_the_cue_names_ranks_that_months_memory_first(store):
    for n, text in enumerate(OTHER):
        _capture(store, text, datetime(2023, 1 + n, 3, tzinfo=timezone.utc))
    may = _capture(store, "Dinner at the harbour with Ana.", datetime(2023, 5, 12, tzinfo=timezone.utc))
    august = _capture(store, "Dinner with Ana and her brother at the harbour, the harbour dinner.",
                    datetime(2023, 8, 15, tzinfo=timezone.utc))
    out = dispatch(store, "memory_recall", {"cue": "Who did I have dinner with at the harbour in May 2023?",
                                            "k": 2, "min_score": -1})
    assert _ids(out) == [may, august]


def test_a_bad_now_is_refused(store):
    _capture(store, NEW, NOW)
    for bad in ("last tuesday", "2024-13-01", 5):
        with pytest.raises(InvalidInput, match="now"):
            dispatch(store, "memory_recall", {"cue": CUE, "now": bad})


LEASE = "The lease on the Berlin flat ends in March."
RENEW = "The lease on the Berlin flat ends in March, and renewing it will cost more."
DEPLOY = "Deploy with GITHUB_TOKEN set in the CI secrets, then run make release."


def test_the_floor_lets_keyword_backed_hits_through_when_the_store_is_relevant(store):
    """The hash embedder scores a text against itself 1.0 and anything else
    far lower: with min_score 0.9 only the identical note clears the floor.
    Its neighbour in words (the renewal) comes back too; the unrelated note
    does not."""
    lease = dispatch(store, "memory_capture", {"text": LEASE})["record_id"]
    renew = dispatch(store, "memory_capture", {"text": RENEW})["record_id"]
    dispatch(store, "memory_capture", {"text": DEPLOY})
    out = dispatch(store, "memory_recall", {"cue": LEASE, "k": 3, "min_score": 0.9})
    assert _ids(out) == [lease, renew]
    assert out["below_floor"] == 1


def test_the_floor_still_returns_nothing_when_no_memory_clears_it(store):
    """Keyword matches alone never pass: a cue no memory is close to returns
    nothing, however many words it shares with them."""
    for text in (LEASE, RENEW, DEPLOY):
        dispatch(store, "memory_capture", {"text": text})
    out = dispatch(store, "memory_recall", {"cue": "When does the Berlin flat lease end?", "k": 3,
                                            "min_score": 0.9})
    assert out["hits"] == [] and out["note"]


def test_a_filter_whose_memories_are_all_below_the_floor_rescues_nothing(store):
    """The rescue needs a memory the query could return to clear the floor:
    with tags=["b"], the identical note (tag a) does not count, so the
    keyword neighbour tagged b is not let through and the answer is empty."""
    dispatch(store, "memory_capture", {"text": LEASE, "tags": ["a"]})
    dispatch(store, "memory_capture", {"text": RENEW, "tags": ["b"]})
    out = dispatch(store, "memory_recall", {"cue": LEASE, "k": 3, "min_score": 0.9, "tags": ["b"]})
    assert out["hits"] == [] and out["note"]
    # The same neighbour comes back once a memory in scope clears the floor.
    lease_b = dispatch(store, "memory_capture", {"text": LEASE + " (copy)", "tags": ["b"]})["record_id"]
    out = dispatch(store, "memory_recall", {"cue": LEASE + " (copy)", "k": 3, "min_score": 0.9, "tags": ["b"]})
    assert _ids(out)[0] == lease_b and len(out["hits"]) == 2


@pytest.mark.slow
def test_last_week_with_the_real_model_and_default_floor(tmp_path):
    """Integration: MiniLM and its default floor. Two notes about the same
    kind of thing, the older one closer in words; "last week" picks the one
    said last week."""
    from iai_mcp.store import MemoryStore

    store = MemoryStore(path=tmp_path / "real")
    try:
        older = _capture(store, "I went climbing with Sam at the gym.", NOW - timedelta(days=45))
        recent = _capture(store, "I went to the climbing gym with Priya after work.", NOW - timedelta(days=3))
        for n, text in enumerate(OTHER):
            _capture(store, text, NOW - timedelta(days=10 + n))
        out = dispatch(store, "memory_recall", {"cue": "Who did I go climbing with last week?", "k": 3,
                                                "now": NOW.isoformat()})
        assert _ids(out)[:2] == [recent, older]
        plain = dispatch(store, "memory_recall", {"cue": "Who did I go climbing with?", "k": 3,
                                                  "now": NOW.isoformat()})
        assert _ids(plain)[:2] == [older, recent]
    finally:
        store.close()


@pytest.mark.parametrize("cue", ["what happened 10000 years ago", "plans for December 9999", "31 December, 9999"])
def test_an_absurd_time_in_the_cue_never_fails_recall(store, cue):
    """Issue 10 finding 1: these cues raised OverflowError / ValueError out of
    memory_recall. They recall by their words, with no time prior."""
    note = _capture(store, "Plans for the archive: keep it for ten thousand years.", NOW)
    out = dispatch(store, "memory_recall", {"cue": cue, "k": 1, "min_score": -1})
    assert _ids(out) == [note]
    assert "said around" not in out["hits"][0]["reason"]
