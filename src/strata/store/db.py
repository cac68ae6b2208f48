"""The history database: SQLite in WAL mode, beside the blobs.

Tables
    runs       one row per run: workflow JSON, status, timings, parent run (for reruns)
    nodes      one row per (run, node): op, version, params, cache key, status, timing, error
    assets     one row per stored value: id (= blob sha256), kind, size
    cache      cache key → output asset ids (JSON), the op that produced them
    edges      lineage: (run, node) consumed / produced asset, by port
    exports    files written for users: path, file sha256, the asset and node they came from

A row in ``cache`` or ``assets`` is only inserted after its blob is on disk, so the database
never points at a blob that is not there (an interruption can leave an orphan blob, never a
dangling row; ``gc`` removes orphans).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL,
    workflow TEXT NOT NULL,
    workflow_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    parent TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS nodes (
    run_id TEXT NOT NULL REFERENCES runs(id),
    node_id TEXT NOT NULL,
    op TEXT NOT NULL,
    op_version INTEGER NOT NULL,
    params TEXT NOT NULL,
    cache_key TEXT,
    status TEXT NOT NULL,
    started REAL,
    duration_s REAL,
    error TEXT,
    seq INTEGER NOT NULL,
    PRIMARY KEY (run_id, node_id)
);
CREATE TABLE IF NOT EXISTS assets (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY,
    op TEXT NOT NULL,
    outputs TEXT NOT NULL,
    created REAL NOT NULL,
    duration_s REAL
);
CREATE TABLE IF NOT EXISTS edges (
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('input', 'output')),
    port TEXT NOT NULL,
    idx INTEGER NOT NULL,
    asset_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS edges_asset ON edges(asset_id);
CREATE INDEX IF NOT EXISTS edges_node ON edges(run_id, node_id);
CREATE TABLE IF NOT EXISTS exports (
    path TEXT NOT NULL,
    file_sha256 TEXT NOT NULL,
    asset_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    output TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS exports_sha ON exports(file_sha256);
"""


