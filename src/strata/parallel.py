"""Process-wide thread pools, started once and reused.

Ops and the engine run independent pieces of work side by side on every core (numpy, OpenCV,
Pillow, zlib and hashlib release the GIL). Starting a fresh ``ThreadPoolExecutor`` for each
call costs a thread start per worker, which on a busy machine is milliseconds each — more
than the work itself on a small image. So each kind of work has one named pool with a thread
per core, created on first use and kept for the life of the process.

:func:`in_strips` / :func:`in_strips_into` run a pointwise array function over horizontal
strips of an image on the ``strips`` pool (used by the edit, composite and enhance ops and by
image encoding).
"""

from __future__ import annotations

import functools
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, TypeVar

import numpy as np

T = TypeVar("T")
R = TypeVar("R")

_POOLS: dict[str, ThreadPoolExecutor] = {}
_LOCK = threading.Lock()


@functools.cache
def cores() -> int:
    """CPU cores of this machine, counted once per process (``os.cpu_count`` reads /sys on every
    call: ~0.1–0.5 ms, which an unchanged rerun would pay per run)."""
    return os.cpu_count() or 1


def shared_pool(name: str) -> ThreadPoolExecutor | None:
    """The process-wide pool ``name`` with a thread per core, or None on a single core (where
    threads would only add switching). Its threads are named ``strata-<name>_<i>``."""
    n = cores()
    if n < 2:
        return None
    with _LOCK:
        if name not in _POOLS:
            _POOLS[name] = ThreadPoolExecutor(max_workers=n, thread_name_prefix=f"strata-{name}")
        return _POOLS[name]


def parallel_map(fn: Callable[[T], R], items: Iterable[T], *, pool: str) -> list[R]:
    """``[fn(x) for x in items]``, run side by side on the shared pool ``pool``; results in order.

    Runs in the calling thread when there is a single item, a single core, or when the caller
    is itself a thread of a shared pool: of this pool, waiting on it from inside can deadlock
    once every worker waits; of another (e.g. an output file being encoded on the ``files`` pool
    while the run goes on), the pools already keep every core busy, and fanning out again only
    adds switching — measured on the poster workflow: a full run 414 → 374 ms, a rerun after a
    terminal change 44.8 → 43.1 ms. The first error of any item is raised.
    """
    items = list(items)
    executor = shared_pool(pool)
    if len(items) < 2 or executor is None or _in_a_shared_pool():
        return [fn(x) for x in items]
    return list(executor.map(fn, items))


def _in_a_shared_pool() -> bool:
    # A pool's threads are named "strata-<pool>_<i>"; one dict lookup (no iteration over _POOLS,
    # which another thread may be adding a pool to).
    name = threading.current_thread().name
    pool, sep, index = name.removeprefix("strata-").rpartition("_")
    return name.startswith("strata-") and bool(sep) and index.isdigit() and pool in _POOLS


STRIP_PIXELS = 1 << 16  # 1 MB per float32 RGBA strip: an op's temporaries fit in the L2/L3 caches


def in_strips(fn: Callable[..., np.ndarray], *args: Any) -> np.ndarray:
    """``fn(*args)`` computed on horizontal strips of ``STRIP_PIXELS`` pixels and stacked.

    For pointwise ops on large images: a strip's temporaries stay in cache and their memory
    is reused, instead of every temporary being a fresh full-size array whose pages must be
    faulted in and which is read back from main memory (at 4096² this makes a 3D LUT
    2–4× faster). Strips run side by side on every core (numpy and OpenCV release the GIL),
    each written straight into the result. Arguments that are arrays with the first
    argument's height are cut into strips; others are passed as they are. ``fn`` must be
    pure: strips may run in any order.
    """
    height = args[0].shape[0]
    rows = _strip_rows(args[0])
    first = fn(*_cut(args, height, 0, rows))
    if rows >= height:
        return first
    out = np.empty((height,) + first.shape[1:], first.dtype)
    out[:rows] = first

    def copy_into(dst: np.ndarray, *strips: Any) -> None:
        dst[...] = fn(*strips)

    _each_strip(copy_into, out, args, start=rows)
    return out


def in_strips_into(fn: Callable[..., None], out: np.ndarray, *args: Any) -> np.ndarray:
    """:func:`in_strips` for an ``fn(dst, *strips)`` that writes its strip of the result into
    ``dst`` (a strip of ``out``, which has the first argument's height): no temporary result
    and no copy per strip. Returns ``out``."""
    _each_strip(fn, out, args, start=0)
    return out


def _strip_rows(array: np.ndarray) -> int:
    return max(1, STRIP_PIXELS // array.shape[1])


def _cut(args: tuple[Any, ...], height: int, y: int, rows: int) -> list[Any]:
    """Rows ``y:y+rows`` of the arguments that are arrays of ``height`` rows; others as they are."""
    return [a[y : y + rows] if isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape[0] == height else a
            for a in args]


def _each_strip(fn: Callable[..., None], out: np.ndarray, args: tuple[Any, ...], *, start: int) -> None:
    height = args[0].shape[0]
    rows = _strip_rows(args[0])

    def strip(y: int) -> None:
        fn(out[y : y + rows], *_cut(args, height, y, rows))

    starts = range(start, height, rows)
    if len(starts) < 4:  # a few strips: dispatching them would cost more than it saves
        for y in starts:
            strip(y)
    else:  # nested use (a strip function that itself calls in_strips) runs in place
        parallel_map(strip, starts, pool="strips")


__all__ = ["STRIP_PIXELS", "cores", "in_strips", "in_strips_into", "parallel_map", "shared_pool"]
