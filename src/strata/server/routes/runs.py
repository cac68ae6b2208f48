"""Runs recorded in the history: list, one run with its nodes, diff of two runs."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query, Request

from strata.errors import StoreError
from strata.server.errors import ApiError
from strata.server.state import authorized_client, get_state
from strata.server.submission import present_params
from strata.store import history

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(authorized_client)])


def _nodes(request: Request, run_id: str) -> list[dict[str, Any]]:
    store = get_state(request).store
    return [{**n.to_dict(), "params": present_params(n.params, store.blobs.blob_dir)}
            for n in history.run_nodes(store, run_id)]


def _resolve(request: Request, run: str) -> str:
    try:
        return history.resolve_run(get_state(request).store, run)
    except StoreError as exc:
        raise ApiError(404, "unknown_run", str(exc)) from None


@router.get("", summary="Recent runs, newest first")
def list_runs(request: Request, limit: int = Query(20, ge=1, le=500)) -> dict[str, Any]:
    return {"runs": [asdict(r) for r in history.list_runs(get_state(request).store, limit=limit)]}


@router.get("/diff", summary="What changed between two runs (params, nodes, reruns)")
def diff(request: Request, a: str = Query(..., description="run id (or unique prefix)"),
         b: str = Query(..., description="run id (or unique prefix)")) -> dict[str, Any]:
    return asdict(history.diff_runs(get_state(request).store, _resolve(request, a), _resolve(request, b)))


@router.get("/{run}", summary="One run: summary, workflow and nodes (run id, unique prefix or 'last')")
def get_run(run: str, request: Request) -> dict[str, Any]:
    st = get_state(request)
    run_id = _resolve(request, run)
    row = st.store.db.query("SELECT id, name, created, finished, status, parent, seed FROM runs WHERE id=?", (run_id,))[0]
    return {**dict(row), "workflow": history.run_workflow_dict(st.store, run_id),
            "nodes": _nodes(request, run_id)}


@router.get("/{run}/nodes", summary="A run's nodes with their input and output asset ids")
def run_nodes(run: str, request: Request) -> dict[str, Any]:
    return {"nodes": _nodes(request, _resolve(request, run))}
