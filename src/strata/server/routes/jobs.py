"""Jobs: submit a workflow or a generate request, list, read, cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from strata.errors import StoreError
from strata.server.errors import ApiError
from strata.server.generation import GenerateRequest, generate_workflow, require
from strata.server.queue import Job
from strata.server.security import read_body_limited
from strata.server.state import ServerState, authorized_client, get_state
from strata.server.submission import job_options, parse_body, prepare_plan
from strata.server.uploads import upload_path
from strata.store.history import resolve_run

router = APIRouter(prefix="/api", tags=["jobs"], dependencies=[Depends(authorized_client)])

PRIORITY = Query(None, ge=-100, le=100, description="for a bare workflow body: higher runs first")
NO_CACHE = Query(None, description="for a bare workflow body: execute every node even if stored")
IDEMPOTENCY = Header(None, max_length=200, description="a repeat with the same key returns the first job")


def submit_job(st: ServerState, workflow: dict[str, Any], *, kind: str, client: str, priority: int = 0,
               no_cache: bool = False, parent_run: str | None = None, idem_key: str | None = None,
               extra: dict[str, Any] | None = None) -> Job:
    """Check ``workflow`` whole (nothing is queued if it is invalid), queue it, wake a worker."""
    if parent_run is not None:
        try:
            parent_run = resolve_run(st.store, parent_run)
        except StoreError as exc:
            raise ApiError(400, "unknown_run", f"parent_run: {exc}") from None
        extra = {**(extra or {}), "parent_run": parent_run}
    prepare_plan(workflow, upload_path=lambda sha: upload_path(st.queue, sha),
                 allowed_dirs=st.config.allowed_file_dirs, max_nodes=st.config.max_workflow_nodes)
    def announce(job_id: str, created: float) -> None:
        st.hub.publish(job_id, {"event": "job_queued", "job": job_id, "priority": priority, "time": created})

    job, created = st.queue.submit(kind, {"workflow": workflow, "no_cache": no_cache, **(extra or {})},
                                   client=client, priority=priority, idem_key=idem_key, on_queued=announce)
    if created:
        st.pool.notify()
    return job


def job_json(st: ServerState, job: Job) -> dict[str, Any]:
    return {**job.public(), "position": st.queue.position(job), "events": f"/api/jobs/{job.id}/events"}


def _get_job(st: ServerState, job_id: str) -> Job:
    job = st.queue.get(job_id)
    if job is None:
        raise ApiError(404, "unknown_job", f"no job '{job_id}' on this server; GET /api/jobs lists them")
    return job


@router.post("/jobs", status_code=202, summary="Queue a workflow (JSON or YAML body)")
async def submit(request: Request, client: str = Depends(authorized_client), priority: int | None = PRIORITY,
                 no_cache: bool | None = NO_CACHE, idempotency_key: str | None = IDEMPOTENCY) -> JSONResponse:
    """Body: a workflow, or ``{"workflow": ..., "priority": 0, "no_cache": false}``, as
    ``application/json`` or ``application/yaml``. The workflow is validated whole first; file
    params take ``asset:<sha256>`` of an upload. Answers 202 with the job."""
    st = get_state(request)
    body = await read_body_limited(request, st.config.max_workflow_bytes, "the workflow")
    opts = job_options(parse_body(body, request.headers.get("content-type", "")), priority=priority, no_cache=no_cache)
    job = await run_in_threadpool(submit_job, st, opts.workflow, kind="workflow", client=client,
                                  priority=opts.priority, no_cache=opts.no_cache, parent_run=opts.parent_run,
                                  idem_key=idempotency_key)
    return JSONResponse(await run_in_threadpool(job_json, st, job), status_code=202)


@router.post("/generate", status_code=202, summary="Queue a text-to-image request")
def generate(req: GenerateRequest, request: Request, client: str = Depends(authorized_client)) -> JSONResponse:
    """Answers 503 ``no_text_to_image_model`` until a text-to-image model is installed."""
    st = get_state(request)
    spec = require(st.generators["text-to-image"], st.models)
    workflow, ignored = generate_workflow(req, spec)
    job = submit_job(st, workflow, kind="generate", client=client, priority=req.priority, extra={"ignored": ignored})
    return JSONResponse({**job_json(st, job), "ignored": ignored}, status_code=202)


@router.get("/jobs", summary="List jobs, newest first")
def list_jobs(request: Request, status: str | None = Query(None, pattern="^(queued|running|succeeded|failed|cancelled)$"),
              limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    st = get_state(request)
    return {"jobs": [j.public() for j in st.queue.list(status=status, limit=limit)], "counts": st.queue.counts()}


@router.get("/jobs/{job_id}", summary="One job: status, position in the queue, result")
def get_job(job_id: str, request: Request) -> dict[str, Any]:
    st = get_state(request)
    job = _get_job(st, job_id)
    return {**job_json(st, job), "request": job.request}


@router.post("/jobs/{job_id}/cancel", summary="Cancel a queued job, or interrupt a running one")
def cancel_job(job_id: str, request: Request, client: str = Depends(authorized_client)) -> dict[str, Any]:
    """A queued job is cancelled at once and never runs. A running job stops at its next node or
    progress step (finished nodes stay stored); its status turns ``cancelled`` shortly after."""
    st = get_state(request)
    job = _get_job(st, job_id)
    if job.client != client:
        raise ApiError(403, "not_your_job", f"job '{job_id}' was submitted with another token; only its owner "
                       "may cancel it")
    if job.done:
        raise ApiError(409, "job_finished", f"job '{job_id}' already ended ({job.status}); nothing to cancel")
    job = st.queue.cancel(job_id) or job
    if job.status == "running":
        st.pool.cancel_running(job_id)
    elif job.status == "cancelled":
        st.hub.publish(job_id, {"event": "job_finished", "job": job_id, "status": "cancelled", "result": None,
                                "error": job.error, "time": job.finished})
    return job_json(st, job)


@router.get("/health", summary="Liveness, version, queue counts")
def health(request: Request) -> dict[str, Any]:
    from strata import __version__

    st = get_state(request)
    return {"status": "ok", "version": __version__, "workers": st.config.workers, "queue": st.queue.counts(),
            "auth": "token" if st.config.tokens else "loopback"}
