"""glibc malloc settings for network inference in dask worker processes.

dask's nanny starts every worker process with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any malloc
threshold turns off glibc's dynamic mmap threshold, so every block above 128 KiB (every activation of
the network) is mmap-ed and unmapped again, and each forward pass page-faults all its activations
in afresh. Serving large blocks from the heap and keeping freed memory there (no trimming below
1 GiB) removes the page faults; the cost is that a worker keeps its peak memory between chunks instead
of returning it (it reaches that peak again on the next chunk anyway).

Two levels (benchmarks/profile_alloc.py compares them):

* `runner.WORKER_MALLOC_ENV`, given to the worker processes of a LocalCluster that mito-wda starts
  (it must be in the environment when a process starts): one arena, no mmap, no trimming;
* `keep_memory_for_inference` below, called by the predict task on any other worker (a cluster
  started elsewhere): no mmap and no trimming through ``mallopt``. A worker's task thread has its own
  arena, which still maps blocks over 64 MiB, so this helps less with large tiles.

Never applied in the calling process (napari, whose chunk workers are threads, or ``--scheduler sync``).
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
