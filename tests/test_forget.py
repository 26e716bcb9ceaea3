"""memory_forget, memory_restore, memory_update and the automatic purge,
through dispatch, the daemon, the CLI and the MCP tools; every bad input the
issue names is a typed error that changes nothing."""
from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta, timezone
from uuid import UUID, uuid4

import pytest

from iai_mcp.core import dispatch, lifecycle
from iai_mcp.core.contract import ForgetParams
from iai_mcp.core.limits import MAX_TAGS
from iai_mcp.errors import InvalidInput, LimitExceeded, NotFound
from iai_mcp.store import PURGED, STATE_CODES, MemoryStore


def capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def snapshot(store):
    return (len(store), store.stats()["provenance_entries"], store.stats()["versions"],
            [dataclasses.astuple(row) for row in store.rows()])


@pytest.fixture
def three(store):
    ids = [
        capture(store, "my PIN is 4821", session_id="s1", tags=["secret", "bank"], ts="2026-01-01T10:00:00Z"),
        capture(store, "we moved billing to DynamoDB", session_id="s1", tags=["work"], ts="2026-02-01T10:00:00Z"),
        capture(store, "Alice adopted a beagle named Max", session_id="s2", tags=["bank"], ts="2026-03-01T10:00:00Z"),
    ]
    return store, ids


def recalled(store, cue):
    return {h["record_id"] for h in dispatch(store, "memory_recall", {"cue": cue, "k": 50})["hits"]}


# ------------------------------------------------------------------ forget


def test_forget_hides_at_once_and_restore_brings_it_back(three):
    store, (pin, billing, beagle) = three
    out = dispatch(store, "memory_forget", {"ids": [pin]})
    assert set(out) == {"mode", "matched", "forgotten", "undo_until"}
    assert out["mode"] == "hide" and out["matched"] == 1 and out["forgotten"] == [pin]
    deadline = datetime.fromisoformat(out["undo_until"])
    assert timedelta(days=29, hours=23) < deadline - datetime.now(timezone.utc) <= timedelta(days=30)
    assert store.states()[0] == STATE_CODES["hidden"]
    got = dispatch(store, "memory_get", {"id": pin})
    assert got["state"] == "hidden" and got["history"][-1]["action"] == "hidden"
    assert got["history"][-1]["session_id"] is None and out["undo_until"] in got["history"][-1]["detail"]

    again = dispatch(store, "memory_forget", {"ids": [pin]})  # already hidden: deadline kept
    assert again["matched"] == 1 and again["forgotten"] == []
    assert store.row(UUID(pin)).undo_until == deadline

    assert dispatch(store, "memory_restore", {"ids": [pin, billing]}) == {"restored": [pin]}
    got = dispatch(store, "memory_get", {"id": pin})
    assert got["state"] == "active" and [h["action"] for h in got["history"]][-2:] == ["hidden", "restored"]
    assert store.states()[0] == STATE_CODES["active"]
    assert dispatch(store, "memory_restore", {"ids": [pin]}) == {"restored": []}  # idempotent


def test_selectors_combine_with_and(three):
    store, (pin, billing, beagle) = three
    by_session = dispatch(store, "memory_forget", {"session_id": "s1", "dry_run": True})
    assert by_session["forgotten"] == [pin, billing] and by_session["matched"] == 2
    both = dispatch(store, "memory_forget", {"session_id": "s1", "tags": ["bank"], "dry_run": True})
    assert both["forgotten"] == [pin]
    window = dispatch(store, "memory_forget", {"since": "2026-01-15T00:00:00Z", "until": "2026-02-15T00:00:00Z",
                                               "dry_run": True})
    assert window["forgotten"] == [billing]
    with_ids = dispatch(store, "memory_forget", {"ids": [pin, beagle], "tags": ["bank"], "session_id": "s2",
                                                 "dry_run": True})
    assert with_ids["forgotten"] == [beagle] and with_ids["matched"] == 1
    none = dispatch(store, "memory_forget", {"tags": ["nothing-has-this"]})
    assert none == {"mode": "hide", "matched": 0, "forgotten": [], "undo_until": none["undo_until"]}


