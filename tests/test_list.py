"""memory_list (states, filters, orders, cursors that survive captures between
pages) and memory_tags, through dispatch, MCP and the CLI."""
from __future__ import annotations

import json
from datetime import timedelta
from uuid import UUID

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.contract import MAX_LIST
from iai_mcp.core.listing import encode_cursor
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.types import utcnow


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def _list(store, **params):
    return dispatch(store, "memory_list", params)


def _all_pages(store, between=None, **params):
    seen, cursor, pages = [], None, 0
    while True:
        page = _list(store, **params, **({"cursor": cursor} if cursor else {}))
        seen += [item["record_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            return seen, pages
        if between:
            between(pages)


def _hide(store, rid):
    now = utcnow()
    store.update(UUID(rid), hidden_at=now, undo_until=now + timedelta(days=30))


def test_states_filters_and_orders(store):
    a = _capture(store, "alpha", tags=["work", "x"], ts="2024-01-01T00:00:00Z", session_id="s1")
    b = _capture(store, "beta", tags=["home"], ts="2024-02-01T00:00:00Z", pinned=True)
    c = _capture(store, "gamma", tags=["work"], ts="2024-03-01T00:00:00Z", supersedes=[a])
    d = _capture(store, "delta", ts="2024-04-01T00:00:00Z", tier="semantic")
    _hide(store, d)
    ids = lambda **p: [i["record_id"] for i in _list(store, **p)["items"]]
    assert ids() == [c, b]
    assert ids(state="hidden") == [d] and ids(state="superseded") == [a]
    assert ids(state="all") == [d, c, b, a] and ids(state="all", order="oldest") == [a, b, c, d]
    assert ids(state="all", tags=["work"]) == [c, a] and ids(state="all", tags=["work", "x"]) == [a]
    assert ids(state="all", tags_any=["x", "home"]) == [b, a]
    assert ids(state="all", session_id="s1") == [a] and ids(pinned=True) == [b] and ids(pinned=False) == [c]
    assert ids(state="all", since="2024-02-01T00:00:00Z", until="2024-03-01T00:00:00Z") == [c, b]
    assert ids(state="all", tier="semantic") == [d]
    hidden = _list(store, state="hidden")["items"][0]
    assert hidden["state"] == "hidden" and hidden["undo_until"] is not None
    superseded = _list(store, state="superseded")["items"][0]
    assert superseded["superseded_by"] == c and superseded["valid_to"].startswith("2024-03-01")


def test_most_recalled_order_and_frozen_counts(store):
    rare = _capture(store, "rarely recalled note about kites")
    often = _capture(store, "often recalled note about bread")
    never = _capture(store, "never recalled")
    for _ in range(3):
        dispatch(store, "memory_recall", {"cue": "bread", "k": 1})
    dispatch(store, "memory_recall", {"cue": "kites", "k": 1})
    first = _list(store, order="most_recalled", limit=1)
    assert [i["record_id"] for i in first["items"]] == [often]
    # Recalls between pages do not move items across the cursor.
    for _ in range(5):
        dispatch(store, "memory_recall", {"cue": "never recalled", "k": 1})
    rest = _list(store, order="most_recalled", cursor=first["next_cursor"])
    assert [i["record_id"] for i in rest["items"]] == [rare, never]


@pytest.mark.parametrize("order", ["newest", "oldest", "most_recalled"])
def test_cursor_pages_never_skip_or_repeat_while_captures_happen(store, order):
    start = [_capture(store, f"memory {i}", ts=f"2024-01-{i + 1:02d}T00:00:00Z") for i in range(12)]
    extra = iter(range(100))

    def capture_some(page):
        n = next(extra)
        # Old and new times: some land before the cursor, some after.
        _capture(store, f"late {n}", ts=f"2024-01-{(n * 5) % 28 + 1:02d}T12:00:00Z")
        _capture(store, f"now {n}")
        if page == 2:
            _hide(store, start[0])  # forgetting between pages too

    seen, pages = _all_pages(store, between=capture_some, order=order, limit=3)
    assert pages >= 4
    assert len(seen) == len(set(seen))                      # nothing repeated
    assert set(start[1:]) <= set(seen)                       # nothing that was there skipped


def test_limit_and_bad_input(store):
    for i in range(3):
        _capture(store, f"m{i}")
    page = _list(store, limit=2)
    assert len(page["items"]) == 2 and page["next_cursor"]
    with pytest.raises(LimitExceeded):
        _list(store, limit=MAX_LIST + 1)
    for bad in [{"limit": 0}, {"state": "deleted"}, {"order": "random"}, {"pinned": "yes"},
                {"since": "yesterday"}, {"tags": [""]}, {"bogus": 1}]:
        with pytest.raises(InvalidInput):
            _list(store, **bad)
    for cursor in ["", "not a cursor", "e30", page["next_cursor"] + "x",
                   encode_cursor("oldest", (1, "x"), None), encode_cursor("newest", (1, 2), None)]:
        with pytest.raises(InvalidInput, match="cursor"):
            _list(store, cursor=cursor) if cursor else _list(store, cursor=" ")
    with pytest.raises(InvalidInput, match="cursor"):
        _list(store, order="oldest", cursor=page["next_cursor"])


def test_tags_count_active_memories_only(store):
    a = _capture(store, "one", tags=["work", "urgent"])
    _capture(store, "two", tags=["work"])
    _capture(store, "three", tags=["home"], supersedes=[a])
    h = _capture(store, "four", tags=["home", "secret"])
    _hide(store, h)
    assert dispatch(store, "memory_tags", {}) == {"tags": [{"tag": "home", "count": 1}, {"tag": "work", "count": 1}]}
    with pytest.raises(InvalidInput):
        dispatch(store, "memory_tags", {"state": "all"})


def test_list_and_tags_through_the_cli(cli):
    cli("capture", "alpha note", "--tag", "work")
    cli("capture", "beta note", "--tag", "work", "--tag", "home", "--pinned")
    code, out, err = cli("list", "--limit", "1")
    assert code == 0 and "beta note" in out and "pinned" in out and "--cursor" in err
    cursor = err.split("--cursor ")[1].split()[0]
    code, out, _ = cli("list", "--limit", "1", "--cursor", cursor, "--json")
    data = json.loads(out)
    assert [i["literal_surface"] for i in data["items"]] == ["alpha note"] and data["next_cursor"] is None
    code, out, _ = cli("list", "--state", "hidden")
    assert code == 0 and out.strip() == "no memories"
    code, out, _ = cli("tags")
    assert out.split() == ["2", "work", "1", "home"]
    code, out, _ = cli("tags", "--json")
    assert json.loads(out)["tags"][0] == {"tag": "work", "count": 2}
    code, _, err = cli("list", "--cursor", "garbage")
    assert code == 1 and "cursor" in err
    # pinned is a yes/no the caller may leave unsaid: --pinned and --no-pinned.
    code, out, _ = cli("list", "--no-pinned")
    assert code == 0 and "alpha note" in out and "beta note" not in out
    code, out, _ = cli("list", "--pinned")
    assert code == 0 and "beta note" in out and "alpha note" not in out


def test_show_says_where_a_memory_is_in_its_life(cli):
    _, out, _ = cli("capture", "the office is in Leeds", "--json")
    old = json.loads(out)["record_id"]
    cli("supersede", old, "--text", "the office moved to York")
    code, out, _ = cli("show", old)
    assert code == 0 and "state: superseded" in out and "superseded_by: " in out
    assert "history (2):" in out and "superseded" in out.split("history (2):")[1]
