"""The daemon's processes tune glibc's malloc so megabyte buffers come from the heap (and stay
mapped when freed) instead of a fresh mmap each. Checked in a fresh interpreter each, through
glibc's own count of mmapped blocks (mallinfo2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from rdbss.actors.process import tune_malloc

class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks",
        "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
tuned = tune_malloc() if sys.argv[1] == "tune" else None
before = libc.mallinfo2().hblks
buffer = bytearray(int(sys.argv[2]))  # above glibc's default threshold (128 KiB)
print(tuned, libc.mallinfo2().hblks - before)
"""


def probe(mode: str, size: int = 2 << 20, **env: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode, str(size)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
        env={**os.environ, **env},
    )
    return out.stdout.split()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
@pytest.mark.parametrize("size", [2 << 20, (4 << 20) + (64 << 10)])  # a 4 MiB piece and more
def test_megabyte_buffers_come_from_the_heap_once_tuned(size: int) -> None:
    assert probe("tune", size) == ["True", "0"]
    assert probe("default", size) == ["None", "1"]  # glibc alone: a fresh mmap


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_malloc_setting_in_the_environment_wins() -> None:
    # 8 MiB: more than the free heap the imports leave behind, so only a mmap can give it
    assert probe("tune", 8 << 20, MALLOC_TRIM_THRESHOLD_="131072") == ["False", "1"]