def test_dry_run_changes_nothing(three):
    store, ids = three
    before = snapshot(store)
    for mode in ("hide", "purge"):
        out = dispatch(store, "memory_forget", {"tags": ["bank"], "mode": mode, "dry_run": True})
        assert out["forgotten"] == [ids[0], ids[2]] and out["mode"] == mode
        assert (out["undo_until"] is None) == (mode == "purge")
    assert snapshot(store) == before


@pytest.mark.parametrize("params,error,words", [
    ({}, InvalidInput, "at least one selector"),
    ({"ids": []}, InvalidInput, "at least one selector"),
    ({"tags": []}, InvalidInput, "at least one selector"),
    ({"mode": "purge"}, InvalidInput, "at least one selector"),
    ({"dry_run": True}, InvalidInput, "at least one selector"),
    ({"ids": ["not-a-uuid"]}, InvalidInput, "'ids[0]' must be a record id"),
    ({"ids": "0b0b0b0b-0000-0000-0000-000000000000"}, InvalidInput, "must be a list"),
    ({"ids": [str(UUID(int=7))]}, NotFound, str(UUID(int=7))),
    ({"tags": ["bank"], "mode": "erase"}, InvalidInput, "'mode' must be one of"),
    ({"since": "yesterday"}, InvalidInput, "ISO-8601"),
    ({"tags": ["bank"], "dry_run": "yes"}, InvalidInput, "true or false"),
    ({"tags": ["bank"], "everything": True}, InvalidInput, "unknown parameter"),
])
def test_forget_bad_input_is_a_typed_error_and_nothing_changes(three, params, error, words):
    store, ids = three
    before = snapshot(store)
    with pytest.raises(error, match=words.replace("[", r"\[").replace("]", r"\]")):
        dispatch(store, "memory_forget", params)
    assert snapshot(store) == before


def test_an_unknown_id_among_known_ones_forgets_none(three):
    store, ids = three
    before = snapshot(store)
    for mode in ("hide", "purge"):
        with pytest.raises(NotFound, match=str(UUID(int=9))):
            dispatch(store, "memory_forget", {"ids": [ids[0], str(UUID(int=9))], "mode": mode})
    assert snapshot(store) == before


def test_forget_past_the_limit_changes_nothing(three, monkeypatch):
    store, ids = three
    monkeypatch.setattr(lifecycle, "MAX_FORGET", 2)
    before = snapshot(store)
    with pytest.raises(LimitExceeded, match="match 3 memories"):
        dispatch(store, "memory_forget", {"since": "2000-01-01T00:00:00Z"})
    assert snapshot(store) == before


def test_purge_is_irreversible(three):
    store, (pin, billing, beagle) = three
    hidden = dispatch(store, "memory_forget", {"ids": [billing]})["forgotten"]
    out = dispatch(store, "memory_forget", {"tags": ["bank"], "mode": "purge"})
    assert out == {"mode": "purge", "matched": 2, "forgotten": [pin, beagle], "undo_until": None}
    assert "4821" not in {row.literal_surface for row in store.rows()}
    for rid in (pin, beagle):
        with pytest.raises(NotFound, match=rid):
            dispatch(store, "memory_restore", {"ids": [rid]})
        with pytest.raises(NotFound):
            dispatch(store, "memory_get", {"id": rid})
    # A purged id is unknown to forget too; the hidden one can still be purged.
    with pytest.raises(NotFound):
        dispatch(store, "memory_forget", {"ids": [pin]})
    assert dispatch(store, "memory_forget", {"ids": hidden, "mode": "purge"})["forgotten"] == hidden
    assert list(store.states()) == [PURGED, PURGED, PURGED]
    assert dispatch(store, "memory_forget", {"since": "2000-01-01T00:00:00Z"})["matched"] == 0


