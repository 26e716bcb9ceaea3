"""Lean from cold (issue 14): what each entry path imports, and what the
daemon's process holds. Behaviour only; the timings and RSS figures live in
``bench/cold_start.py``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
#: What a client talking to a daemon never needs: the store's stack, the
#: model's, and the contract's validation library.
HEAVY = ("lancedb", "pyarrow", "numpy", "onnxruntime", "tokenizers", "pydantic", "pandas")


def _run(code: str, env: dict[str, str] | None = None, stdin: str = "") -> dict:
    """Run ``code`` in a fresh interpreter; it prints one JSON line last."""
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], check=False, input=stdin, capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": str(SRC), **(env or {})}, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


# A stand-in backend in place of the daemon: the test is about what the CLI
# process itself loads on its way to ``backend.call``.
_FAKE_BACKEND = """
import json, sys
from iai_mcp import backend

class Fake:
    def call(self, method, params=None):
        sys.stderr.write(json.dumps([method, params]) + "\\n")
        if method == "session_start":
            return {"text": "remembered", "memories": [{"record_id": "x"}]}
        return {"hits": [], "anti_hits": []}
    def close(self):
        pass

backend.connect = lambda path=None, local=None, create=True: Fake()
from iai_mcp.cli import main
"""


@pytest.mark.parametrize("argv,stdin", [
    (["recall", "what did I cook", "--k", "3", "--tag", "food"], ""),
    (["recall", "what did I cook", "--json"], ""),
    (["hook", "session-start"], '{"session_id": "s1"}'),
])
def test_client_paths_import_nothing_heavy(tmp_path, argv, stdin):
    """The CLI's recall and the SessionStart hook, up to and after the
    backend call, load neither the store's stack, nor the model's, nor the
    contract (pydantic): the daemon does that work."""
    loaded = _run(_FAKE_BACKEND + f"""
