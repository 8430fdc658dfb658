"""How a long-running process gives memory back to the system (glibc's malloc, on Linux).

The scorer frees large buffers all the time: each fetch from Kafka (up to 8 MB a partition)
and each batch's rows sent to the database (a few MB of JSON). glibc hands a block that large
out of a mapping of its own and unmaps it when freed, but each time one is freed it raises its
threshold for "large" to that block's size (up to 32 MB, and the heap's trim threshold to twice
that), so the next ones come from the heap instead, where freed space is kept rather than given
back. Through a million-event backlog (bench/bench_scorer.py) the scorer then held 255-290 MB,
and kept it after; with the threshold fixed at 1 MiB (which also keeps the trim threshold at its
default) it held 205-235 MB, at the same fold rate.
"""

from __future__ import annotations

import ctypes
import logging
import os

log = logging.getLogger("cityscore.memory")

M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
LARGE_BLOCK = 1024 * 1024


def return_large_buffers(threshold: int = LARGE_BLOCK) -> bool:
    """Fix glibc's threshold for blocks mapped on their own (and so unmapped when freed) at
    `threshold` bytes, which also stops it rising. Returns whether it was set: not where the C
    library is not glibc (musl, macOS), nor where the operator set the threshold themselves
    (MALLOC_MMAP_THRESHOLD_ or GLIBC_TUNABLES: their value stands). Only later allocations follow it."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "glibc.malloc.mmap_threshold" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process runs on
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.info("the C library keeps its own threshold for large blocks", extra={"threshold": threshold})
    return done
