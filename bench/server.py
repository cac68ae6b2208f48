"""Server benchmark: the queue under concurrent load, then a crash with jobs queued.

    python bench/server.py [--jobs 200] [--clients 20] [--crash-jobs 40]   → bench/results/server.json

Everything runs on loopback against ``strata serve`` in a child process, on a fresh store.

1. Load: ``--jobs`` jobs from ``--clients`` concurrent clients (threads, one HTTP connection
   each). Each job is a cheap classical workflow (sample photo → resize 128² → exposure with a
   distinct ``stops``, so the graded node and its output never come from the cache) writing one
   PNG. Reports per-submit latency (p50/p95), throughput (jobs finished per second, from the
   first submit to the last job's end) and checks that every job finished exactly once: all
   ids distinct, every job ``succeeded`` with ``attempts == 1``, one run per job, no other runs.
   Baseline in the same run: the same kind of workflow executed in-process, one after another,
   with no HTTP and no queue (``server / direct`` throughput ratio = the server's overhead).
2. Crash: submit ``--crash-jobs`` more jobs, SIGKILL the server while some are queued (and one
   is likely running), restart it on the same store, and check that all of them finish, each
   exactly once (a job killed mid-run is re-queued; its interrupted run is kept in the history,
   the re-run resumes from the cache).

Output files are written with their embedded provenance, but the invisible watermark and the
C2PA signature are off by default (``STRATA_WATERMARK=0``, ``STRATA_SIGN=0``, in the server and
the baseline alike): together they cost ~1.5 s per file on 2 cores, which would measure them
(bench/watermark.py does) rather than the queue. ``--provenance-extras`` keeps them on.

Every wait is bounded; the child server is always killed at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import scratch_dir, write_result  # noqa: E402

START_TIMEOUT_S = 90.0
FINISH_TIMEOUT_S = 600.0


def workflow(stops: float) -> dict[str, Any]:
    """The benchmark job: distinct ``stops`` → the graded node is never a cache hit."""
    return {
        "name": "bench-server",
        "nodes": [
            {"id": "photo", "op": "io.sample_image", "params": {"name": "astronaut"}},
            {"id": "small", "op": "edit.resize", "inputs": {"image": "photo"}, "params": {"width": 128, "height": 128}},
            {"id": "grade", "op": "enhance.exposure", "inputs": {"image": "small"}, "params": {"stops": stops}},
        ],
        "outputs": {"out.png": "grade"},
    }


def stops_for(i: int, offset: float) -> float:
    return round(offset + i * 1e-4, 6)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``strata serve`` in a child process on loopback."""

    def __init__(self, store: Path, port: int, log: Path):
        self.store, self.port, self.log = store, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> float:
        """Start and wait until /api/health answers; returns the seconds that took."""
        t0 = time.perf_counter()
        cmd = [sys.executable, "-c", "from strata.cli.main import app; app()", "serve", "--host", "127.0.0.1",
               "--port", str(self.port), "--store", str(self.store), "--rate", "100000", "--burst", "100000"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log}")
            try:
                if httpx.get(self.url + "/api/health", timeout=1.0).status_code == 200:
                    return time.perf_counter() - t0
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"server did not answer within {START_TIMEOUT_S} s; see {self.log}")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.kill()


def submit_all(url: str, indices: list[int], clients: int, offset: float) -> tuple[list[str], list[float], float]:
    """Submit one job per index from ``clients`` threads; (job ids, latencies in s, first submit time)."""
    ids: list[str] = []
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    shares = [indices[k::clients] for k in range(clients)]
    start = threading.Barrier(clients + 1)

    def client(share: list[int]) -> None:
        with httpx.Client(base_url=url, timeout=60.0) as http:
            start.wait()
            for i in share:
                t = time.perf_counter()
                r = http.post("/api/jobs", json=workflow(stops_for(i, offset)))
                dt = time.perf_counter() - t
                with lock:
                    if r.status_code == 202:
                        ids.append(r.json()["id"])
                        latencies.append(dt)
                    else:
                        errors.append(f"{r.status_code}: {r.text[:200]}")

    threads = [threading.Thread(target=client, args=(s,)) for s in shares]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(FINISH_TIMEOUT_S)
    if errors:
        raise RuntimeError(f"{len(errors)} submissions failed, e.g. {errors[0]}")
    return ids, latencies, t0


