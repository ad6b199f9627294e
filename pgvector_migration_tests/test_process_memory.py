"""Freed heap memory goes back to the kernel."""

import sys

import pytest

from pgvector_migration.process_memory import release_free_heap

MIB = 1024 * 1024


def _resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_freed_blocks_between_live_ones_are_returned():
    # 200 MB of blocks below glibc's mmap threshold, every tenth kept: the freed ones sit
    # between live ones, so malloc cannot shrink its heap from the top and keeps them resident.
    blocks = [bytearray(100_000) for _ in range(2000)]
    kept = blocks[::10]
    del blocks
    before = _resident_bytes()
    release_free_heap()
    after = _resident_bytes()
    assert before - after > 100 * MIB, (before / MIB, after / MIB)
    assert len(kept) == 200
