"""Worker threads that take jobs from the queue and run them with the executor.

Each worker claims a job, runs its workflow against a fresh :class:`Store` view (so decoded
values do not pile up in memory across jobs), streams events to the hub, and records the
result. A heartbeat thread refreshes running jobs, turns cancel requests made anywhere
(this process or another one sharing the store) into the executor's cooperative cancel, and
periodically re-queues jobs orphaned by dead servers (see :mod:`strata.server.queue`).

On shutdown, running jobs are interrupted between nodes and put back in the queue (not
cancelled, and their attempt is not counted), so they resume on the next start.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.errors import RunInterrupted, StrataError, WorkflowError
from strata.server.config import ServerConfig
from strata.server.hub import EventHub, event_message
from strata.server.queue import Job, JobQueue
from strata.server.submission import issues_json, prepare_plan
from strata.server.uploads import upload_path
from strata.store import Store, new_run_id, sha256_file
from strata.workflow.events import Event
from strata.workflow.executor import Executor

log = logging.getLogger("strata.server")
# Output files are written, hashed (their bytes are already stored as blobs) and deleted: a
# RAM-backed folder spares the fsyncs of a file nobody keeps (~25 % of a small job's time).
SCRATCH = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


@dataclass
class RunningJob:
    """A job this process is running: the flag the executor polls, and why it was set."""

    job_id: str
    worker: str
    cancel: threading.Event = field(default_factory=threading.Event)
    by_user: bool = False


def server_run_id() -> str:
    """A run id with enough randomness for many runs per second (``new_run_id`` + 4 hex)."""
    return new_run_id() + secrets.token_hex(2)


class WorkerPool:
    """``config.workers`` threads running jobs from ``queue`` (plus one heartbeat thread)."""

    def __init__(self, queue: JobQueue, hub: EventHub, config: ServerConfig, models: Any):
        self.queue = queue
        self.hub = hub
        self.config = config
        self.models = models
        self.running: dict[str, RunningJob] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ----------------------------------------------------------------------
    def start(self) -> list[str]:
        """Recover orphaned jobs, then start the threads; returns the recovered job ids."""
        recovered = self.queue.recover(stale_after_s=self.config.stale_after_s, max_attempts=self.config.max_attempts)
        if recovered:
            log.warning("re-queued %d job(s) left running by a server that stopped: %s", len(recovered),
                        ", ".join(recovered))
        for i in range(self.config.workers):
            t = threading.Thread(target=self._work, args=(self.queue.worker_stamp(i),), name=f"strata-worker-{i}",
                                 daemon=True)
            t.start()
            self._threads.append(t)
        hb = threading.Thread(target=self._heartbeat, name="strata-heartbeat", daemon=True)
        hb.start()
        self._threads.append(hb)
        return recovered

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop taking jobs, interrupt running ones (they go back to the queue) and join."""
        self._stop.set()
        self._wake.set()
        with self._lock:
            for rj in self.running.values():
                rj.cancel.set()
        deadline = time.monotonic() + timeout_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._threads.clear()

    def notify(self) -> None:
        """A job was queued: wake an idle worker now instead of at its next poll."""
        self._wake.set()

    def cancel_running(self, job_id: str) -> bool:
        """Interrupt ``job_id`` if this process runs it (the DB flag covers other processes)."""
        with self._lock:
            rj = self.running.get(job_id)
            if rj is None:
                return False
            rj.by_user = True
            rj.cancel.set()
            return True

    # -- threads ------------------------------------------------------------------------
    def _work(self, stamp: str) -> None:
        try:
            while not self._stop.is_set():
                job = self.queue.claim(stamp, server_run_id())
                if job is None:
                    self._wake.wait(self.config.poll_s)
                    self._wake.clear()
                    continue
                self._execute(job, stamp)
        finally:
            self.queue.store.db.close()

    def _heartbeat(self) -> None:
        next_recover = time.monotonic() + self.config.stale_after_s / 2
        try:
            while not self._stop.wait(self.config.heartbeat_s):
                with self._lock:
                    ids = list(self.running)
                for job_id in self.queue.heartbeat(ids):
                    self.cancel_running(job_id)
                if time.monotonic() >= next_recover:
                    next_recover = time.monotonic() + self.config.stale_after_s / 2
                    if self.queue.recover(stale_after_s=self.config.stale_after_s, max_attempts=self.config.max_attempts):
                        self.notify()
        except Exception:  # noqa: BLE001 - a heartbeat failure must be visible, not silent
            log.exception("heartbeat thread stopped")
        finally:
            self.queue.store.db.close()

    # -- one job ------------------------------------------------------------------------
    def _execute(self, job: Job, stamp: str) -> None:
        rj = RunningJob(job.id, stamp)
        with self._lock:
            self.running[job.id] = rj
        if job.cancel_requested:
            rj.by_user = True
            rj.cancel.set()
        self.hub.publish(job.id, {"event": "job_started", "job": job.id, "run_id": job.run_id, "attempt": job.attempts,
                                  "time": time.time()})
        out_dir = Path(tempfile.mkdtemp(prefix=f"strata-{job.id}-", dir=SCRATCH))
        store = Store(self.queue.store.root)  # a fresh view: its value cache lives for this job only
        status, result, error = "failed", None, None
        try:
            plan = prepare_plan(job.request["workflow"], upload_path=lambda sha: upload_path(self.queue, sha),
                                allowed_dirs=self.config.allowed_file_dirs, max_nodes=self.config.max_workflow_nodes)

            def sink(event: Event) -> None:
                self.hub.publish(job.id, event_message(job.id, event))

            executor = Executor(store, sinks=[sink], models=self.models)
            run = executor.run(plan, out_dir=out_dir, run_id=job.run_id, cancel=rj.cancel,
                               no_cache=bool(job.request.get("no_cache")), parent_run=job.request.get("parent_run"))
            outputs = {name: [_output_entry(p) for p in paths] for name, paths in run.outputs.items()}
            result = {"run_id": run.run_id, "run_status": run.status, "outputs": outputs, "executed": run.executed,
                      "cached": run.cached, "failed": run.failed, "skipped": run.skipped,
                      "node_outputs": run.refs, "duration_s": round(run.duration_s, 4)}
            status = "succeeded" if run.ok else "failed"
            error = "; ".join(run.failed.values()) or None
        except RunInterrupted:
            if not rj.by_user and self._stop.is_set():
                self._requeue(job, stamp)
                return
            status, error = "cancelled", "cancelled while running; finished nodes are stored and reused by a rerun"
        except WorkflowError as exc:
            error, result = str(exc), {"issues": issues_json(exc)}
        except StrataError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - one bad job must not stop the worker
            log.exception("job %s crashed", job.id)
            error = f"internal error: {type(exc).__name__}: {exc}"
        finally:
            store.close()
            shutil.rmtree(out_dir, ignore_errors=True)
            with self._lock:
                self.running.pop(job.id, None)
        if self.queue.finish(job.id, stamp, status, result=result, error=error):
            self.hub.publish(job.id, {"event": "job_finished", "job": job.id, "status": status, "result": result,
                                      "error": error, "time": time.time()})

    def _requeue(self, job: Job, stamp: str) -> None:
        if self.queue.release(job.id, stamp):
            self.hub.publish(job.id, {"event": "job_requeued", "job": job.id, "time": time.time(),
                                      "reason": "the server is shutting down; the job runs again on the next start"})


def _output_entry(path: Path) -> dict[str, Any]:
    """An output file as clients fetch it: by content hash (the file itself is not kept)."""
    sha = sha256_file(path)
    return {"name": path.name, "sha256": sha, "url": f"/api/assets/{sha}"}
