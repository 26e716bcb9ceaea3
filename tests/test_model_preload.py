"""Issue 14, cold start: the daemon starts loading the embedding model before
it opens the store, so the two overlap, and the store binds that same
(already loaded) embedder; a failed preload is one log line and the normal
lazy load still serves recalls. The real model is replaced by a counting
stand-in: what is checked is the order and the reuse, not the model."""
from __future__ import annotations

import json
import sys
import threading

import pytest

from iai_mcp import embed
from iai_mcp.embed import HashEmbedder
from iai_mcp.store import MemoryStore
from tests.test_daemon import InThread, _client, _eventually

WAIT_S = 30.0


class Stand_in(HashEmbedder):
    """The process-wide embedder for these tests: records its warm-ups and
    can fail the first one, as a broken model load would."""

    def __init__(self, fail_first: bool = False) -> None:
        super().__init__()
        self.fail_first = fail_first
        self.warmups = 0
        self.entered = threading.Event()
        self.loaded = False

    def warmup(self) -> None:
        self.entered.set()
        self.warmups += 1
        if self.fail_first and self.warmups == 1:
            raise RuntimeError("model file unreadable")
        self.loaded = True

    def embed(self, texts):
        if not self.loaded:  # the lazy load of a real embedder on first use
            self.warmup()
        return super().embed(texts)


@pytest.fixture
def stand_in(monkeypatch):
    model = Stand_in()
    monkeypatch.setattr(embed, "_default", model)
    monkeypatch.delenv("IAI_MCP_TEST_EMBEDDER", raising=False)  # the daemon preloads the default
    monkeypatch.delenv("IAI_MCP_LOCAL", raising=False)
    return model


@pytest.fixture
def opened_during_preload(monkeypatch, stand_in):
    """Whether the model was already loading when the store began to open."""
    seen: list[bool] = []
    original = MemoryStore.__init__

    def init(self, *args, **kwargs):
        # Before the fix the model loads only after the store is open and
        # listening, so this waits out its timeout and records False.
        seen.append(stand_in.entered.wait(5.0))
        original(self, *args, **kwargs)

    monkeypatch.setattr(MemoryStore, "__init__", init)
    return seen


def test_daemon_loads_the_model_while_opening_the_store_and_binds_it(tmp_path, stand_in, opened_during_preload):
    with InThread(tmp_path / "store") as daemon:
        assert opened_during_preload == [True]
        assert _eventually(lambda: daemon.store.embedder is not None)
        assert daemon.store.embedder is stand_in  # the preloaded one, not a second model


def _events(err: str, name: str) -> list[dict]:
    out = []
    for line in err.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            out.append(event)
    return out


def test_a_failed_preload_is_logged_once_and_the_lazy_load_serves_recalls(tmp_path, stand_in, capsys):
    stand_in.fail_first = True
    root = tmp_path / "store"
    with InThread(root), _client(root) as client:
        captured = client.call("memory_capture", {"text": "we chose oak for the kitchen floor"})
        hits = client.call("memory_recall", {"cue": "kitchen floor"})["hits"]
    assert [h["record_id"] for h in hits][:1] == [captured["record_id"]]
    assert stand_in.loaded
    err = capsys.readouterr().err
    failed = _events(err, "embedder_preload_failed")
    assert len(failed) == 1 and "model file unreadable" in failed[0]["error"]


def test_preload_reports_a_failure_once_and_restores_the_switch_interval(stand_in):
    stand_in.fail_first = True
    before = sys.getswitchinterval()
    errors: list[BaseException] = []
    embed.preload_default(errors.append).join(WAIT_S)
    assert [str(e) for e in errors] == ["model file unreadable"]
    assert sys.getswitchinterval() == before
    assert not stand_in.loaded
    assert embed.default_embedder().embed(["later"]).shape == (1, stand_in.dim)  # loads lazily now
    assert stand_in.loaded and stand_in.warmups == 2


def test_no_preload_when_a_test_embedder_stands_in(monkeypatch, stand_in):
    from iai_mcp import backend

    monkeypatch.setenv("IAI_MCP_TEST_EMBEDDER", "hash")
    assert backend.preload_model(lambda exc: None) is None
    assert stand_in.warmups == 0
