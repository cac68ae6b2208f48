"""Process-wide thread pools, started once and reused.

Ops and the engine run independent pieces of work side by side on every core (numpy, OpenCV,
Pillow, zlib and hashlib release the GIL). Starting a fresh ``ThreadPoolExecutor`` for each
call costs a thread start per worker, which on a busy machine is milliseconds each — more
than the work itself on a small image. So each kind of work has one named pool with a thread
per core, created on first use and kept for the life of the process.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


def shared_pool(name: str) -> ThreadPoolExecutor | None:
    """The process-wide pool ``name`` with a thread per core, or None on a single core (where
    threads would only add switching). Its threads are named ``strata-<name>_<i>``."""
    cores = os.cpu_count() or 1
    if cores < 2:
        return None
    with _LOCK:
        if name not in _POOLS:
            _POOLS[name] = ThreadPoolExecutor(max_workers=cores, thread_name_prefix=f"strata-{name}")
        return _POOLS[name]


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, pool: str) -> list[R]:
    """``[fn(x) for x in items]``, run side by side on the shared pool ``pool``; results in order.

    Runs in the calling thread when there is a single item, a single core, or when the caller
    is itself one of that pool's threads (waiting on a pool from inside it can deadlock once
    every worker waits). The first error of any item is raised.
    """
    items = list(items)
    executor = shared_pool(pool)
    inside = threading.current_thread().name.startswith(f"strata-{pool}_")
    if len(items) < 2 or executor is None or inside:
        return [fn(x) for x in items]
    return list(executor.map(fn, items))


__all__ = ["parallel_map", "shared_pool"]
