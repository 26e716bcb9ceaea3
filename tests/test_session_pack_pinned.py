"""Pinned memories come first in the session pack, with or without a project
(issue 10 review): a pinned memory its share had no room for goes into the
next share, never out of the pack while less important ones fill it."""
from __future__ import annotations

import pytest

from iai_mcp.core import dispatch

A, B = "/work/alpha", "/work/beta"


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


@pytest.mark.parametrize("project", [None, A])
def test_five_pinned_that_fit_the_budget_are_all_packed_whole(store, project):
    for i in range(8):
        _capture(store, f"alpha detail {i}: " + "words " * 30, project=A)
        _capture(store, f"beta detail {i}: " + "words " * 30, project=B)
    pinned = {_capture(store, f"standing preference {i}: " + "always " * 50, pinned=True, project=B)
              for i in range(5)}
    budget = 600
    params = {"budget_tokens": budget, **({"project": project} if project else {})}
    pack = dispatch(store, "session_start", params)
    memories = pack["memories"]
    assert {m["record_id"] for m in memories[:5]} == pinned  # all five, and first
    assert all(m["excerpt"] is None for m in memories[:5])  # whole: they fit the budget
    assert pack["budget_used"] <= budget


def test_a_pinned_memory_longer_than_the_budget_is_still_cut_to_an_excerpt(store):
    _capture(store, "short note", project=A)
    rid = _capture(store, "a very long standing preference. " * 200, pinned=True)
    pack = dispatch(store, "session_start", {"budget_tokens": 200, "project": A})
    first = pack["memories"][0]
    assert first["record_id"] == rid and first["excerpt"] is not None
    assert pack["budget_used"] <= 200
