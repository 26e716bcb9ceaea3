"""Memories carry their project (issue 10): the Stop hook records it from the
hook input's cwd, recall prefers it, memory_list filters by it, the session
pack gives it its own share, export and import carry it, and stores written
before the field existed still open."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from iai_mcp import hooks
from iai_mcp.core import dispatch
from iai_mcp.errors import InvalidInput
from iai_mcp.project import project_of
from iai_mcp.store import MemoryStore
from tests.test_server import DirectBackend

SAMPLE = Path(__file__).parent / "data" / "sample_transcript.jsonl"
A, B = "/work/alpha", "/work/beta"


def _capture(store, text, **extra):
    return dispatch(store, "memory_capture", {"text": text, **extra})["record_id"]


def test_project_is_the_git_root_else_the_directory(tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src" / "pkg").mkdir(parents=True)
    assert project_of(repo / "src" / "pkg") == str(repo)
    worktree = tmp_path / "wt"
    (worktree / "docs").mkdir(parents=True)
    (worktree / ".git").write_text("gitdir: ../repo/.git/worktrees/wt\n")  # a worktree's .git is a file
    assert project_of(str(worktree / "docs")) == str(worktree)
    plain = tmp_path / "notes"
    plain.mkdir()
    assert project_of(str(plain)) == str(plain)


def test_the_stop_hook_records_the_project_of_its_cwd_with_each_turn(store, tmp_path):
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "sub").mkdir()
    transcript = tmp_path / "session.jsonl"
    shutil.copy(SAMPLE, transcript)
    payload = {"session_id": "s1", "transcript_path": str(transcript), "cwd": str(repo / "sub")}
    counts = hooks.capture_transcript(DirectBackend(store), payload, tmp_path / "state")
    assert counts["inserted"] == len(store.rows()) > 0
    assert {row.project for row in store.rows()} == {str(repo)}


def test_a_backfill_takes_each_turn_s_project_from_the_cwd_claude_code_wrote_with_it(store, tmp_path):
    """import-transcripts has no hook input: each turn's project comes from the
    ``cwd`` Claude Code records on every transcript entry."""
    from iai_mcp.hooks.hosts import HOSTS

    alpha, beta = tmp_path / "alpha", tmp_path / "beta"
    (alpha / ".git").mkdir(parents=True)
    (alpha / "src").mkdir()
    beta.mkdir()
    lines = [
        {"type": "user", "cwd": str(alpha / "src"), "timestamp": "2026-12-01T10:00:00Z",
         "message": {"role": "user", "content": "the alpha build uses make"}},
        {"type": "user", "cwd": str(beta), "timestamp": "2026-12-01T10:01:00Z",
         "message": {"role": "user", "content": "beta notes live in a folder"}},
    ]
    transcript = tmp_path / "t.jsonl"
    transcript.write_text("".join(json.dumps(line) + "\n" for line in lines))
    counts = hooks.capture_transcripts(DirectBackend(store), HOSTS["claude-code"], [(transcript, "s")],
                                       tmp_path / "state")
    assert counts["inserted"] == 2
    assert {row.literal_surface: row.project for row in store.rows()} == {
        "the alpha build uses make": str(alpha), "beta notes live in a folder": str(beta)}


def test_the_session_start_hook_asks_for_its_project(store, tmp_path):
    _capture(store, "alpha note", project=str(tmp_path))
    backend = DirectBackend(store)
    hooks.session_start(backend, {"session_id": "s", "cwd": str(tmp_path)}, 3000)
    assert backend.calls[-1][0] == "session_start" and backend.calls[-1][1]["project"] == str(tmp_path)


def test_capture_keeps_the_project_and_get_shows_it(store):
    rid = _capture(store, "the alpha service listens on port 8080", project=A)
    assert dispatch(store, "memory_get", {"id": rid})["project"] == A
    with pytest.raises(InvalidInput, match="project"):
        dispatch(store, "memory_capture", {"text": "x", "project": 7})


def test_recall_prefers_the_project_but_does_not_filter_by_it(store):
    for text in ["the cat sat on the mat", "lunch is at noon on fridays", "my sister lives in lisbon",
                 "buy oat milk", "the train leaves at seven", "bob plays cello"]:
        _capture(store, text)
    # The same words in another order: the two tie on the cue without a project.
    in_a = _capture(store, "for deploy notes run make release then tag the build", project=A)
    in_b = _capture(store, "then tag the build for deploy notes run make release", project=B)
    cue = "deploy notes make release tag build"
    plain = dispatch(store, "memory_recall", {"cue": cue, "k": 2})["hits"]
    assert plain[0]["score"] == plain[1]["score"]
    for project, first, second in ((A, in_a, in_b), (B, in_b, in_a)):
        hits = dispatch(store, "memory_recall", {"cue": cue, "project": project, "k": 3})["hits"]
        assert [h["record_id"] for h in hits[:2]] == [first, second]
        assert hits[2]["project"] is None  # a preference, not a filter


def test_list_filters_by_project(store):
    in_a = _capture(store, "alpha one", project=A)
    _capture(store, "beta one", project=B)
    _capture(store, "no project at all")
    items = dispatch(store, "memory_list", {"project": A})["items"]
    assert [i["record_id"] for i in items] == [in_a]


def test_the_pack_prefers_the_project_then_pinned_and_used_ones_from_anywhere(store):
    # Older memories of project A, newer ones of B, one pinned preference from B.
    for i in range(12):
        _capture(store, f"alpha detail {i}: " + "words " * 30, project=A, ts=f"2024-01-{i + 1:02d}T00:00:00Z")
    for i in range(12):
        _capture(store, f"beta detail {i}: " + "words " * 30, project=B, ts=f"2024-06-{i + 1:02d}T00:00:00Z")
    _capture(store, "I prefer tabs over spaces.", project=B, pinned=True)
    budget = 600
    plain = dispatch(store, "session_start", {"budget_tokens": budget})["memories"]
    assert plain[0]["pinned"] and all(m["project"] == B for m in plain[1:])  # most recent first: all B
    pack = dispatch(store, "session_start", {"budget_tokens": budget, "project": A})
    kinds = [(m["pinned"], m["project"]) for m in pack["memories"]]
    assert kinds[0] == (True, B)  # pinned first, from anywhere
    projects = [p for _, p in kinds[1:]]
    first_b = projects.index(B)
    assert projects[:first_b] == [A] * first_b and first_b >= 3  # the project's own share first
    assert B in projects  # and recently used ones from anywhere still get theirs
    assert pack["budget_used"] <= budget


def test_export_and_import_carry_the_project(store, tmp_path, fake_embedder):
    _capture(store, "alpha fact", project=A)
    records = dispatch(store, "memory_export", {})["records"]
    assert records[0]["project"] == A
    other = MemoryStore(path=tmp_path / "other", embedder=fake_embedder)
    try:
        dispatch(other, "memory_import", {"records": records})
        assert [row.project for row in other.rows()] == [A]
    finally:
        other.close()


def test_rows_sealed_before_projects_existed_still_open(store):
    from iai_mcp.store.codec import decode_row, encode_row

    row = store.rows()[0] if store.rows() else None
    if row is None:
        _capture(store, "an old memory")
        row = store.rows()[0]
    old = json.loads(encode_row(row))
    del old["project"]  # what a store written before issue 10 holds
    again = decode_row(str(row.id), json.dumps(old).encode())
    assert again.project is None and again.literal_surface == row.literal_surface
