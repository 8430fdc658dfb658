"""The scorer gives a backlog's large buffers back to the system (shared/platform/memory.py).

Each case runs in a Python process of its own, so the setting never reaches the test run's own
malloc, and finds where a 3 MiB block allocated after a freed 4 MiB one lives in that process's
memory map: by glibc's own rule, in the heap (where freed space is kept); with the threshold
fixed, in a mapping of its own (unmapped when it is freed).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.helpers.processes import ROOT

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc's malloc, read through /proc/self/maps")

PROBE = textwrap.dedent("""
    import ctypes
    import sys

    def mapping_of(address):
        # The name of the mapping holding `address`: "[heap]", or "" for an anonymous one of its own.
        for line in open("/proc/self/maps"):
            fields = line.split()
            low, high = (int(bound, 16) for bound in fields[0].split("-"))
            if low <= address < high:
                return fields[5] if len(fields) > 5 else ""
        raise LookupError(hex(address))

    if sys.argv[1] == "set":
        from shared.platform.memory import return_large_buffers
        print(return_large_buffers())
    else:
        print(None)
    block = bytearray(4 << 20)
    del block  # by glibc's own rule, its threshold rises to this block's size
    again = bytearray(3 << 20)
    print(mapping_of(ctypes.addressof((ctypes.c_char * len(again)).from_buffer(again))) or "own")
""")


def probe(mode: str, **env: str) -> tuple[str, str]:
    """(what return_large_buffers answered, where the 3 MiB block lives: "[heap]" or "own")."""
    # Nothing of the test run's own allocator settings reaches the child.
    environment = {k: v for k, v in os.environ.items()
                   if not k.startswith("MALLOC_") and k not in ("GLIBC_TUNABLES", "LD_PRELOAD")} | env
    done = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, env=environment, capture_output=True,
                          text=True, timeout=60, check=True)
    answer, where = done.stdout.split()
    return answer, where


def test_without_the_setting_a_large_block_after_a_larger_one_comes_from_the_heap():
    # What the setting changes: were this not so on this machine, the next test would prove nothing.
    assert probe("leave") == ("None", "[heap]")


def test_with_the_setting_a_large_block_gets_a_mapping_of_its_own():
    assert probe("set") == ("True", "own")


@pytest.mark.parametrize("env", [{"MALLOC_MMAP_THRESHOLD_": str(1 << 20)},
                                 {"GLIBC_TUNABLES": f"glibc.malloc.mmap_threshold={1 << 20}"}])
def test_an_operators_own_threshold_stands(env):
    # Not set again over theirs, and theirs works as ours would.
    assert probe("set", **env) == ("False", "own")
