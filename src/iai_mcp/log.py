"""Structured logging: one JSON object per line on stderr, through ``logging``.

stdout may belong to JSON-RPC (stdio mode), so every component reports to
stderr, one line per event::

    {"ts": 1733389200.1, "level": "info", "component": "iai_mcp.store", "event": "record_unreadable", ...}

Components call ``log = logger("iai_mcp.store")`` once and then
``log("event_name", field=value, ...)`` (``log.warning(...)`` for trouble).
Underneath it is the standard library: one ``logging.Logger`` per component
under ``iai_mcp``, records carrying the fields, and a handler with a JSON-lines
formatter, so anyone embedding iai-mcp can route, filter or silence it the
usual way.

Reporting must never kill the work it reports on: the handler writes to
whatever ``sys.stderr`` is at the time and drops a line it cannot write (a
full disk under ``daemon.log``, a closed pipe) instead of raising or printing
a traceback: the only place it could report the failure is the one failing.
Nor does a ``log(...)`` call raise, whatever handler or filter a host added.
"""
from __future__ import annotations

import json
import logging
import sys
from typing import Any, TextIO

ROOT = "iai_mcp"


class JsonLinesFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": record.created,
            "level": record.levelname.lower(),
            "component": record.name,
            "event": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        return json.dumps(line, default=str)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to the current ``sys.stderr`` that never raises."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # the base class assigns it once
        pass

    def handleError(self, record: logging.LogRecord) -> None:
        pass  # dropped: see the module docstring


_handler = _StderrHandler()
_handler.setFormatter(JsonLinesFormatter())
_root = logging.getLogger(ROOT)
_root.addHandler(_handler)
_root.setLevel(logging.INFO)
_root.propagate = False  # stdout stays clean even if the host configured the root logger


class StructuredLogger:
    """``log(event, **fields)``: one line at INFO; ``.warning`` / ``.error`` for trouble."""

    def __init__(self, component: str) -> None:
        self._logger = logging.getLogger(component)

    def __call__(self, event: str, **fields: Any) -> None:
        self._emit(logging.INFO, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._emit(logging.WARNING, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._emit(logging.ERROR, event, fields)

    def _emit(self, level: int, event: str, fields: dict[str, Any]) -> None:
        # ``logging`` lets a handler's or filter's own exception through (only
        # ``emit`` is guarded, by handleError): a host's handler writing to a
        # full disk would otherwise kill the worker thread that is reporting.
        try:
            self._logger.log(level, event, extra={"fields": fields})
        except Exception:
            pass  # dropped: see the module docstring


def logger(component: str) -> StructuredLogger:
    """The logger of one component (a dotted name under ``iai_mcp``)."""
    return StructuredLogger(component)

