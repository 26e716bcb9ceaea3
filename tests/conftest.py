"""Shared fixtures: every test runs with its own HOME and no real keyring."""
from __future__ import annotations

import pytest

# tests/test_provenance_async.py is the user's acceptance spec and is never
# edited, so its one slow test (a 6.5 s sleep past the 5 s idle poll) is
# marked here by file and name instead of with a decorator in the file.
_SLOW_IN_UNEDITABLE_FILES = {("test_provenance_async.py", "test_overflow_malformed_spill_file_quarantined")}


@pytest.hookimpl(tryfirst=True)  # before -m deselects, so "not slow" sees the marker
def pytest_collection_modifyitems(config, items):
    for item in items:
        if (item.path.name, item.originalname) in _SLOW_IN_UNEDITABLE_FILES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def _isolate_home(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("IAI_MCP_STORE", raising=False)
    monkeypatch.delenv("IAI_MCP_CRYPTO_PASSPHRASE", raising=False)
    # Never touch the developer's real keychain; tests that want a keyring fake one.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    import keyring.core

    monkeypatch.setattr(keyring.core, "_keyring_backend", None, raising=False)
    yield home


@pytest.fixture(autouse=True)
def _stop_spawned_daemons(tmp_path, _isolate_home):
    """A test that reached a daemon through backend.connect() leaves none behind:
    every store a test uses lives under its tmp_path or its HOME, and a running
    daemon keeps its daemon.json beside the store."""
    yield
    from iai_mcp.daemon import lifecycle as daemon

    from iai_mcp.errors import StoreError

    for state in [*tmp_path.rglob("daemon.json"), *_isolate_home.rglob("daemon.json")]:
        try:
            daemon.stop(state.parent, timeout=30)
        except StoreError as exc:
            # CI keeps only pytest's output: carry the daemon's own account with it.
            log = state.parent / "daemon.log"
            tail = log.read_text(errors="replace")[-4000:] if log.exists() else "(no daemon.log)"
            raise StoreError(f"{exc}\n--- {log} (tail) ---\n{tail}") from exc


@pytest.fixture
def fake_embedder():
    from iai_mcp.embed import HashEmbedder

    return HashEmbedder()


@pytest.fixture
def store(tmp_path, fake_embedder):
    from iai_mcp.store import MemoryStore

    s = MemoryStore(path=tmp_path / "store", embedder=fake_embedder)
    yield s
    s.close()


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """Run ``iai-mcp`` (``cli.main``) in-process against a fresh store that this
    process opens itself, with the hash embedder; returns (code, stdout, stderr)."""
    import io
    import sys

    from iai_mcp.cli import main

    monkeypatch.setenv("IAI_MCP_STORE", str(tmp_path / "store"))
    monkeypatch.setenv("IAI_MCP_LOCAL", "1")
    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")

    def run(*argv: str, stdin: str | None = None) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    run.store = tmp_path / "store"
    return run
