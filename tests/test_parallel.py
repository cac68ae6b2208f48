"""The process-wide pools: work fans out from ordinary threads, and runs in place inside a pool."""

from __future__ import annotations

import threading

import pytest

from strata import parallel


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(parallel, "cores", lambda: 2)


def test_parallel_map_fans_out_from_an_ordinary_thread_and_keeps_the_order(two_cores) -> None:
    names = parallel.parallel_map(lambda i: (i, threading.current_thread().name), range(6), pool="strips")
    assert [i for i, _ in names] == list(range(6))
    assert all(name.startswith("strata-strips_") for _, name in names)


def test_inside_any_shared_pool_the_items_run_in_the_calling_thread(two_cores) -> None:
    def job() -> tuple[str, set[str]]:
        here = threading.current_thread().name
        ran = parallel.parallel_map(lambda i: threading.current_thread().name, range(6), pool="strips")
        return here, set(ran)

    for pool in ("files", "strips"):  # another pool's thread, and the same pool's (no deadlock)
        here, ran = parallel.shared_pool(pool).submit(job).result(timeout=30)
        assert here.startswith(f"strata-{pool}_") and ran == {here}
    # a thread named like strata's others (a server worker) is not a pool thread: it fans out
    worker = []
    t = threading.Thread(target=lambda: worker.append(job()), name="strata-worker-0")
    t.start()
    t.join(30)
    assert worker[0][1] and all(n.startswith("strata-strips_") for n in worker[0][1])
