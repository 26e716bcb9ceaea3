"""One structured line on stderr per event: how background work reports.

stdout may belong to JSON-RPC (stdio mode), so every component reports to
stderr, one JSON object per line: ``{"ts", "component", "event", ...}``.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any


def emit(component: str, event: str, **fields: Any) -> None:
    line = {"ts": time.time(), "component": component, "event": event, **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


def logger(component: str) -> Callable[..., None]:
    """``log(event, **fields)`` for one component."""

    def log(event: str, **fields: Any) -> None:
        emit(component, event, **fields)

    return log
