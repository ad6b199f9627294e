"""Freed heap memory goes back to the kernel, and the run's process keeps few malloc arenas
however many threads embed and write."""

import sys

import pytest

from pgvector_migration.process_memory import release_free_heap
from pgvector_migration_tests.fresh_interpreter import last_line_printed

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


def _arenas_after_threads(limit: bool) -> int:
    """glibc's count of heaps (malloc_info) once 8 threads, alive together, have each
    allocated and freed buffers, in a fresh interpreter; with `limit`, after
    `limit_malloc_arenas`."""
    script = (
        "import ctypes, os, tempfile, threading\n"
        "from pgvector_migration.process_memory import limit_malloc_arenas\n"
        "os.environ.pop('MALLOC_ARENA_MAX', None)\n"
        f"if {limit}:\n"
        "    limit_malloc_arenas()\n"
        "together = threading.Barrier(8)\n"
        "def work():\n"
        "    buffers = [bytearray(64 * 1024) for _ in range(50)]\n"
        "    del buffers[::2]\n"
        "    together.wait()\n"
        "threads = [threading.Thread(target=work) for _ in range(8)]\n"
        "for thread in threads: thread.start()\n"
        "for thread in threads: thread.join()\n"
        "libc = ctypes.CDLL('libc.so.6')\n"
        "libc.fopen.restype = ctypes.c_void_p\n"
        "path = tempfile.mkstemp()[1]\n"
        "out = ctypes.c_void_p(libc.fopen(path.encode(), b'w'))\n"
        "libc.malloc_info(0, out)\n"
        "libc.fclose(out)\n"
        "print(open(path).read().count('<heap nr='))\n"
    )
    return int(last_line_printed(script))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_run_s_threads_share_two_malloc_arenas():
    assert _arenas_after_threads(limit=False) > 2, "glibc gave the threads arenas of their own"
    assert _arenas_after_threads(limit=True) <= 2