def wait_all_done(url: str, ids: list[str], timeout_s: float = FINISH_TIMEOUT_S) -> float:
    """Poll until every job in ``ids`` ended; returns perf_counter() at that moment."""
    pending = set(ids)
    deadline = time.monotonic() + timeout_s
    with httpx.Client(base_url=url, timeout=30.0) as http:
        while pending and time.monotonic() < deadline:
            jobs = http.get("/api/jobs", params={"limit": 1000}).json()["jobs"]
            pending -= {j["id"] for j in jobs if j["status"] in ("succeeded", "failed", "cancelled")}
            if pending:
                time.sleep(0.2)
    if pending:
        raise RuntimeError(f"{len(pending)} jobs did not finish within {timeout_s} s")
    return time.perf_counter()


def job_rows(store: Path, ids: list[str]) -> list[sqlite3.Row]:
    with sqlite3.connect(store / "history.sqlite") as db:
        db.row_factory = sqlite3.Row
        marks = ",".join("?" * len(ids))
        return db.execute(f"SELECT id, status, attempts, run_id FROM server_jobs WHERE id IN ({marks})", ids).fetchall()


def run_rows(store: Path, name: str) -> list[sqlite3.Row]:
    with sqlite3.connect(store / "history.sqlite") as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT id, status FROM runs WHERE name=?", (name,)).fetchall()


def queue_counts(store: Path) -> dict[str, int]:
    with sqlite3.connect(store / "history.sqlite") as db:
        return dict(db.execute("SELECT status, COUNT(*) FROM server_jobs GROUP BY status").fetchall())


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def direct_baseline(n: int) -> dict[str, Any]:
    """The same kind of job run in-process, serially: no HTTP, no queue (a fresh store)."""
    from strata.store import Store
    from strata.workflow.executor import Executor
    from strata.workflow.spec import parse_workflow
    from strata.workflow.validate import validate

    tmp = scratch_dir("strata-bench-direct-")
    executor = Executor(Store(tmp / "store"))
    executor.run(validate(parse_workflow(workflow(-5.0))), out_dir=tmp / "out")  # warm-up
    t0 = time.perf_counter()
    for i in range(n):
        executor.run(validate(parse_workflow(workflow(stops_for(i, -4.0)))), out_dir=tmp / "out")
    elapsed = time.perf_counter() - t0
    return {"jobs": n, "seconds": round(elapsed, 3), "jobs_per_s": round(n / elapsed, 2)}


def load_phase(server: Server, jobs: int, clients: int) -> dict[str, Any]:
    warm, _, _ = submit_all(server.url, list(range(5)), 5, offset=-9.0)  # imports, sample photo in the cache
    wait_all_done(server.url, warm)
    ids, latencies, t0 = submit_all(server.url, list(range(jobs)), clients, offset=1.0)
    t_end = wait_all_done(server.url, ids)
    rows = job_rows(server.store, ids)
    runs = {r["id"]: r["status"] for r in run_rows(server.store, "bench-server")}
    run_ids = [r["run_id"] for r in rows]
    checks = {
        "submitted": len(ids),
        "distinct_ids": len(set(ids)),
        "succeeded": sum(r["status"] == "succeeded" for r in rows),
        "attempts_1": sum(r["attempts"] == 1 for r in rows),
        "distinct_runs": len(set(run_ids)),
        "runs_recorded_ok": sum(runs.get(r) == "ok" for r in run_ids),
        "other_runs": len(runs) - len(warm) - len(set(run_ids)),
    }
    ok = (checks["submitted"] == checks["distinct_ids"] == checks["succeeded"] == checks["attempts_1"]
          == checks["distinct_runs"] == checks["runs_recorded_ok"] == jobs and checks["other_runs"] == 0)
    elapsed = t_end - t0
    return {
        "jobs": jobs, "clients": clients,
        "submit_latency_ms": {"p50": round(percentile(latencies, 0.5) * 1e3, 2),
                              "p95": round(percentile(latencies, 0.95) * 1e3, 2),
                              "max": round(max(latencies) * 1e3, 2),
                              "mean": round(statistics.mean(latencies) * 1e3, 2)},
        "seconds_first_submit_to_last_done": round(elapsed, 3),
        "throughput_jobs_per_s": round(jobs / elapsed, 2),
        "checks": checks, "all_finished_once": ok,
    }


