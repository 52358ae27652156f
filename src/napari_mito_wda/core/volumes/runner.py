"""Where chunk tasks run: dask.distributed (a LocalCluster or an existing scheduler) or this process.

`Runner.map(fn, items, *shared)` yields (item, result) as tasks finish, retrying a failed task
`retries` times. Large shared arguments (the model) go to every worker once (`share`), not with each
task. "sync" runs the same tasks one after another in this process (tests, debugging, tiny volumes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

# glibc malloc settings for worker processes (read by the C library when a process starts; see
# core/volumes/alloc.py): large blocks from one heap that is not trimmed, instead of dask's default
# MALLOC_TRIM_THRESHOLD_=65536, under which every network activation is mmap-ed and page-faulted anew.
WORKER_MALLOC_ENV = {"MALLOC_ARENA_MAX": "1", "MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


@contextmanager
def worker_malloc_env():
    """Worker processes (dask nannies) started inside this block get WORKER_MALLOC_ENV.

    dask passes `distributed.nanny.pre-spawn-environ` to a worker process when it starts it, with
    variables already in os.environ taking precedence: both are set here, and os.environ is restored
    on exit (this process's own allocator is not affected: glibc reads them only at start-up).
    """
    import dask

    old = {k: os.environ.get(k) for k in WORKER_MALLOC_ENV}
    os.environ.update(WORKER_MALLOC_ENV)
    try:
        with dask.config.set({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()}):
            yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@dataclass
class ClusterSettings:
    """scheduler: None = start a LocalCluster, "sync" = this process, else an address ("tcp://host:8786")."""

    scheduler: str | None = None
    workers: int = 1
    threads_per_worker: int = 1
    memory_limit: str | None = "auto"  # per worker, e.g. "4GB"; dask's default share of RAM when "auto"
    processes: bool = True  # LocalCluster workers as processes (False: threads of this process)
    retries: int = 2


class Runner:
    """A context manager over one of the schedulers; use `with Runner(settings) as r:`."""

    def __init__(self, settings: ClusterSettings | None = None):
        self.settings = settings or ClusterSettings()
        self.client = None
        self._cluster = None

    @property
    def is_sync(self) -> bool:
        return self.settings.scheduler == "sync"

    def __enter__(self) -> Runner:
        s = self.settings
        if self.is_sync:
            return self
        from distributed import Client, LocalCluster

        if s.scheduler:
            try:
                self.client = Client(s.scheduler, set_as_default=False)
            except OSError as exc:  # TimeoutError, refused: one line saying what to do
                raise OSError(f"could not reach the dask scheduler at {s.scheduler} ({' '.join(str(exc).split())}); "
                              "start it first or check the address (--scheduler), or leave --scheduler out for a "
                              "local cluster.") from None
        else:
            if s.workers < 1 or s.threads_per_worker < 1:
                raise ValueError("workers and threads per worker must be >= 1")
            with worker_malloc_env():
                self._cluster = LocalCluster(
                    n_workers=s.workers, threads_per_worker=s.threads_per_worker, memory_limit=s.memory_limit,
                    processes=s.processes, dashboard_address=None, silence_logs=logging.ERROR,
                )
            self.client = Client(self._cluster, set_as_default=False)
        return self

    def __exit__(self, *exc) -> None:
        if self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()
        self.client = self._cluster = None

    def describe(self) -> str:
        if self.is_sync:
            return "this process (no dask scheduler)"
        info = self.client.scheduler_info()
        workers = info.get("workers", {})
        threads = sum(w.get("nthreads", 0) for w in workers.values())
        where = self.settings.scheduler or "LocalCluster"
        return f"dask.distributed {where}: {len(workers)} workers, {threads} threads"

    def n_threads(self) -> int:
        """Worker threads in all (what a task should divide the cores by)."""
        if self.is_sync:
            return 1
        return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info().get("workers", {}).values()))

    def share(self, obj):
        """Put obj on every worker once; the returned handle stands for it in `map`'s shared args."""
        if self.is_sync:
            return obj
        return self.client.scatter(obj, broadcast=True, hash=False)

    def map(self, fn: Callable, items: Iterable, *shared, name: str = "task") -> Iterator[tuple[object, object]]:
        items = list(items)
        if self.is_sync:
            for item in items:
                yield item, _call_with_retries(fn, item, shared, self.settings.retries)
            return
        from distributed import as_completed

        futures = {}
        for i, item in enumerate(items):
            key = f"{name}-{i}-{_token()}"
            fut = self.client.submit(fn, item, *shared, retries=self.settings.retries, pure=False, key=key)
            futures[fut] = item
        try:
            for fut in as_completed(futures, loop=self.client.loop):
                yield futures[fut], fut.result()  # re-raises the task's error after its retries
                fut.release()
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()


def _call_with_retries(fn, item, shared, retries: int):
    for attempt in range(retries + 1):
        try:
            return fn(item, *shared)
        except Exception:
            if attempt == retries:
                raise


def _token() -> str:
    import uuid

    return uuid.uuid4().hex[:8]
