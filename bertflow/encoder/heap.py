"""Give the C heap's freed pages back to the OS during CPU training.

A training step allocates and frees hundreds of MB of activations whose shapes
change with every batch (sequence lengths vary). glibc keeps freed blocks for
reuse, but with varying sizes the free space fragments and the process keeps
asking for more until the OS kills a long run; ``malloc_trim`` hands the free
pages back (docs/RELIABILITY.md has the measurements). The encoder calls
:func:`release_freed_memory` every few optimizer steps; elsewhere (macOS,
Windows, musl) it does nothing.
"""
import ctypes
import ctypes.util
import functools
import sys
from typing import Optional


@functools.lru_cache(maxsize=None)
def _glibc() -> Optional[ctypes.CDLL]:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


def release_freed_memory() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``).

    RETURNS (bool): whether there was a glibc to ask.
    """
    libc = _glibc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True
