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


def return_freed_heap() -> None:
    """``malloc_trim(0)``: give the freed heap back. A no-op off glibc."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
