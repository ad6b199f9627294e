"""Handing the memory a process has freed back to the machine.

glibc's malloc keeps what Python frees in its heaps for later reuse, and gives it back only
from the top of a heap. A process that handles large buffers one after another (embedding
answers, vectors and COPY buffers in the run's process; a document's parse tree in a loader
worker) so keeps the high-water mark of whatever was ever live at once, scattered between
smaller blocks still in use. Measured at 141k chunks: the run's process held 650 MiB, of which
about 300 MiB was free heap; a loader worker stayed at 390 MiB after an 8 MB HTML page that
needed 260 MiB while it was parsed. `malloc_trim(0)` returns the free pages of every heap to the
kernel, at the cost of a walk over the free blocks (well under a millisecond here).

And keeping fewer heaps in the first place: `limit_malloc_arenas`.

On a C library without `malloc_trim` or `mallopt` (musl, macOS) these do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

# glibc's mallopt parameter for the most arenas (heaps) malloc may keep.
M_ARENA_MAX = -8
# Arenas of the run's process: the main one and one for all other threads.
MALLOC_ARENAS = 2


@functools.cache
def _libc():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


def release_free_heap() -> None:
    """Give the heap's free pages back to the kernel."""
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is not None:
        trim(0)


@functools.cache
def limit_malloc_arenas() -> None:
    """Let glibc's malloc keep at most MALLOC_ARENAS arenas in this process, once, before the
    embedding threads start.

    By default each thread that allocates while the others are alive gets an arena of its own,
    up to 8 per core. The run's process has a thread per request in flight (up to 16) and a
    writer, each handling buffers of megabytes (responses, vectors, COPY rows), so every
    arena kept the free space of the largest mix it ever held. Measured on the 1M-chunk
    benchmark at 2 copies: the run's process at 575 MiB RSS by default, 443 MiB with two
    arenas, the run 140.9 s against 148.6 s (within this machine's run-to-run noise). Python
    allocates under the GIL, so threads seldom wait for an arena. MALLOC_ARENA_MAX in the
    environment, when set, is left to rule."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt(M_ARENA_MAX, MALLOC_ARENAS)
