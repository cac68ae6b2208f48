"""The persistent job queue: tables in the store's own ``history.sqlite``.

Design
    - ``server_jobs`` holds every job: its request (the workflow as submitted), priority,
      status and result. Created idempotently (``CREATE TABLE IF NOT EXISTS``) beside the
      history tables, so one SQLite file (WAL) holds runs and the jobs that made them.
    - Statuses: ``queued`` → ``running`` → ``succeeded`` | ``failed`` | ``cancelled``.
    - Claiming is one ``BEGIN IMMEDIATE`` transaction (select the best queued job, mark it
      running, stamp the worker): SQLite's write lock makes it atomic across threads *and*
      processes, so no job is handed to two workers.
    - Order: higher ``priority`` first, then submission order (``seq``).
    - Finishing is fenced: only the worker holding the job may finish it, so a worker that lost
      its job (declared dead and re-queued) cannot overwrite the new attempt's result.
    - Crash recovery (on start-up, then periodically): a ``running`` job whose worker process is
      gone (same host, pid not alive, or an older server instance in this process) or whose
      heartbeat is older than ``stale_after_s`` is **re-queued** — the executor's cache means the
      re-run resumes from the nodes that had finished, and outputs are deterministic. After
      ``max_attempts`` such deaths the job is marked failed instead (a job that kills the
      server must not kill it forever). The orphaned run is marked ``interrupted``.
    - Cancel: a queued job becomes ``cancelled`` at once (it never runs); a running job gets
      ``cancel_requested``, which its worker sees within one heartbeat and turns into the
      executor's cooperative cancel (checked between nodes and at progress steps).
    - Idempotency: a submission may carry a key; the same (client, key) returns the first job.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from strata.store import Store

SCHEMA = """
CREATE TABLE IF NOT EXISTS server_jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    request TEXT NOT NULL,
    client TEXT NOT NULL,
    idem_key TEXT,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    heartbeat REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    result TEXT,
    error TEXT
);
CREATE INDEX IF NOT EXISTS server_jobs_queue ON server_jobs(status, priority DESC, seq);
CREATE UNIQUE INDEX IF NOT EXISTS server_jobs_idem ON server_jobs(client, idem_key) WHERE idem_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS server_uploads (
    sha256 TEXT PRIMARY KEY,
    format TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    size INTEGER NOT NULL,
    client TEXT NOT NULL,
    created REAL NOT NULL
);
"""

TERMINAL = ("succeeded", "failed", "cancelled")
_WRITE_LOCK = threading.Lock()
HOST = socket.gethostname()


@dataclass(frozen=True)
class Job:
    """One row of ``server_jobs``, decoded."""

    id: str
    seq: int
    kind: str
    priority: int
    status: str
    request: dict[str, Any]
    client: str
    created: float
    started: float | None
    finished: float | None
    attempts: int
    worker: str | None
    cancel_requested: bool
    run_id: str | None
    result: dict[str, Any] | None
    error: str | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> "Job":
        return cls(r["id"], r["seq"], r["kind"], r["priority"], r["status"], json.loads(r["request"]), r["client"],
                   r["created"], r["started"], r["finished"], r["attempts"], r["worker"], bool(r["cancel_requested"]),
                   r["run_id"], json.loads(r["result"]) if r["result"] else None, r["error"])

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def public(self, *, with_request: bool = False) -> dict[str, Any]:
        """The JSON clients see (never the client's token hash)."""
        out: dict[str, Any] = {
            "id": self.id, "kind": self.kind, "priority": self.priority, "status": self.status,
            "created": self.created, "started": self.started, "finished": self.finished, "attempts": self.attempts,
            "cancel_requested": self.cancel_requested, "run_id": self.run_id, "result": self.result,
            "error": self.error,
        }
        if with_request:
            out["request"] = self.request
        return out


def new_job_id() -> str:
    return "job-" + uuid.uuid4().hex[:16]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class JobQueue:
    """Jobs in the store's SQLite database (see the module docstring).

    Args:
        store: the store whose ``history.sqlite`` holds the queue.
        instance: this server instance's id (part of the worker stamp); default a new one.
    """

    def __init__(self, store: Store, *, instance: str | None = None):
        self.store = store
        self.db = store.db
        self.instance = instance or uuid.uuid4().hex[:8]
        self.db.conn.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        # One writer at a time inside this process: threads queue on a lock instead of meeting
        # in SQLite's busy handler, whose growing sleeps (1, 2, 5, 10 ... 100 ms) add latency.
        with _WRITE_LOCK, self.db.tx() as c:
            yield c

    def worker_stamp(self, worker: int) -> str:
        """``host:pid:instance:worker`` — who holds a running job."""
        return f"{HOST}:{os.getpid()}:{self.instance}:{worker}"

    # -- submit / read ------------------------------------------------------------------
    def submit(self, kind: str, request: dict[str, Any], *, client: str, priority: int = 0,
               idem_key: str | None = None, on_queued: Callable[[str, float], None] | None = None) -> tuple[Job, bool]:
        """Queue a job; returns (job, created). With ``idem_key``, a repeat returns the first job.

        ``on_queued(job_id, created)`` runs inside the inserting transaction, so whatever it
        announces happens before any worker (which needs the write lock) can claim the job.
        """
        job_id = new_job_id()
        payload = json.dumps(request, sort_keys=True)
        created = time.time()
        with self._tx() as c:
            if idem_key is not None:
                row = c.execute("SELECT * FROM server_jobs WHERE client=? AND idem_key=?", (client, idem_key)).fetchone()
                if row is not None:
                    return Job.from_row(row), False
            c.execute("INSERT INTO server_jobs (id, kind, priority, status, request, client, idem_key, created) "
                      "VALUES (?,?,?,?,?,?,?,?)", (job_id, kind, priority, "queued", payload, client, idem_key, created))
            if on_queued is not None:
                on_queued(job_id, created)
        job = self.get(job_id)
        assert job is not None  # just inserted in a committed transaction
        return job, True

    def get(self, job_id: str) -> Job | None:
        row = self.db.conn.execute("SELECT * FROM server_jobs WHERE id=?", (job_id,)).fetchone()
        return None if row is None else Job.from_row(row)

    def list(self, *, status: str | None = None, limit: int = 50) -> list[Job]:
        """Newest first, optionally only one status."""
        if status:
            rows = self.db.query("SELECT * FROM server_jobs WHERE status=? ORDER BY seq DESC LIMIT ?", (status, limit))
        else:
            rows = self.db.query("SELECT * FROM server_jobs ORDER BY seq DESC LIMIT ?", (limit,))
        return [Job.from_row(r) for r in rows]

    def counts(self) -> dict[str, int]:
        return {r["status"]: r["n"] for r in self.db.query("SELECT status, COUNT(*) AS n FROM server_jobs GROUP BY status")}

    def position(self, job: Job) -> int | None:
        """How many queued jobs run before ``job`` (None unless it is queued)."""
        if job.status != "queued":
            return None
        row = self.db.conn.execute(
            "SELECT COUNT(*) FROM server_jobs WHERE status='queued' AND (priority > ? OR (priority = ? AND seq < ?))",
            (job.priority, job.priority, job.seq)).fetchone()
        return int(row[0])

    # -- the worker's side --------------------------------------------------------------
    def claim(self, worker: str, run_id: str) -> Job | None:
        """Atomically take the best queued job for ``worker``; None when the queue is empty."""
        now = time.time()
        with self._tx() as c:
            row = c.execute("SELECT seq FROM server_jobs WHERE status='queued' ORDER BY priority DESC, seq LIMIT 1").fetchone()
            if row is None:
                return None
            c.execute("UPDATE server_jobs SET status='running', started=?, heartbeat=?, attempts=attempts+1, worker=?, "
                      "run_id=? WHERE seq=?", (now, now, worker, run_id, row["seq"]))
            claimed = c.execute("SELECT * FROM server_jobs WHERE seq=?", (row["seq"],)).fetchone()
        return Job.from_row(claimed)

    def finish(self, job_id: str, worker: str, status: str, *, result: dict[str, Any] | None = None,
               error: str | None = None) -> bool:
        """Record a job's end; False if ``worker`` no longer holds it (it was re-queued)."""
        with self._tx() as c:
            cur = c.execute("UPDATE server_jobs SET status=?, finished=?, result=?, error=?, heartbeat=NULL "
                            "WHERE id=? AND worker=? AND status='running'",
                            (status, time.time(), json.dumps(result) if result is not None else None, error, job_id, worker))
        return cur.rowcount == 1

    def release(self, job_id: str, worker: str) -> bool:
        """Put a running job back in the queue (server shutting down); its attempt is not counted."""
        with self._tx() as c:
            cur = c.execute("UPDATE server_jobs SET status='queued', worker=NULL, heartbeat=NULL, started=NULL, "
                            "attempts=MAX(attempts-1, 0) WHERE id=? AND worker=? AND status='running'", (job_id, worker))
        return cur.rowcount == 1

    def heartbeat(self, job_ids: list[str]) -> set[str]:
        """Refresh running jobs' heartbeats; returns those whose cancellation was requested."""
        if not job_ids:
            return set()
        marks = ",".join("?" * len(job_ids))
        with self._tx() as c:
            c.execute(f"UPDATE server_jobs SET heartbeat=? WHERE status='running' AND id IN ({marks})", (time.time(), *job_ids))
            rows = c.execute(f"SELECT id FROM server_jobs WHERE cancel_requested=1 AND id IN ({marks})", job_ids).fetchall()
        return {r["id"] for r in rows}

    def cancel(self, job_id: str) -> Job | None:
        """Cancel a queued job (it never runs) or flag a running one; None if unknown."""
        with self._tx() as c:
            c.execute("UPDATE server_jobs SET status='cancelled', finished=?, error='cancelled before it started' "
                      "WHERE id=? AND status='queued'", (time.time(), job_id))
            c.execute("UPDATE server_jobs SET cancel_requested=1 WHERE id=? AND status='running'", (job_id,))
        return self.get(job_id)

    def recover(self, *, stale_after_s: float, max_attempts: int) -> list[str]:
        """Re-queue (or fail) running jobs whose worker is gone; returns their ids."""
        now = time.time()
        recovered: list[str] = []
        with self._tx() as c:
            for r in c.execute("SELECT id, worker, heartbeat, attempts, run_id FROM server_jobs WHERE status='running'").fetchall():
                if not self._orphaned(r["worker"], r["heartbeat"], now, stale_after_s):
                    continue
                if r["attempts"] >= max_attempts:
                    c.execute("UPDATE server_jobs SET status='failed', finished=?, worker=NULL, error=? WHERE id=?",
                              (now, f"the server stopped {r['attempts']} times while running this job; it is not retried "
                                    "again — check the workflow (a node may exhaust memory) and resubmit", r["id"]))
                else:
                    c.execute("UPDATE server_jobs SET status='queued', worker=NULL, heartbeat=NULL, started=NULL "
                              "WHERE id=?", (r["id"],))
                if r["run_id"]:
                    c.execute("UPDATE runs SET status='interrupted', finished=? WHERE id=? AND status='running'",
                              (now, r["run_id"]))
                recovered.append(r["id"])
        return recovered

    def _orphaned(self, worker: str | None, heartbeat: float | None, now: float, stale_after_s: float) -> bool:
        if heartbeat is None or now - heartbeat > stale_after_s:
            return True
        host, _, rest = (worker or "").partition(":")
        pid_text, _, rest = rest.partition(":")
        instance = rest.partition(":")[0]
        if host != HOST or not pid_text.isdigit():
            return False  # another machine's worker: only its heartbeat can tell
        pid = int(pid_text)
        if pid == os.getpid():
            return instance != self.instance  # an earlier server instance in this process is gone
        return not _pid_alive(pid)

    # -- uploads ------------------------------------------------------------------------
    def record_upload(self, sha256: str, fmt: str, width: int, height: int, size: int, client: str) -> None:
        with self._tx() as c:
            c.execute("INSERT OR IGNORE INTO server_uploads (sha256, format, width, height, size, client, created) "
                      "VALUES (?,?,?,?,?,?,?)", (sha256, fmt, width, height, size, client, time.time()))
            c.execute("INSERT OR IGNORE INTO assets (id, kind, size, created) VALUES (?,?,?,?)",
                      (sha256, f"file/{fmt.lower()}", size, time.time()))

    def upload(self, sha256: str) -> dict[str, Any] | None:
        row = self.db.conn.execute("SELECT * FROM server_uploads WHERE sha256=?", (sha256,)).fetchone()
        return None if row is None else {k: row[k] for k in ("sha256", "format", "width", "height", "size")}