def test_recall_while_hiding_never_returns_a_broken_hit(three):
    """Recall masks by states(); a memory hidden between recalls is either
    returned whole or not at all, and never after the forget returned."""
    store, (pin, billing, beagle) = three
    assert pin in recalled(store, "my PIN is 4821")
    dispatch(store, "memory_forget", {"ids": [pin]})
    hits = dispatch(store, "memory_recall", {"cue": "my PIN is 4821", "k": 50})["hits"]
    for hit in hits:
        assert hit["literal_surface"] and store.row(UUID(hit["record_id"])) is not None
    assert pin not in {hit["record_id"] for hit in hits}
    dispatch(store, "memory_forget", {"ids": [pin], "mode": "purge"})
    for hit in dispatch(store, "memory_recall", {"cue": "my PIN is 4821", "k": 50})["hits"]:
        assert hit["record_id"] != pin and hit["literal_surface"]


def test_restore_bad_input(three):
    store, ids = three
    dispatch(store, "memory_forget", {"ids": [ids[0]]})
    before = snapshot(store)
    for params, error in [({}, InvalidInput), ({"ids": ["x"]}, InvalidInput),
                          ({"ids": [ids[0], str(UUID(int=3))]}, NotFound)]:
        with pytest.raises(error):
            dispatch(store, "memory_restore", params)
        assert snapshot(store) == before  # the known hidden one was not restored either


def test_restore_after_the_undo_window_is_refused(three):
    store, ids = three
    store.set_undo_window(timedelta(0))
    dispatch(store, "memory_forget", {"ids": [ids[0]]})
    with pytest.raises(NotFound, match="undo window ended"):
        dispatch(store, "memory_restore", {"ids": [ids[0]]})


# ------------------------------------------------------------------ update


def test_update_pins_tags_and_tiers_never_the_text(three):
    store, (pin, billing, beagle) = three
    text = store.row(UUID(billing)).literal_surface
    out = dispatch(store, "memory_update", {"id": billing, "pinned": True, "tags_add": ["db", "work"],
                                            "tags_remove": ["nope"], "tier": "semantic"})
    assert out["pinned"] is True and out["tags"] == ["work", "db"] and out["tier"] == "semantic"
    assert out["literal_surface"] == text and out["record_id"] == billing and out["state"] == "active"
    assert out == dispatch(store, "memory_get", {"id": billing})
    assert out["history"][-1]["action"] == "updated" and "pinned" in out["history"][-1]["detail"]
    out = dispatch(store, "memory_update", {"id": billing, "pinned": False, "tags_remove": ["work"]})
    assert out["pinned"] is False and out["tags"] == ["db"]
    versions = store.stats()["versions"]
    same = dispatch(store, "memory_update", {"id": billing, "pinned": False})  # already so: no write
    assert same["history"] == out["history"] and store.stats()["versions"] == versions


@pytest.mark.parametrize("params,error,words", [
    ({"pinned": True}, InvalidInput, "'id' is required"),
    ({"id": "{id}"}, InvalidInput, "nothing to change"),
    ({"id": "{id}", "tags_add": [], "tags_remove": []}, InvalidInput, "nothing to change"),
    ({"id": "{id}", "tags_add": ["a"], "tags_remove": ["a"]}, InvalidInput, "both added and removed"),
    ({"id": "{id}", "pinned": "true"}, InvalidInput, "true or false"),
    ({"id": "{id}", "tier": "cosmic"}, InvalidInput, "must be one of"),
    ({"id": "{id}", "text": "edited"}, InvalidInput, "unknown parameter"),
    ({"id": "{id}", "literal_surface": "edited"}, InvalidInput, "unknown parameter"),
    ({"id": str(UUID(int=5)), "pinned": True}, NotFound, str(UUID(int=5))),
    ({"id": "{id}", "tags_add": [f"t{i}" for i in range(MAX_TAGS)]}, LimitExceeded, "maximum"),
])
def test_update_bad_input_changes_nothing(three, params, error, words):
    store, ids = three
    params = {k: (ids[0] if v == "{id}" else v) for k, v in params.items()}
    before = snapshot(store)
    with pytest.raises(error, match=words):
        dispatch(store, "memory_update", params)
    assert snapshot(store) == before


# -------------------------------------------------------------- auto-purge


