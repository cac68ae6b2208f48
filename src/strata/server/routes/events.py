"""Websockets streaming job events: one job (``/api/jobs/{id}/events``) or all (``/api/events``).

Browsers cannot set headers on websockets, so the token may also be given as ``?token=``.
A refused connection is accepted just long enough to send ``{"error", "detail"}`` and close
with code 1008, so clients see why.
"""

from __future__ import annotations

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from strata.server.errors import ApiError
from strata.server.hub import ALL
from strata.server.state import get_state

router = APIRouter(tags=["events"])
FINAL = ("job_finished",)


async def _refuse(ws: WebSocket, exc: ApiError) -> None:
    await ws.accept()
    await ws.send_json(exc.body())
    await ws.close(code=1008, reason=exc.code)


@router.websocket("/api/jobs/{job_id}/events")
async def job_events(ws: WebSocket, job_id: str) -> None:
    """Replays the job's events so far, streams the rest, and closes after ``job_finished``."""
    st = get_state(ws)
    try:
        st.guard.check(ws)
        if await run_in_threadpool(st.queue.get, job_id) is None:
            raise ApiError(404, "unknown_job", f"no job '{job_id}' on this server")
    except ApiError as exc:
        await _refuse(ws, exc)
        return
    sub = st.hub.subscribe(job_id)
    await ws.accept()
    try:
        for msg in sub.replayed:
            await ws.send_json(msg)
            if msg.get("event") in FINAL:
                return
        wait = 0.2
        while True:
            msg = await sub.next(wait)
            if msg is None:  # quiet: the job may have ended elsewhere (another process) or long ago
                wait = 1.0
                job = await run_in_threadpool(st.queue.get, job_id)
                if job is not None and job.done:
                    await ws.send_json({"event": "job_finished", "job": job_id, "status": job.status,
                                        "result": job.result, "error": job.error, "time": job.finished})
                    return
                continue
            await ws.send_json(msg)
            if msg.get("event") in FINAL:
                return
    except WebSocketDisconnect:
        return
    finally:
        sub.close()
        try:
            await ws.close()
        except RuntimeError:  # already closed by the client
            pass


@router.websocket("/api/events")
async def all_events(ws: WebSocket) -> None:
    """Every job's events as they happen (no replay); runs until the client disconnects."""
    st = get_state(ws)
    try:
        st.guard.check(ws)
    except ApiError as exc:
        await _refuse(ws, exc)
        return
    sub = st.hub.subscribe(ALL, replay=False)
    await ws.accept()
    try:
        while True:
            msg = await sub.next(30.0)
            await ws.send_json(msg if msg is not None else {"event": "keepalive"})
    except WebSocketDisconnect:
        return
    finally:
        sub.close()
