"""doctor on a path with no store (issue 11 review): one FAIL, nothing
created; only the default store is created on a first run (or --init); the
daemon line shows times for people."""
from __future__ import annotations

import json
import re

from iai_mcp import doctor


def test_doctor_on_a_missing_store_fails_and_creates_nothing(cli, tmp_path):
    missing = tmp_path / "mistyped"
    code, out, _ = cli("--store", str(missing), "doctor")
    said = (f"FAIL store: no store at {missing}; check --store or IAI_MCP_STORE (iai-mcp init, "
            "or doctor --init, creates an empty one there)")
    assert code == 1 and out.splitlines() == [said]
    assert not missing.exists()
    # IAI_MCP_STORE names one too: the fixture's store does not exist yet.
    code, out, _ = cli("doctor", "--json")
    assert code == 1 and [c["status"] for c in json.loads(out)] == ["FAIL"] and not cli.store.exists()
    code, _, _ = cli("--store", str(missing), "doctor", "--init")
    assert code == 0 and (missing / "meta.json").is_file()


def test_doctor_creates_the_default_store_on_a_first_run(cli, monkeypatch, _isolate_home):
    monkeypatch.delenv("IAI_MCP_STORE")
    code, out, _ = cli("doctor")
    assert code == 0 and (_isolate_home / ".iai-mcp" / "meta.json").is_file(), out


def test_the_daemon_line_shows_times_for_people(monkeypatch, tmp_path):
    from iai_mcp.daemon import lifecycle

    monkeypatch.setattr(lifecycle, "status", lambda path: {"pid": 42, "started_at": 1796466940.35, "locked": False})
    check = doctor._daemon_check(tmp_path)
    assert "1796466940" not in check.detail
    assert re.fullmatch(r"running: pid=42, started_at=2026-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d, locked=no",
                        check.detail), check.detail