def test_purge_expired_with_an_injected_clock(three):
    store, (pin, billing, beagle) = three
    store.set_undo_window(timedelta(hours=1))
    dispatch(store, "memory_forget", {"ids": [pin, billing]})
    dispatch(store, "memory_restore", {"ids": [billing]})
    now = datetime.now(timezone.utc)
    assert lifecycle.purge_expired(store, now) == []  # not yet
    assert lifecycle.purge_expired(store, now + timedelta(hours=2)) == [UUID(pin)]
    assert store.row(UUID(pin)) is None and store.row(UUID(billing)).literal_surface
    assert lifecycle.purge_expired(store, now + timedelta(days=400)) == []


def test_the_undo_window_is_a_store_setting(tmp_path, fake_embedder):
    root = tmp_path / "s"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        assert store.undo_window == timedelta(days=30)
        store.set_undo_window(timedelta(days=7))
        with pytest.raises(InvalidInput):
            store.set_undo_window(timedelta(seconds=-1))
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        assert store.undo_window == timedelta(days=7)
        assert json.loads((root / "meta.json").read_text())["undo_window_s"] == 7 * 86400


def test_the_daemon_purges_expired_memories_and_survives_a_failure(tmp_path, fake_embedder, monkeypatch, capsys):
    from iai_mcp.daemon import service
    from tests.test_daemon import InThread, _client, _eventually

    root = tmp_path / "store"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        ids = [capture(store, f"memory {i}") for i in range(3)]
        store.set_undo_window(timedelta(0))
        dispatch(store, "memory_forget", {"ids": ids[:1]})
    failures = []
    real = lifecycle.purge_expired

    def flaky(store, now=None):
        if not failures:
            failures.append(1)
            raise OSError("disk on fire")
        return real(store, now)

    def gone(client, rid):
        try:
            client.call("memory_get", {"id": rid})
        except NotFound:
            return True
        return False

    monkeypatch.setattr(lifecycle, "purge_expired", flaky)
    monkeypatch.setattr(service, "AUTO_PURGE_EVERY_S", 0.1)
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    with InThread(root):
        client = _client(root)
        try:
            assert _eventually(lambda: gone(client, ids[0]))  # after the failure, the retry purged it
            client.call("memory_forget", {"ids": ids[1:2]})
            assert _eventually(lambda: gone(client, ids[1]))
            assert client.call("memory_get", {"id": ids[2]})["state"] == "active"
        finally:
            client.close()
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "auto_purge_failed"]
    assert len(failed) == 1 and "disk on fire" in failed[0]["error"]
    assert sum(e["records"] for e in events if e["event"] == "auto_purged") == 2
    log = "\n".join(map(json.dumps, events))
    for rid in ids:  # no log line names a record
        assert rid not in log and UUID(rid).hex not in log


def test_the_daemon_finishes_a_purge_that_failed_on_its_next_run(tmp_path, fake_embedder, monkeypatch, capsys):
    """The failed purge leaves PURGED slots, not hidden ones: the next hourly
    run has nothing due and still finishes it, as its log line promises."""
    from iai_mcp.daemon import service
    from iai_mcp.store.purge import INTENT_FILE
    from tests.test_daemon import InThread, _eventually
    from tests.test_purge import _failing, needles, scan

    root = tmp_path / "store"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        ids = [capture(store, f"memory {i}") for i in range(3)]
        store.set_undo_window(timedelta(0))
        dispatch(store, "memory_forget", {"ids": ids[:1]})
    found = needles(root, ids[0])
    monkeypatch.setattr(service, "AUTO_PURGE_EVERY_S", 0.1)
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    calls = _failing(monkeypatch, times=1)
    with InThread(root):
        assert _eventually(lambda: len(calls) >= 2 and not (root / INTENT_FILE).exists())
    assert scan([root], found) == []
    events = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    failed = [e for e in events if e["event"] == "auto_purge_failed"]
    assert len(failed) == 1 and failed[0]["consequence"] == "retried in 0 s"


# --------------------------------------------------------------- CLI, MCP


def _captured(cli, text, *extra):
    code, out, _ = cli("capture", text, "--json", *extra)
    assert code == 0
    return json.loads(out)["record_id"]


