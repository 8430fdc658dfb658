"""How a long-running process gives memory back to the system (glibc's malloc, on Linux).

The scorer frees large buffers all the time: each fetch from Kafka (up to 8 MB a partition)
and each batch's rows sent to the database (a few MB of JSON). glibc hands a block that large
out of a fresh mapping and unmaps it when freed, but each time one is freed it raises its
threshold for "large" to that block's size (up to 32 MB), so the next ones come from the
heap instead, where free space between live blocks is kept rather than given back. The
scorer's resident memory then settled some 50 MB higher than what it was using, and stayed
there after a backlog (bench/bench_scorer.py, 1,000,000 events: about 263 MB a quarter of the
way and at the end, against about 210 MB with the threshold fixed, at the same fold rate).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

log = logging.getLogger("cityscore.memory")

M_MMAP_THRESHOLD = -3  # mallopt's parameter, from glibc's malloc.h
LARGE_BLOCK = 1024 * 1024


def return_large_buffers(threshold: int = LARGE_BLOCK) -> bool:
    """Fix glibc's threshold for blocks mapped on their own (and so unmapped when freed) at
    `threshold` bytes, which also stops it rising. Returns whether it was set: not where the C
    library is not glibc (musl, macOS), nor where the operator set MALLOC_MMAP_THRESHOLD_
    themselves (their value stands)."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.info("the C library keeps its own threshold for large blocks", extra={"threshold": threshold})
    return done
