"""core.filters: the one metadata filter that recall, memory_list and
memory_forget share, so the three select the same memories."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from iai_mcp.core import dispatch
from iai_mcp.core.filters import row_filter

CORE = Path(__file__).resolve().parent.parent / "src" / "iai_mcp" / "core"


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


@pytest.fixture
def four(store):
    return {
        "early": _capture(store, "deploy notes from monday", tags=["ops", "deploy"], ts="2025-01-01T00:00:00Z"),
        "edge": _capture(store, "deploy notes from tuesday", tags=["ops", "deploy"], ts="2025-01-02T00:00:00Z"),
        "late": _capture(store, "deploy notes from friday", tags=["ops", "deploy"], ts="2025-01-05T00:00:00Z"),
        "untagged": _capture(store, "deploy notes without tags", ts="2025-01-02T00:00:00Z"),
    }


def test_recall_list_and_forget_select_the_same_memories(store, four):
    # Both bounds are inclusive everywhere; every tag must be carried.
    selectors = {"tags": ["deploy", "ops"], "since": "2025-01-01T00:00:00Z", "until": "2025-01-02T00:00:00Z"}
    want = {four["early"], four["edge"]}
    recalled = dispatch(store, "memory_recall", {"cue": "deploy notes", **selectors})
    listed = dispatch(store, "memory_list", selectors)
    forgotten = dispatch(store, "memory_forget", {**selectors, "dry_run": True})
    assert {h["record_id"] for h in recalled["hits"]} == want
    assert {item["record_id"] for item in listed["items"]} == want
    assert set(forgotten["forgotten"]) == want


def test_row_filter_criteria(store, four):
    rows = {str(row.id): row for row in store.rows()}
    assert not row_filter() and row_filter(tags=["x"]) and row_filter(pinned=False)
    assert all(row_filter().passes(row) for row in rows.values())
    some = row_filter(tags_any=["deploy", "nope"])
    assert {rid for rid, row in rows.items() if some.passes(row)} == {four["early"], four["edge"], four["late"]}
    window = row_filter(since="2025-01-02T00:00:00Z", until="2025-01-02T00:00:00+00:00")
    assert {rid for rid, row in rows.items() if window.passes(row)} == {four["edge"], four["untagged"]}
    assert not row_filter(tier="semantic").passes(rows[four["early"]])
    assert row_filter(session_id=None, pinned=False).passes(rows[four["early"]])


@pytest.mark.parametrize("module", ["recall.py", "listing.py", "lifecycle.py"])
def test_no_module_keeps_a_filter_of_its_own(module):
    tree = ast.parse((CORE / module).read_text("utf-8"))
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert "_passes" not in names
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                and node.module == "iai_mcp.core.filters" for alias in node.names}
    assert "filter_of" in imported