def test_cli_forget_restore_pin_unpin_tag(cli):
    a = _captured(cli, "my PIN is 4821", "--tag", "secret")
    b = _captured(cli, "the sky is blue")
    code, out, _ = cli("forget", "--tag", "secret", "--dry-run")
    assert code == 0 and out.startswith("would forget 1 of 1") and a in out
    code, out, _ = cli("forget", "--id", a)
    assert code == 0 and "forgot 1 of 1" in out and a in out and "until" in out
    code, out, _ = cli("restore", a, "--json")
    assert code == 0 and json.loads(out) == {"restored": [a]}
    code, out, _ = cli("restore", a)
    assert code == 0 and out.startswith("nothing to restore")
    code, out, _ = cli("pin", b)
    assert (code, out.strip()) == (0, f"pinned {b}")
    code, out, _ = cli("unpin", b, "--json")
    assert code == 0 and json.loads(out)["pinned"] is False
    code, out, _ = cli("tag", b, "--add", "sky", "--add", "colour")
    assert (code, out.strip()) == (0, f"tags of {b}: sky, colour")
    code, out, err = cli("tag", b, "--add", "x", "--remove", "x")
    assert code == 1 and "both added and removed" in err
    code, out, err = cli("forget")
    assert code == 1 and "at least one selector" in err
    code, out, err = cli("restore", str(uuid4()))
    assert code == 1 and "no memory with id" in err


def test_cli_purge_needs_yes_off_a_terminal_and_asks_on_one(cli, monkeypatch, capsys):
    a = _captured(cli, "my PIN is 4821")
    code, out, err = cli("forget", "--id", a, "--mode", "purge")
    assert code == 2 and "--yes" in err
    code, out, _ = cli("show", a)
    assert code == 0  # still there
    import builtins
    import io
    import sys

    class Tty(io.StringIO):
        def isatty(self):
            return True

    answers = iter(["n", "y"])
    monkeypatch.setattr(builtins, "input", lambda prompt: next(answers))
    monkeypatch.setattr(sys, "stdin", Tty())
    from iai_mcp.cli import main

    assert main(["forget", "--id", a, "--mode", "purge"]) == 1  # said no
    assert main(["forget", "--id", a, "--mode", "purge"]) == 0  # said yes
    assert main(["show", a]) == 1
    out = capsys.readouterr().out
    assert out.count(a) == 3 and "nothing changed" in out and "purged 1 of 1" in out  # listed before each question
    b = _captured(cli, "another secret")
    code, out, _ = cli("forget", "--id", b, "--mode", "purge", "--yes", "--json")
    assert code == 0 and json.loads(out)["forgotten"] == [b]


def test_mcp_tools_forget_restore_update(store):
    import anyio

    from iai_mcp import mcp_server as server
    from tests.test_server import DirectBackend, _session

    rid = capture(store, "my PIN is 4821")
    app, _ = server.build_server(lambda: DirectBackend(store))

    async def scenario():
        async with _session(app) as client:
            tools = {t.name: t for t in (await client.list_tools()).tools}
            forgot = await client.call_tool("memory_forget", {"ids": [rid]})
            restored = await client.call_tool("memory_restore", {"ids": [rid]})
            updated = await client.call_tool("memory_update", {"id": rid, "pinned": True})
            empty = await client.call_tool("memory_forget", {})
            return tools, forgot, restored, updated, empty

    tools, forgot, restored, updated, empty = anyio.run(scenario)
    assert tools["memory_forget"].annotations.destructiveHint is True
    assert tools["memory_restore"].annotations.idempotentHint is True
    assert "forget that" in tools["memory_forget"].description
    assert forgot.structuredContent["forgotten"] == [rid]
    assert restored.structuredContent == {"restored": [rid]}
    assert updated.structuredContent["pinned"] is True and updated.structuredContent["state"] == "active"
    assert empty.isError and "at least one selector" in empty.content[0].text


def test_forget_params_are_the_issue_names():
    assert list(ForgetParams.model_fields) == ["ids", "session_id", "tags", "since", "until", "mode", "dry_run"]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["purge", "hide"])