def crash_phase(server: Server, jobs: int) -> dict[str, Any]:
    ids, _, _ = submit_all(server.url, list(range(jobs)), 4, offset=3.0)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # let a few finish so the kill lands mid-queue
        done = sum(r["status"] == "succeeded" for r in job_rows(server.store, ids))
        if done >= 3:
            break
        time.sleep(0.02)
    server.kill()
    at_kill = {s: sum(r["status"] == s for r in job_rows(server.store, ids)) for s in ("queued", "running", "succeeded")}
    restart_s = server.start()
    t0 = time.perf_counter()
    wait_all_done(server.url, ids)
    rows = job_rows(server.store, ids)
    runs = run_rows(server.store, "bench-server")
    run_status = {r["id"]: r["status"] for r in runs}
    checks = {
        "succeeded": sum(r["status"] == "succeeded" for r in rows),
        "requeued_after_kill": sum(r["attempts"] == 2 for r in rows),
        "attempts_over_2": sum(r["attempts"] > 2 for r in rows),
        "final_runs_ok": sum(run_status.get(r["run_id"]) == "ok" for r in rows),
        "interrupted_runs_kept": sum(s == "interrupted" for s in run_status.values()),
    }
    ok = (checks["succeeded"] == checks["final_runs_ok"] == jobs and checks["attempts_over_2"] == 0
          and at_kill["queued"] > 0)  # the kill must land with jobs still queued to prove anything
    return {"jobs": jobs, "at_kill": at_kill, "restart_to_healthy_s": round(restart_s, 3),
            "seconds_to_drain_after_restart": round(time.perf_counter() - t0, 3), "checks": checks,
            "all_finished_once": ok}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=200)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--crash-jobs", type=int, default=40)
    ap.add_argument("--baseline-jobs", type=int, default=50)
    ap.add_argument("--provenance-extras", action="store_true", help="keep watermarking and C2PA signing on")
    args = ap.parse_args()
    if not args.provenance_extras:  # inherited by the server process and used by the baseline
        os.environ["STRATA_WATERMARK"] = "0"
        os.environ["STRATA_SIGN"] = "0"
    tmp = scratch_dir("strata-bench-server-")
    server = Server(tmp / "store", free_port(), tmp / "server.log")
    try:
        start_s = server.start()
        load = load_phase(server, args.jobs, args.clients)
        print(json.dumps(load, indent=2))
        crash = crash_phase(server, args.crash_jobs)
        print(json.dumps(crash, indent=2))
    finally:
        server.stop()
    baseline = direct_baseline(args.baseline_jobs)
    result = {
        "workflow": "io.sample_image → edit.resize 128² → enhance.exposure (distinct stops) → out.png",
        "server": {"workers": 1, "rate_limit": "raised to 100000/s for the load test", "cold_start_s": round(start_s, 3)},
        "watermark_and_signing": "on" if args.provenance_extras else "off (STRATA_WATERMARK=0, STRATA_SIGN=0)",
        "load": load,
        "crash_restart": crash,
        "baseline_direct_in_process": baseline,
        "server_vs_direct_throughput": round(load["throughput_jobs_per_s"] / baseline["jobs_per_s"], 3),
        "store_queue_counts_at_end": queue_counts(server.store),
    }
    path = write_result("server", result)
    print(f"wrote {path}")
    if not (load["all_finished_once"] and crash["all_finished_once"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
