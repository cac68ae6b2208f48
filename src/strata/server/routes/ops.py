"""Op schemas (JSON Schema of params, typed inputs/outputs) straight from the node registry."""

from __future__ import annotations

import difflib
from typing import Any

from fastapi import APIRouter, Depends

from strata.server.errors import ApiError
from strata.server.state import authorized_client
from strata.workflow.node import load_builtin_ops

router = APIRouter(prefix="/api/ops", tags=["ops"], dependencies=[Depends(authorized_client)])


@router.get("", summary="Every op's schema, by layer")
def list_ops() -> dict[str, Any]:
    registry = load_builtin_ops()
    return {"ops": [registry[k].json_schema() for k in sorted(registry)]}


@router.get("/{op}", summary="One op's schema")
def get_op(op: str) -> dict[str, Any]:
    registry = load_builtin_ops()
    spec = registry.get(op)
    if spec is None:
        close = difflib.get_close_matches(op, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; GET /api/ops lists them"
        raise ApiError(404, "unknown_op", f"no op '{op}'{hint}")
    return spec.json_schema()