def test_bench_recall_latency_with_part_of_the_store_forgotten(tmp_path, mode):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": f"{repo / 'src'}{os.pathsep}{repo}"}
    subprocess.run([sys.executable, "-m", "bench.recall_latency", "--quick", "--forget", "0.1",
                    "--forget-mode", mode, "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")],
                   cwd=repo, env=env, check=True, capture_output=True, timeout=600)
    name = "recall_latency_forget.json" if mode == "purge" else f"recall_latency_forget_{mode}.json"
    data = json.loads((tmp_path / "out" / name).read_text())
    assert data["command"].startswith("python -m bench.recall_latency ")
    assert data["config"]["forget"] == {"fraction": 0.1, "mode": mode}
    for size in data["sizes"]:
        assert size["forgotten"]["forgotten"] == size["records"] // 10 and size["end_to_end_ms"]["p95"] > 0


def test_undo_until_only_when_the_call_hides_something(three):
    store, (pin, *_) = three
    assert dispatch(store, "memory_forget", {"tags": ["nothing-has-this"]})["undo_until"] is None
    would = dispatch(store, "memory_forget", {"ids": [pin], "dry_run": True})
    assert would["forgotten"] == [pin] and would["undo_until"] is not None
    assert store.row(UUID(pin)).hidden_at is None  # dry run: nothing hidden
    first = dispatch(store, "memory_forget", {"ids": [pin]})
    assert datetime.fromisoformat(first["undo_until"]) == store.row(UUID(pin)).undo_until
    again = dispatch(store, "memory_forget", {"ids": [pin]})
    assert again["forgotten"] == [] and again["undo_until"] is None
    assert dispatch(store, "memory_forget", {"ids": [pin], "dry_run": True})["undo_until"] is None


def test_local_mode_purges_expired_memories_when_it_opens_the_store(tmp_path, fake_embedder, monkeypatch):
    from iai_mcp import backend

    root = tmp_path / "store"
    with MemoryStore(path=root, embedder=fake_embedder) as store:
        ids = [capture(store, f"memory {i}") for i in range(3)]
        store.set_undo_window(timedelta(0))
        dispatch(store, "memory_forget", {"ids": ids[:1]})
        assert store.row(UUID(ids[0])) is not None  # hidden, not purged yet
    monkeypatch.setenv("IAI_MCP_LOCAL", "1")
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    local = backend.connect(root)
    try:
        assert isinstance(local, backend.LocalBackend)
        with pytest.raises(NotFound):
            local.call("memory_get", {"id": ids[0]})
        assert local.call("memory_get", {"id": ids[1]})["state"] == "active"
    finally:
        local.close()


def test_hiding_a_correction_brings_the_old_fact_back_until_it_is_restored(store):
    """While the memory that replaced another is forgotten, the old one is the
    current fact: recalled as a hit, with no trace of the hidden id anywhere a
    client can see; restoring the replacement supersedes it again."""
    old = dispatch(store, "memory_capture", {"text": "the office is in Leeds"})["record_id"]
    new = dispatch(store, "memory_capture", {"text": "the office moved to York", "supersedes": [old]})["record_id"]
    dispatch(store, "memory_forget", {"ids": [new]})

    recalled = dispatch(store, "memory_recall", {"cue": "office Leeds"})
    assert [h["record_id"] for h in recalled["hits"]] == [old] and recalled["anti_hits"] == []
    shown = dispatch(store, "memory_get", {"id": old})
    assert (shown["state"], shown["superseded_by"], shown["valid_to"]) == ("active", None, None)
    listed = dispatch(store, "memory_list", {"state": "active"})["items"]
    assert new not in json.dumps([recalled, listed])
    # An export without hidden memories holds no link to one (its import would dangle).
    exported = dispatch(store, "memory_export", {})["records"]
    assert [r["id"] for r in exported] == [old] and exported[0]["superseded_by"] is None

    dispatch(store, "memory_restore", {"ids": [new]})
    again = dispatch(store, "memory_get", {"id": old})
    assert (again["state"], again["superseded_by"]) == ("superseded", new)
    assert [h["record_id"] for h in dispatch(store, "memory_recall", {"cue": "office"})["anti_hits"]] == [old]
    assert [item["action"] for item in again["history"]][-3:] == ["superseded", "restored", "superseded"]
