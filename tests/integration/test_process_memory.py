"""The scorer gives a backlog's large buffers back to the system (shared/platform/memory.py).

Each case runs in a Python process of its own, so the setting never reaches the test run's own
malloc, and reads that process's own memory map: after a 4 MiB block is freed, glibc by default
serves the next 3 MiB block from the heap (where freed space is kept); with the threshold fixed,
the block gets a mapping of its own, unmapped when it is freed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.processes import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps (Linux)")

PROBE = textwrap.dedent("""
    import sys

    def mapped_on_their_own():
        # Anonymous mappings without a name (the heap is "[heap]"), in bytes.
        total = 0
        for line in open("/proc/self/maps"):
            fields = line.split()
            if len(fields) == 5:
                low, high = (int(bound, 16) for bound in fields[0].split("-"))
                total += high - low
        return total

    if sys.argv[1] == "set":
        from shared.platform.memory import return_large_buffers
        print(return_large_buffers())
    else:
        print(None)
    block = bytearray(4 << 20)
    del block  # glibc's own rule raises its threshold to this block's size
    before = mapped_on_their_own()
    again = bytearray(3 << 20)
    print(mapped_on_their_own() - before)
""")


def probe(mode: str, **env: str) -> tuple[str, int]:
    """(what return_large_buffers answered, bytes newly mapped on their own for a 3 MiB block)."""
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"} | env
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=60, check=True)
    answer, mapped = done.stdout.split()
    return answer, int(mapped)


def test_without_the_setting_a_large_block_after_a_larger_one_comes_from_the_heap():
    # What the setting changes: were this not so on this machine, the next test would prove nothing.
    assert probe("leave") == ("None", 0)


def test_with_the_setting_a_large_block_gets_a_mapping_of_its_own():
    answer, mapped = probe("set")
    assert answer == "True"
    assert mapped >= 3 << 20


def test_an_operators_own_threshold_stands():
    answer, mapped = probe("set", MALLOC_MMAP_THRESHOLD_=str(1 << 20))
    assert answer == "False"  # not set again over theirs
    assert mapped >= 3 << 20  # theirs works as ours would
