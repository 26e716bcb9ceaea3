"""Handing freed heap back to the operating system.

glibc keeps memory that was malloc'ed and freed for reuse, and RSS counts
it: about 80 MB after decrypting every row of a 100k-record store, and about
65 MB after onnxruntime builds the model's session (its graph optimiser
allocates the weights several times over; model alone, after warm-up:
VmRSS 228 MB before ``malloc_trim``, 162 MB after, ``/proc/self/status``).
Neither is needed again at that size, so both callers trim once afterwards.
"""
from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _glibc() -> Any | None:
    """glibc, or None off it (no ``malloc_trim``/``mallopt`` to call)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None


def return_freed_heap() -> None:
    """``malloc_trim(0)``: give the freed heap back. A no-op off glibc."""
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


#: glibc's ``mallopt`` parameter for the most malloc arenas (``M_ARENA_MAX``).
_M_ARENA_MAX = -8
#: Arenas a daemon process keeps. glibc gives each thread that meets a locked
#: arena a new one, up to 8 per core, and each keeps what it freed: lancedb's
#: runtime threads, onnxruntime's and the connections' left a 100k-record
#: daemon at VmRSS 580 MB, 542 MB with two arenas (``bench.cold_start``;
#: 10k after the CLI runs: 327 -> 301 MB). The daemon's threads seldom
#: allocate at the same moment, so two do not queue behind each other.
DAEMON_ARENAS = 2


def limit_malloc_arenas(count: int = DAEMON_ARENAS) -> bool:
    """Cap this process's malloc arenas at ``count`` (as ``MALLOC_ARENA_MAX``
    would at start-up); call it before other threads start. False off glibc."""
    libc = _glibc()
    return libc is not None and bool(libc.mallopt(_M_ARENA_MAX, count))
