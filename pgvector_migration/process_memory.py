"""Handing the memory a process has freed back to the machine.

glibc's malloc keeps what Python frees in its heaps for later reuse, and gives it back only
from the top of a heap. A process that handles large buffers one after another (embedding
answers, vectors and COPY buffers in the run's process; a document's parse tree in a loader
worker) so keeps the high-water mark of whatever was ever live at once, scattered between
smaller blocks still in use. Measured at 141k chunks: the run's process held 650 MiB, of which
about 300 MiB was free heap; a loader worker stayed at 390 MiB after an 8 MB HTML page that
needed 260 MiB while it was parsed. `malloc_trim(0)` returns the free pages of every heap to the
kernel, at the cost of a walk over the free blocks (well under a millisecond here).

On a C library without `malloc_trim` (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


@functools.cache
def _malloc_trim():
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return None


def release_free_heap() -> None:
    """Give the heap's free pages back to the kernel."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
