"""Backfill (``import-transcripts``) and the Stop hook share one parser and
one cursor per transcript: every turn is captured exactly once, whichever
runs first, and cursors name transcripts only by a digest keyed by the store."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from iai_mcp import hooks
from iai_mcp.errors import InvalidInput
from iai_mcp.store import MemoryStore

DATA = Path(__file__).parent / "data"
CASES = DATA / "transcripts" / "claude-code"


def _tree(home: Path) -> list[Path]:
    """~/.claude/projects as Claude Code lays it out: a folder per project,
    a file per session named by its id."""
    paths = []
    for i, source in enumerate(sorted(CASES.glob("*.jsonl")) + [DATA / "sample_transcript.jsonl"]):
        session = json.loads(source.read_text().splitlines()[-1])["sessionId"]
        target = home / ".claude" / "projects" / f"-home-dev-app{i % 2}" / f"{session}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
        paths.append(target)
    return paths


def _said(paths: list[Path]) -> list[str]:
    """Every distinct text of every transcript, per session (what should be stored once)."""
    texts = []
    for path in paths:
        turns, _ = hooks.read_turns(path)
        texts += sorted({t.text for t in turns})
    return texts


def _rows(store_path: Path) -> list[tuple[str, str | None, int]]:
    with MemoryStore(path=store_path) as store:
        return sorted((r.literal_surface, r.session_id, r.reinforcements) for r in store.rows())


def _stop(cli, transcript: Path) -> dict[str, int]:
    payload = {"session_id": transcript.stem, "transcript_path": str(transcript), "hook_event_name": "Stop"}
    code, out, err = cli("hook", "stop", "--json", stdin=json.dumps(payload))
    assert code == 0, err
    return json.loads(out)


def test_backfill_then_the_stop_hook_capture_each_turn_exactly_once(cli, _isolate_home):
    paths = _tree(_isolate_home)
    expected = _said(paths)
    code, out, err = cli("import-transcripts", "--json")
    assert code == 0, err
    assert json.loads(out) == {"transcripts": len(paths), "turns": json.loads(out)["turns"],
                               "inserted": len(expected), "reinforced": 0, "skipped": 0}

    # The Stop hook on the same transcripts, one of them with a new turn.
    with paths[0].open("a") as fh:
        fh.write(json.dumps({"type": "user", "sessionId": paths[0].stem, "timestamp": "2025-10-01T08:00:00Z",
                             "message": {"role": "user", "content": "One more thing: ship on Fridays."}}) + "\n")
    counts = [_stop(cli, path) for path in paths]
    assert counts[0] == {"turns": 1, "inserted": 1, "reinforced": 0, "skipped": 0}
    assert counts[1:] == [{"turns": 0, "inserted": 0, "reinforced": 0, "skipped": 0}] * (len(paths) - 1)

    rows = _rows(cli.store)
    assert sorted(text for text, _, _ in rows) == sorted(expected + ["One more thing: ship on Fridays."])
    assert {reinforced for *_, reinforced in rows} == {0}
    assert {session for _, session, _ in rows} == {p.stem for p in paths}

    code, out, _ = cli("import-transcripts", "--json")  # a second backfill finds nothing new
    assert json.loads(out) == {"transcripts": len(paths), "turns": 0, "inserted": 0, "reinforced": 0, "skipped": 0}
    assert _rows(cli.store) == rows


def test_the_stop_hook_then_a_backfill_sends_nothing_again(cli, _isolate_home):
    paths = _tree(_isolate_home)
    for path in paths:
        _stop(cli, path)
    rows = _rows(cli.store)
    code, out, _ = cli("import-transcripts", "--json")
    assert code == 0 and json.loads(out)["turns"] == 0 and _rows(cli.store) == rows


def test_dry_run_counts_and_changes_nothing(cli, _isolate_home):
    paths = _tree(_isolate_home)
    code, out, _ = cli("import-transcripts", "--dry-run")
    assert code == 0
    assert out == f"{len(paths)} transcripts, {sum(len(hooks.read_turns(p)[0]) for p in paths)} new turns: " \
                  f"up to {len(_said(paths))} would be stored\n"
    # Issue 11 review: no store, key or daemon is created to count (there are no cursors yet).
    assert not cli.store.exists()
    # On a store whose cursors hold every turn, a dry run finds nothing new and writes nothing.
    assert cli("import-transcripts")[0] == 0
    rows = _rows(cli.store)
    code, out, _ = cli("import-transcripts", "--dry-run", paths[0].as_posix())
    assert code == 0 and out == "1 transcript, 0 new turns: up to 0 would be stored\n"
    assert _rows(cli.store) == rows


def test_paths_and_since_choose_the_transcripts(cli, _isolate_home, tmp_path):
    paths = _tree(_isolate_home)
    old = paths[1]
    os.utime(old, (1_600_000_000, 1_600_000_000))  # September 2020
    code, out, _ = cli("import-transcripts", str(paths[0].parent), str(old), "--since", "2021-01-01", "--json")
    folder = sorted(p for p in paths if p.parent == paths[0].parent and p != old)
    assert json.loads(out)["transcripts"] == len(folder)
    assert {session for _, session, _ in _rows(cli.store)} == {p.stem for p in folder}
    code, _, err = cli("import-transcripts", str(tmp_path / "nowhere"))
    assert code == 1 and "neither a transcript nor a folder" in err
    with pytest.raises(SystemExit):  # a usage error
        cli("import-transcripts", "--since", "last tuesday")


def test_progress_is_a_bar_on_a_terminal_and_counts_otherwise(cli, _isolate_home, monkeypatch):
    import sys

    from iai_mcp.cli import hooks as cli_hooks

    paths = _tree(_isolate_home)
    monkeypatch.setattr(cli_hooks._Progress, "EVERY", 2)
    _, _, err = cli("import-transcripts", "--dry-run")
    assert f"iai-mcp: 2/{len(paths)} transcripts" in err and "it/s" not in err
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    _, _, err = cli("import-transcripts", "--dry-run")
    assert f"{len(paths)}/{len(paths)}" in err and "transcript" in err and "2/6 transcripts," not in err


# ------------------------------------------------------------------ cursors


def test_hook_state_never_holds_a_transcript_path(cli, tmp_path):
    transcript = tmp_path / "secret-project" / "0b6f3c1e-6d2a-4f0e-9a51-3c7d2e8f1a01.jsonl"
    transcript.parent.mkdir()
    shutil.copy(CASES / "slash-command.jsonl", transcript)
    _stop(cli, transcript)
    state = list((cli.store / hooks.STATE_DIR).iterdir())
    assert any(p.name.startswith("cursor-") for p in state)
    for path in state:
        blob = path.name + path.read_text()
        assert "secret-project" not in blob and transcript.stem not in blob


def test_cursor_files_with_the_path_in_clear_are_migrated(cli, tmp_path):
    transcript = tmp_path / "s.jsonl"
    shutil.copy(CASES / "interrupted.jsonl", transcript)
    state = cli.store / hooks.STATE_DIR
    state.mkdir(parents=True)
    # What earlier versions wrote: the path in clear, the offset after the last line.
    old = state / "stop-0123456789abcdef01234567.json"
    old.write_text(json.dumps({"transcript": str(transcript), "offset": transcript.stat().st_size}))
    unreadable = state / "stop-ffffffffffffffffffffffff.json"
    unreadable.write_text("{")
    assert _stop(cli, transcript)["turns"] == 0  # the old offset was kept
    assert not old.exists() and not unreadable.exists()
    assert all(str(transcript) not in p.read_text() for p in state.iterdir())


def test_cursor_names_are_keyed_by_the_store(store, fake_embedder, tmp_path):
    from iai_mcp.core import dispatch

    params = {"purpose": "hook-cursor", "values": ["/home/a/t.jsonl", "/home/a/u.jsonl"]}
    first = dispatch(store, "keyed_digest", params)["digests"]
    assert dispatch(store, "keyed_digest", params)["digests"] == first  # stable
    assert len(set(first)) == 2 and all(len(d) == 32 for d in first)
    with MemoryStore(path=tmp_path / "other", embedder=fake_embedder) as other:
        assert set(dispatch(other, "keyed_digest", params)["digests"]).isdisjoint(first)
    assert store.log_name("/home/a/t.jsonl") not in first[0]  # its own subkey, not the log's
    for bad in ({"purpose": "anything", "values": ["x"]}, {"purpose": "hook-cursor", "values": []}):
        with pytest.raises(InvalidInput):
            dispatch(store, "keyed_digest", bad)


@pytest.mark.slow  # real processes, the real daemon and model
def test_backfill_and_hook_through_the_daemon_with_the_real_model(_isolate_home, tmp_path):
    import subprocess
    import sys

    paths = _tree(_isolate_home)
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if k not in ("IAI_MCP_LOCAL", "IAI_MCP_TEST_EMBEDDER")}

    def run(*argv: str, stdin: str = "") -> dict:
        done = subprocess.run([sys.executable, "-m", "iai_mcp", "--store", str(store), *argv, "--json"],
                              input=stdin, capture_output=True, text=True, env=env, timeout=300, check=False)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run("import-transcripts")
    assert (first["transcripts"], first["inserted"]) == (len(paths), len(_said(paths)))
    with paths[-1].open("a") as fh:
        fh.write(json.dumps({"type": "user", "timestamp": "2025-10-01T08:00:00Z",
                             "message": {"role": "user", "content": "Also: the cat is called Miso."}}) + "\n")
    payload = json.dumps({"session_id": paths[-1].stem, "transcript_path": str(paths[-1])})
    assert run("hook", "stop", stdin=payload) == {"turns": 1, "inserted": 1, "reinforced": 0, "skipped": 0}
    assert run("import-transcripts")["turns"] == 0
    hits = run("recall", "what is the cat called", "--k", "1")["hits"]
    assert hits[0]["literal_surface"] == "Also: the cat is called Miso."


# ------------------------------------------------------- overlapping runs


def _entry(i: int, role: str, text: str) -> str:
    message = {"role": role, "content": text if role == "user" else [{"type": "text", "text": text}]}
    return json.dumps({"type": role, "sessionId": "s", "uuid": f"u{i}",
                       "timestamp": f"2025-09-01T10:00:{i:02d}.000Z", "message": message}) + "\n"


def test_overlapping_stop_hooks_capture_each_turn_once(store, tmp_path):
    """Claude Code's async Stop hook of the next turn can start while the
    last one is still storing: the second waits for the first's cursor, so
    no turn is sent twice, and each run sends only its own new turns."""
    import threading

    from iai_mcp.core import dispatch

    transcript = tmp_path / "t.jsonl"
    first = ["Use port 8443 for the admin API.", "Admin API moved to 8443."]
    second = ["Rotate the admin token weekly.", "Token rotation is now weekly."]
    transcript.write_text("".join(_entry(i, ("user", "assistant")[i % 2], t) for i, t in enumerate(first)))
    sent: list[str] = []
    digests, first_storing, second_started = [], threading.Event(), threading.Event()
    serial = threading.Lock()

    class SlowBackend:
        def call(self, method, params=None):
            if method == "keyed_digest":
                digests.append(1)
                if len(digests) == 2:
                    second_started.set()
            if method == "memory_import" and not first_storing.is_set():
                # The first run is still storing when the second starts.
                first_storing.set()
                assert second_started.wait(10)
            with serial:
                if method == "memory_import":
                    sent.extend(r["text"] for r in params["records"])
                return dispatch(store, method, params)

    state = tmp_path / "state"
    payload = {"session_id": "s", "transcript_path": str(transcript)}
    results: dict[str, dict] = {}
    one = threading.Thread(target=lambda: results.setdefault("one", hooks.capture_transcript(SlowBackend(), payload, state)))
    one.start()
    assert first_storing.wait(10)  # the first run has read its turns and is storing them
    with open(transcript, "a") as fh:  # the next turn is written, and its Stop hook runs
        fh.write("".join(_entry(i + 2, ("user", "assistant")[i % 2], t) for i, t in enumerate(second)))
    two = threading.Thread(target=lambda: results.setdefault("two", hooks.capture_transcript(SlowBackend(), payload, state)))
    two.start()
    one.join(30)
    two.join(30)
    assert not one.is_alive() and not two.is_alive()
    assert sorted(sent) == sorted(first + second)  # each turn sent once
    assert sum(r["inserted"] for r in results.values()) == 4
    assert sum(r["skipped"] + r["reinforced"] for r in results.values()) == 0
    assert hooks.capture_transcript(SlowBackend(), payload, state)["turns"] == 0


def test_a_cursor_never_moves_back_past_another_runs(tmp_path):
    from iai_mcp.hooks import cursors

    cursors.write(tmp_path, "k", 100)
    cursors.write(tmp_path, "k", 50, read_as=0)  # a run that read 0 finishing late
    assert cursors.stored(tmp_path, "k") == 100
    cursors.write(tmp_path, "k", 20, read_as=100)  # the run that found the transcript rewritten
    assert cursors.stored(tmp_path, "k") == 20
