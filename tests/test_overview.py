"""memory_overview (issue 12): the counts and series the viewer's Overview draws."""
from __future__ import annotations

from datetime import timedelta

import pytest

from iai_mcp.core import dispatch
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.types import utcnow


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def test_counts_by_state_tier_tag_and_project(store):
    a = _capture(store, "tea with lemon", tags=["drinks", "home"], tier="semantic")
    _capture(store, "coffee black", tags=["drinks"])
    c = _capture(store, "how to brew", tier="procedural")
    dispatch(store, "memory_forget", {"ids": [c]})
    _capture(store, "tea with honey now", supersedes=[a])
    o = dispatch(store, "memory_overview", {})
    assert o["states"] == {"active": 2, "hidden": 1, "superseded": 1}
    assert o["tiers"] == [{"tier": "episodic", "count": 2}]  # active memories only
    assert o["tags"] == [{"tag": "drinks", "count": 1}]
    assert o["projects"] == [{"project": None, "count": 2}]


def test_days_count_captures_and_recalls_and_most_recalled_ranks_by_recalls(store):
    a = _capture(store, "the wifi password is on the fridge", cue="wifi?")
    b = _capture(store, "the garage code is 4711")
    _capture(store, "old note", ts="2020-01-01T00:00:00Z")
    for _ in range(3):
        dispatch(store, "memory_recall", {"cue": "wifi password", "k": 1})
    dispatch(store, "memory_recall", {"cue": "garage code", "k": 1})
    store.flush_provenance(5)
    o = dispatch(store, "memory_overview", {"days": 7, "top": 5})
    today = utcnow().date()
    assert [d["day"] for d in o["days"]] == [(today - timedelta(days=6 - i)).isoformat() for i in range(7)]
    # Captures by when they were stored (a ts in 2020 is still captured today);
    # the capture's cue is not a recall.
    assert o["days"][-1] == {"day": today.isoformat(), "captures": 3, "recalls": 4}
    assert sum(d["captures"] + d["recalls"] for d in o["days"][:-1]) == 0
    ranked = [(m["record_id"], m["count"]) for m in o["most_recalled"]]
    assert ranked == [(a, 3), (b, 1)]  # recalls only: not a's capture cue
    assert o["most_recalled"][0]["excerpt"].startswith("the wifi password")
    assert o["unreadable"] == 0


def test_a_forgotten_memory_leaves_most_recalled(store):
    a = _capture(store, "remember the milk")
    dispatch(store, "memory_recall", {"cue": "milk", "k": 1})
    store.flush_provenance(5)
    dispatch(store, "memory_forget", {"ids": [a]})
    assert dispatch(store, "memory_overview", {})["most_recalled"] == []


@pytest.mark.parametrize("params,error", [
    ({"days": 0}, InvalidInput), ({"days": 367}, LimitExceeded), ({"top": 0}, InvalidInput),
    ({"days": "7"}, InvalidInput), ({"weeks": 2}, InvalidInput),
])
def test_bad_params_are_refused(store, params, error):
    with pytest.raises(error):
        dispatch(store, "memory_overview", params)


def test_it_is_not_an_mcp_tool_and_reads_only():
    from iai_mcp.core import contract

    method = contract.method("memory_overview")
    assert not method.tool and method.read_only and not method.destructive


def test_the_excluded_session_is_not_counted_as_recalls(store):
    a = _capture(store, "the boiler is serviced every October", cue="boiler?")
    dispatch(store, "memory_recall", {"cue": "boiler service", "k": 1, "session_id": "assistant"})
    for _ in range(2):
        dispatch(store, "memory_recall", {"cue": "boiler service", "k": 1, "session_id": "iai-mcp-ui"})
    store.flush_provenance(5)
    everyone = dispatch(store, "memory_overview", {"days": 1})
    assert [(m["record_id"], m["count"]) for m in everyone["most_recalled"]] == [(a, 3)]
    assert everyone["days"][-1]["recalls"] == 3
    others = dispatch(store, "memory_overview", {"days": 1, "exclude_session": "iai-mcp-ui"})
    assert [(m["record_id"], m["count"]) for m in others["most_recalled"]] == [(a, 1)]
    assert others["days"][-1]["recalls"] == 1
