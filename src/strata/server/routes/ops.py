"""Op schemas (JSON Schema of params, typed inputs/outputs) straight from the node registry, and
the installed models an op can use (e.g. the voices for ``sound.speech``)."""

from __future__ import annotations

import difflib
from typing import Any

from fastapi import APIRouter, Depends, Request

from strata.server.errors import ApiError
from strata.server.state import authorized_client, get_state
from strata.workflow.node import NodeSpec, load_builtin_ops

router = APIRouter(prefix="/api/ops", tags=["ops"], dependencies=[Depends(authorized_client)])


@router.get("", summary="Every op's schema, by layer")
def list_ops() -> dict[str, Any]:
    registry = load_builtin_ops()
    return {"ops": [registry[k].json_schema() for k in sorted(registry)]}


@router.get("/{op}", summary="One op's schema")
def get_op(op: str) -> dict[str, Any]:
    return _spec(op).json_schema()


@router.get("/{op}/models", summary="The installed models an op can use (its `model` param), default first")
def op_models(op: str, request: Request) -> dict[str, Any]:
    """``{"capability", "models": [{"id", "default"}]}``; an empty list when none is installed (running
    the op then fails with the registry's message) or when the op uses no model (capability null)."""
    capability = _spec(op).model_capability
    entries = getattr(get_state(request).models, "entries", {}) if capability else {}
    ids = [e.id for e in entries.values() if capability in e.capabilities]
    # the registry's default for a capability is its first entry offering it (ModelRegistry.find)
    return {"capability": capability, "models": [{"id": i, "default": n == 0} for n, i in enumerate(ids)]}


def _spec(op: str) -> NodeSpec:
    registry = load_builtin_ops()
    spec = registry.get(op)
    if spec is None:
        close = difflib.get_close_matches(op, list(registry), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(close)}?" if close else "; GET /api/ops lists them"
        raise ApiError(404, "unknown_op", f"no op '{op}'{hint}")
    return spec