@dataclass(frozen=True)
class NodeRecord:
    """A node's state in one run, as the history keeps it: written by the executor
    (:meth:`HistoryDB.record_nodes`), read back by :func:`strata.store.history.run_nodes`."""

    node_id: str
    op: str
    op_version: int
    params: dict[str, Any]
    cache_key: str | None
    status: str  # running, executed, cached, failed, skipped, interrupted
    seq: int  # the node's position in the plan
    started: float | None = None
    duration_s: float | None = None
    error: str | None = None
    edges: list[tuple[str, str, int, str]] | None = None  # lineage rows: (role, port, index, asset id)

    @property
    def inputs(self) -> dict[str, list[str]]:
        """Input port → the asset ids it received, in order."""
        return self._ports("input")

    @property
    def outputs(self) -> dict[str, list[str]]:
        """Output port → the asset ids it produced, in order."""
        return self._ports("output")

    def _ports(self, role: str) -> dict[str, list[str]]:
        ports: dict[str, list[str]] = {}
        for r, port, _, asset in sorted(self.edges or (), key=lambda e: e[2]):
            if r == role:
                ports.setdefault(port, []).append(asset)
        return ports

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready data (lineage as ``inputs``/``outputs``), as the server returns it."""
        fields = {k: getattr(self, k) for k in ("node_id", "op", "op_version", "params", "cache_key", "status",
                                                 "duration_s", "error")}
        return fields | {"inputs": self.inputs, "outputs": self.outputs}


class HistoryDB:
    """Thin typed access to the history tables. One connection per thread."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._local = threading.local()
        # executescript manages its own transaction (it commits first), so no tx() here;
        # every statement is idempotent.
        self.conn.executescript(SCHEMA)

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable across application crashes in WAL mode; FULL only adds
            # protection against power loss at a large cost per commit.
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
        return conn

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    class _Tx:
        def __init__(self, conn: sqlite3.Connection):
            self.conn = conn

        def __enter__(self) -> sqlite3.Connection:
            self.conn.execute("BEGIN IMMEDIATE")
            return self.conn

        def __exit__(self, exc_type: Any, *_: Any) -> None:
            self.conn.execute("ROLLBACK" if exc_type else "COMMIT")

    def tx(self) -> "HistoryDB._Tx":
        """``with db.tx() as c:`` — one atomic transaction."""
        return HistoryDB._Tx(self.conn)

    def query(self, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
        return self.conn.execute(sql, args).fetchall()

    # -- runs ---------------------------------------------------------------------------
    def insert_run(self, run_id: str, name: str, workflow: dict[str, Any], workflow_hash: str, seed: int,
                   parent: str | None) -> None:
        with self.tx() as c:
            c.execute(
                "INSERT INTO runs (id, name, created, status, workflow, workflow_hash, seed, parent) VALUES (?,?,?,?,?,?,?,?)",
                (run_id, name, time.time(), "running", json.dumps(workflow, sort_keys=True), workflow_hash, seed, parent),
            )

    def finish_run(self, run_id: str, status: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE runs SET status=?, finished=? WHERE id=?", (status, time.time(), run_id))

    def record_nodes(self, run_id: str, records: Sequence[NodeRecord]) -> None:
        """Record nodes' states in one transaction (one commit for a batch of cached nodes).

        Each record replaces the node's earlier row in the run; one with ``edges`` also replaces
        the node's lineage.
        """
        with self.tx() as c:
            c.executemany(
                "INSERT OR REPLACE INTO nodes (run_id, node_id, op, op_version, params, cache_key, status, started, "
                "duration_s, error, seq) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                [(run_id, r.node_id, r.op, r.op_version, json.dumps(r.params, sort_keys=True), r.cache_key, r.status,
                  r.started, r.duration_s, r.error, r.seq) for r in records],
            )
            for r in records:
                if r.edges is not None:
                    self._replace_edges(c, run_id, r.node_id, r.edges)

    # -- cache + assets -----------------------------------------------------------------
    def cache_get(self, key: str) -> dict[str, Any] | None:
        row = self.conn.execute("SELECT outputs FROM cache WHERE key=?", (key,)).fetchone()
        return None if row is None else json.loads(row["outputs"])

    def cache_put(self, key: str, op: str, outputs: dict[str, Any], assets: list[tuple[str, str, int]],
                  duration_s: float | None) -> None:
        """Record assets (id, kind, size) and the cache entry that points at them, atomically."""
        now = time.time()
        with self.tx() as c:
            c.executemany("INSERT OR IGNORE INTO assets (id, kind, size, created) VALUES (?,?,?,?)",
                          [(a, k, s, now) for a, k, s in assets])
            c.execute("INSERT OR REPLACE INTO cache (key, op, outputs, created, duration_s) VALUES (?,?,?,?,?)",
                      (key, op, json.dumps(outputs, sort_keys=True), now, duration_s))

    def asset_kind(self, asset_id: str) -> str | None:
        row = self.conn.execute("SELECT kind FROM assets WHERE id=?", (asset_id,)).fetchone()
        return None if row is None else row["kind"]

    @staticmethod
    def _replace_edges(c: sqlite3.Connection, run_id: str, node_id: str, rows: list[tuple[str, str, int, str]]) -> None:
        """rows: (role, port, idx, asset_id)."""
        c.execute("DELETE FROM edges WHERE run_id=? AND node_id=?", (run_id, node_id))
        c.executemany("INSERT INTO edges (run_id, node_id, role, port, idx, asset_id) VALUES (?,?,?,?,?,?)",
                      [(run_id, node_id, *r) for r in rows])

    def add_exports(self, rows: Sequence[tuple[str, str, str, str, str, str]]) -> None:
        """Record written files, (path, file sha256, asset id, run id, node id, output) each, in
        one transaction."""
        now = time.time()
        with self.tx() as c:
            c.executemany("INSERT INTO exports (path, file_sha256, asset_id, run_id, node_id, output, created) "
                          "VALUES (?,?,?,?,?,?,?)", [(*row, now) for row in rows])

    def referenced_blob_ids(self) -> Iterator[str]:
        for row in self.conn.execute("SELECT id FROM assets"):
            yield row["id"]

    def integrity_check(self) -> str:
        return self.conn.execute("PRAGMA integrity_check").fetchone()[0]
