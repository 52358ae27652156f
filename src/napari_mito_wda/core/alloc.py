"""glibc malloc settings for network inference in dask worker processes.

dask's nanny starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any malloc
threshold turns off glibc's dynamic mmap threshold, so every block above 128 KiB (every activation of
the network) is mmap-ed and unmapped again, and each forward pass page-faults all its activations
in afresh. Measured on a 2-core CPU, 1 torch thread, shipped model (benchmarks/profile_chunk.py):
the forward pass runs ~1.1-1.8x slower under that variable than in a plain process, the more so the
smaller the tile. Serving large blocks from the heap and keeping freed memory there (no trimming below
1 GiB) removes the page faults; the cost is that the worker keeps its peak memory instead of returning
it between chunks (it would reach that peak again on the next chunk anyway).

Applied only in worker processes (never in the calling process: napari, or ``--scheduler sync``).
"""

from __future__ import annotations

import ctypes
import sys

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
TRIM_THRESHOLD = 1 << 30

_STATE = {"done": False, "ok": False}


def keep_memory_for_inference() -> bool:
    """Set glibc malloc to serve large blocks from the heap and not trim it (once per process).

    Returns True when the settings are in effect; False where the C library is not glibc (nothing done).
    """
    if _STATE["done"]:
        return _STATE["ok"]
    _STATE["done"] = True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _STATE["ok"] = mallopt(M_MMAP_MAX, 0) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return _STATE["ok"]
