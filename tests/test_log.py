"""Structured logging: one JSON line per event on stderr, and a failing
stderr (full disk, closed pipe) never breaks the work being reported."""
from __future__ import annotations

import errno
import io
import json
import logging
import sys

import pytest

from iai_mcp.log import logger
from iai_mcp.provenance_queue import ProvenanceWriteQueue
from iai_mcp.store import MemoryStore
from tests.test_provenance_queue import Failing
from tests.test_store import _make


class _FailingStream(io.TextIOBase):
    def __init__(self, err: int) -> None:
        self.err = err

    def write(self, _text: str) -> int:
        raise OSError(self.err, "simulated")

    def flush(self) -> None:
        raise OSError(self.err, "simulated")


def test_a_line_is_one_json_object_with_component_event_and_fields(capfd):
    logger("iai_mcp.test").warning("thing_failed", pairs=3, path=sys)  # a non-JSON value is str()-ed
    err = capfd.readouterr().err.strip().splitlines()
    assert len(err) == 1
    line = json.loads(err[0])
    assert (line["level"], line["component"], line["event"], line["pairs"]) == ("warning", "iai_mcp.test", "thing_failed", 3)
    assert isinstance(line["ts"], float) and isinstance(line["path"], str)


def test_lines_never_reach_stdout_even_when_the_host_logs_to_stdout(capfd):
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stdout)
    root.addHandler(handler)
    try:
        logger("iai_mcp.test")("hello")
    finally:
        root.removeHandler(handler)
    out, err = capfd.readouterr()
    assert out == "" and '"event": "hello"' in err


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EPIPE, errno.EIO])
def test_a_failing_stderr_is_dropped_not_raised(monkeypatch, err):
    monkeypatch.setattr(sys, "stderr", _FailingStream(err))
    logger("iai_mcp.test").warning("write_failed", n=1)  # must not raise
    monkeypatch.setattr(sys, "stderr", None)  # pythonw and detached processes
    logger("iai_mcp.test")("no_stderr")


def test_the_provenance_worker_survives_a_full_disk_under_its_log(tmp_path, monkeypatch):
    """The worker reports a failed write on stderr; with stderr on a full disk
    that report fails too, and the worker must live on and write the batch
    once the store works again (it used to die, leaving flush() False)."""
    store = MemoryStore(path=tmp_path)
    r = _make()
    store.insert(r)
    Failing(store, times=1, error=OSError(errno.EIO, "simulated store failure"))
    monkeypatch.setattr(sys, "stderr", _FailingStream(errno.ENOSPC))
    queue = ProvenanceWriteQueue(store, coalesce_ms=1, journal=False)
    queue.start()
    try:
        queue.enqueue([(r.id, {"ts": "t", "cue": "c", "session_id": "s"})])
        assert queue.flush(timeout=10.0)
    finally:
        queue.stop()
    monkeypatch.undo()
    assert [e["cue"] for e in store.get(r.id).provenance] == ["c"]