code = main(["--store", {str(tmp_path / "store")!r}, *{argv!r}])
print()
print(json.dumps({{"code": code, "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
""", stdin=stdin)
    assert loaded == {"code": 0, "heavy": []}


def test_cli_options_from_the_snapshot_match_the_contract():
    """The shipped option snapshot is current (else the CLI falls back to
    importing the contract on every run): regenerate it with
    ``python -m iai_mcp.cli.contract_snapshot`` after changing the contract."""
    from iai_mcp.cli import contract_snapshot

    shipped = contract_snapshot.snapshot()
    assert shipped is not None, "data/cli-options.json is stale: python -m iai_mcp.cli.contract_snapshot"
    assert shipped == contract_snapshot.live()


def test_a_stale_snapshot_falls_back_to_the_contract(tmp_path, monkeypatch):
    """A snapshot whose digest no longer matches is ignored: the options are
    derived from the contract, and still parse the same command line."""
    from iai_mcp.cli import build_parser, contract_snapshot

    monkeypatch.setattr(contract_snapshot, "sources_digest", lambda: "changed")
    monkeypatch.setattr(contract_snapshot, "_cache", None)
    assert contract_snapshot.snapshot() is None
    args = build_parser().parse_args(["recall", "cue", "--k", "4", "--tag", "a", "--tag", "b"])
    assert (args.k, args.tags) == (4, ["a", "b"])
    monkeypatch.setattr(contract_snapshot, "_cache", None)


def test_cli_parses_the_same_with_the_snapshot():
    from iai_mcp.cli import build_parser
    from iai_mcp.cli.options import method_params

    args = build_parser().parse_args(["recall", "cue", "--k", "4", "--tag", "a", "--tag", "b"])
    assert method_params(args, "memory_recall") == {"cue": "cue", "k": 4, "tags": ["a", "b"]}


def test_store_works_without_lancedbs_python_layer(tmp_path):
    """The store drives LanceDB's engine (``lancedb._lancedb``) without
    importing the ``lancedb`` package (``store.lance_engine``), and every
    table operation it makes (create, add, scan, update, compact, purge,
    reopen) works."""
    result = _run(f"""
import json, sys
from uuid import UUID
from iai_mcp import backend
from iai_mcp.core import dispatch

path = {str(tmp_path / "store")!r}
store = backend.open_store(path)
ids = [dispatch(store, "memory_capture", {{"text": f"note number {{i}} about apples"}})["record_id"] for i in range(5)]
dispatch(store, "memory_update", {{"id": ids[0], "pinned": True}})
dispatch(store, "memory_forget", {{"ids": ids[1:2]}})
store.purge([UUID(ids[1])])
store.compact()
store.close()
store = backend.open_store(path)
hits = dispatch(store, "memory_recall", {{"cue": "apples", "k": 10}})["hits"]
store.close()
loaded = sorted(m for m in ("lancedb", "lance_namespace", "pyarrow.dataset", "pydantic") if m in sys.modules)
print(json.dumps({{"hits": len(hits), "engine": "lancedb._lancedb" in sys.modules, "loaded": loaded}}))
""", env={"IAI_MCP_TEST_EMBEDDER": "hash"})
    assert result == {"hits": 4, "engine": True, "loaded": ["pydantic"]}  # pydantic: the method contract


def test_a_later_import_of_lancedb_shares_the_engine(tmp_path):
    """Loading the engine first does not stop ``import lancedb`` later in the
    process (a test, a tool): it binds the same extension module."""
    result = _run(f"""
import json, sys
from iai_mcp.store import lance_engine
from iai_mcp.store.records_table import RecordsTable

table = RecordsTable(__import__("pathlib").Path({str(tmp_path)!r}))
import lancedb
from lancedb import _lancedb
print(json.dumps({{"same": _lancedb is lance_engine.load(), "rows": len(lancedb.connect({str(tmp_path)!r}).open_table("records").to_arrow())}}))
""")
    assert result == {"same": True, "rows": 0}


@pytest.mark.slow
def test_model_session_keeps_no_arena():
    """onnxruntime keeps neither an arena nor a memory pattern sized by the
    largest batch seen (the real model, loaded here)."""
    from iai_mcp.embed import MiniLMEmbedder

    embedder = MiniLMEmbedder()
    embedder.embed(["a long text about the kitchen " * 20] * 8)
    options = embedder._load()[0].get_session_options()
    assert (options.enable_cpu_mem_arena, options.enable_mem_pattern) == (False, False)


def test_scan_by_seq_ranges_yields_every_row_once(tmp_path):
    """The open reads the table by ranges of ``seq`` (so lance never reads a
    whole fragment ahead): every live row comes back exactly once and in seq
    order, also rows rewritten into newer fragments and around the gaps a
    purge leaves."""
    from uuid import UUID

    from iai_mcp.core import dispatch
    from iai_mcp.embed import HashEmbedder
    from iai_mcp.store import MemoryStore
    from iai_mcp.store.records_table import RecordsTable

    root = tmp_path / "store"
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        ids = [dispatch(store, "memory_capture", {"text": f"note {i} on the garden"})["record_id"] for i in range(23)]
        for rid in ids[::5]:  # rewritten: a newer fragment, the same seq
            dispatch(store, "memory_update", {"id": rid, "pinned": True})
        store.purge([UUID(ids[7]), UUID(ids[8])])
        kept = set(ids) - {ids[7], ids[8]}
        expected = sorted(store.seqs()[i] for i, row in enumerate(store.rows()) if str(row.id) in kept)
    table = RecordsTable(root)
    for batch_rows in (1, 4, 4096):
        rows = list(table.scan(batch_rows=batch_rows))
        assert [r.seq for r in rows] == expected  # in seq order: the open need not reorder
        assert sorted(r.id for r in rows) == sorted(kept)
    with MemoryStore(path=root, embedder=HashEmbedder()) as store:
        assert len([r for r in store.rows() if str(r.id) in ids]) == 21


def test_open_quantises_without_a_float32_copy_of_the_vectors():
    """The open keeps int8 codes and quantises (and takes norms) a block at a
    time: its peak stays well under what the float32 matrix alone took
    (154 MB at 100k records), where squaring the whole matrix at once held a
    second matrix-sized array. The norms are the same, bit for bit."""
    import dataclasses
    import tracemalloc

    import numpy as np

    from iai_mcp.store.purge import blank_row
    from iai_mcp.store.sealed_vectors import BLOB_BYTES
    from iai_mcp.store.slots import MIN_NORM, Slots
    from iai_mcp.types import EMBED_DIM

    n = 30_000
    vectors = np.random.default_rng(0).standard_normal((n, EMBED_DIM)).astype(np.float32)
    row = dataclasses.replace(blank_row(), hidden_at=None)
    blob = bytes(BLOB_BYTES)
    tracemalloc.start()
    try:
        slots = Slots.load(n, ((row, vectors[i], blob, i) for i in range(n)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert slots.codes.dtype == np.int8
    assert peak < 0.75 * vectors.nbytes  # the float32 matrix alone was 1.0x, with a squared copy >= 1.9x
    np.testing.assert_array_equal(slots.norms[:n], np.maximum(np.linalg.norm(vectors, axis=1), MIN_NORM))


def test_daemon_run_caps_malloc_arenas_before_it_starts_anything(monkeypatch, tmp_path):
    """Each thread that meets a busy arena gets its own, which keeps what it
    freed: a daemon process caps them before its first thread starts."""
    import iai_mcp.heap as heap
    from iai_mcp.cli import main
    from iai_mcp.daemon import lifecycle

    calls: list[str] = []
    monkeypatch.setattr(heap, "limit_malloc_arenas", lambda count=heap.DAEMON_ARENAS: calls.append(f"cap {count}"))
    monkeypatch.setattr(lifecycle, "exec_without_passphrase", lambda *a: calls.append("exec check"))
    monkeypatch.setattr(lifecycle, "run", lambda *a, **k: calls.append("run") or 0)
    monkeypatch.setattr(lifecycle, "end_process", lambda code: calls.append(f"exit {code}"))
    main(["--store", str(tmp_path / "s"), "daemon", "run"])
    assert calls == ["cap 2", "exec check", "run", "exit 0"]


def test_the_arena_cap_is_accepted_by_this_libc():
    import platform

    from iai_mcp.heap import limit_malloc_arenas

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt(M_ARENA_MAX) is glibc's")
    assert limit_malloc_arenas(8) is True  # the default cap for 1 core: changes nothing here
