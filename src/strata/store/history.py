"""Questions asked of the history: which runs, what happened in one, where a file came from,
what changed between two runs. The CLI and the server format these answers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from strata.errors import StoreError
from strata.store.blobs import sha256_file
from strata.store.db import NodeRecord
from strata.store.store import Store


@dataclass
class RunSummary:
    id: str
    name: str
    created: float
    finished: float | None
    status: str
    parent: str | None
    counts: dict[str, int]


@dataclass
class LineageNode:
    """One step in a file's history: the node that made an asset, and what made its inputs."""

    run_id: str
    node_id: str
    op: str
    params: dict[str, Any]
    asset_id: str
    inputs: dict[str, list["LineageNode"]]


def resolve_run(store: Store, run: str) -> str:
    """Full run id from an id, a unique prefix, or ``last``."""
    if run in ("last", "latest"):
        rows = store.db.query("SELECT id FROM runs ORDER BY created DESC LIMIT 1")
    else:
        rows = store.db.query("SELECT id FROM runs WHERE id LIKE ? ORDER BY created DESC LIMIT 3", (run + "%",))
    if not rows:
        raise StoreError(f"no run '{run}' in {store.root}; `strata runs` lists them")
    if len(rows) > 1 and rows[0]["id"] != run:
        raise StoreError(f"'{run}' matches several runs ({', '.join(r['id'] for r in rows)}…); give more characters")
    return rows[0]["id"]


def list_runs(store: Store, *, limit: int = 20) -> list[RunSummary]:
    rows = store.db.query("SELECT * FROM runs ORDER BY created DESC LIMIT ?", (limit,))
    out = []
    for r in rows:
        counts = {c["status"]: c["n"] for c in store.db.query(
            "SELECT status, COUNT(*) AS n FROM nodes WHERE run_id=? GROUP BY status", (r["id"],))}
        out.append(RunSummary(r["id"], r["name"], r["created"], r["finished"], r["status"], r["parent"], counts))
    return out


def run_workflow_dict(store: Store, run_id: str) -> dict[str, Any]:
    row = store.db.query("SELECT workflow FROM runs WHERE id=?", (run_id,))
    if not row:
        raise StoreError(f"no run '{run_id}'")
    return json.loads(row[0]["workflow"])


def run_nodes(store: Store, run_id: str) -> list[NodeRecord]:
    out = []
    for r in store.db.query("SELECT * FROM nodes WHERE run_id=? ORDER BY seq", (run_id,)):
        edges = [(e["role"], e["port"], e["idx"], e["asset_id"]) for e in store.db.query(
            "SELECT role, port, idx, asset_id FROM edges WHERE run_id=? AND node_id=? ORDER BY idx", (run_id, r["node_id"]))]
        out.append(NodeRecord(r["node_id"], r["op"], r["op_version"], json.loads(r["params"]), r["cache_key"],
                              r["status"], r["seq"], r["started"], r["duration_s"], r["error"], edges))
    return out


def find_asset(store: Store, target: str) -> tuple[str, str | None]:
    """(asset id, run id hint) for a file path, a file's sha256, or an asset id (prefix)."""
    p = Path(target)
    if p.is_file():
        sha = sha256_file(p)
        row = store.db.query("SELECT asset_id, run_id FROM exports WHERE file_sha256=? ORDER BY created DESC LIMIT 1",
                             (sha,))
        if row:
            return row[0]["asset_id"], row[0]["run_id"]
        from strata.provenance.metadata import read_provenance

        prov = read_provenance(p)
        asset = getattr(prov, "asset_id", None) if prov is not None else None
        if asset:
            return asset, None
        raise StoreError(f"{p} was not written by this store ({store.root}) and carries no strata asset id")
    rows = store.db.query("SELECT id FROM assets WHERE id LIKE ? LIMIT 2", (target + "%",))
    if len(rows) == 1:
        return rows[0]["id"], None
    if not rows:
        raise StoreError(f"'{target}' is neither a file nor an asset id in {store.root}")
    raise StoreError(f"asset prefix '{target}' is ambiguous; give more characters")


def lineage(store: Store, asset_id: str, *, run_hint: str | None = None, depth: int = 50) -> LineageNode | None:
    """The tree of nodes (and their params) that produced ``asset_id``."""
    args: tuple[Any, ...] = (asset_id,)
    sql = "SELECT run_id, node_id FROM edges WHERE asset_id=? AND role='output'"
    if run_hint:
        sql += " AND run_id=?"
        args += (run_hint,)
    rows = store.db.query(sql + " ORDER BY rowid DESC LIMIT 1", args)
    if not rows:
        return None
    run_id, node_id = rows[0]["run_id"], rows[0]["node_id"]
    nrow = store.db.query("SELECT op, params FROM nodes WHERE run_id=? AND node_id=?", (run_id, node_id))[0]
    inputs: dict[str, list[LineageNode]] = {}
    if depth > 0:
        for e in store.db.query("SELECT port, asset_id FROM edges WHERE run_id=? AND node_id=? AND role='input' "
                                "ORDER BY idx", (run_id, node_id)):
            sub = lineage(store, e["asset_id"], run_hint=run_id, depth=depth - 1)
            if sub is not None:
                inputs.setdefault(e["port"], []).append(sub)
    return LineageNode(run_id, node_id, nrow["op"], json.loads(nrow["params"]), asset_id, inputs)


@dataclass
class RunDiff:
    run_a: str
    run_b: str
    changed_params: dict[str, dict[str, tuple[Any, Any]]]  # node → param → (a, b)
    added_nodes: list[str]
    removed_nodes: list[str]
    reran: list[str]  # nodes executed in run b
    reused: list[str]  # nodes taken from the cache in run b


def diff_runs(store: Store, run_a: str, run_b: str) -> RunDiff:
    wa, wb = run_workflow_dict(store, run_a), run_workflow_dict(store, run_b)
    na = {n["id"]: n for n in wa["nodes"]}
    nb = {n["id"]: n for n in wb["nodes"]}
    changed: dict[str, dict[str, tuple[Any, Any]]] = {}
    for nid in na.keys() & nb.keys():
        pa, pb = na[nid].get("params", {}), nb[nid].get("params", {})
        delta = {k: (pa.get(k), pb.get(k)) for k in pa.keys() | pb.keys() if pa.get(k) != pb.get(k)}
        if na[nid]["op"] != nb[nid]["op"]:
            delta["op"] = (na[nid]["op"], nb[nid]["op"])
        if na[nid].get("inputs") != nb[nid].get("inputs"):
            delta["inputs"] = (na[nid].get("inputs"), nb[nid].get("inputs"))
        if delta:
            changed[nid] = delta
    if wa.get("seed") != wb.get("seed"):
        changed["(workflow)"] = {"seed": (wa.get("seed"), wb.get("seed"))}
    statuses = {r.node_id: r.status for r in run_nodes(store, run_b)}
    return RunDiff(run_a, run_b, changed, sorted(nb.keys() - na.keys()), sorted(na.keys() - nb.keys()),
                   [n for n, s in statuses.items() if s == "executed"], [n for n, s in statuses.items() if s == "cached"])
