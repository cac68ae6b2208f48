"""Websockets streaming job events: one job (``/api/jobs/{id}/events``) or all (``/api/events``).

Browsers cannot set headers on websockets, so the token may also be given as ``?token=``.
A refused connection is accepted just long enough to send ``{"error", "detail"}`` and close
with code 1008, so clients see why. Both streams watch the client side too, so a client that
leaves (or a server shutting down) ends the stream at once.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from fastapi.concurrency import run_in_threadpool

from strata.server.errors import ApiError
from strata.server.hub import ALL, Subscription
from strata.server.state import get_state

router = APIRouter(tags=["events"])
FINAL = "job_finished"
KEEPALIVE_S = 30.0


async def _refuse(ws: WebSocket, exc: ApiError) -> None:
    await ws.accept()
    await ws.send_json(exc.body())
    await ws.close(code=1008, reason=exc.code)


class _Stream:
    """Next hub message or None on a quiet ``timeout``; raises WebSocketDisconnect when the client leaves."""

    def __init__(self, ws: WebSocket, sub: Subscription):
        self.ws = ws
        self.sub = sub
        self._left = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while (await self.ws.receive())["type"] != "websocket.disconnect":
            pass  # clients have nothing to say; ignore anything they send

    async def next(self, timeout: float) -> dict[str, Any] | None:
        nxt = asyncio.ensure_future(self.sub.next(timeout))
        await asyncio.wait({nxt, self._left}, return_when=asyncio.FIRST_COMPLETED)
        if self._left.done():
            nxt.cancel()
            raise WebSocketDisconnect()
        return nxt.result()

    def close(self) -> None:
        self._left.cancel()
        self.sub.close()


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
    stream = _Stream(ws, sub)
    try:
        for msg in sub.replayed:
            await ws.send_json(msg)
            if msg.get("event") == FINAL:
                return
        wait = 0.2
        while True:
            msg = await stream.next(wait)
            if msg is None:  # quiet: the job may have ended elsewhere (another process) or long ago
                wait = 1.0
                job = await run_in_threadpool(st.queue.get, job_id)
                if job is not None and job.done:
                    await ws.send_json({"event": FINAL, "job": job_id, "status": job.status, "result": job.result,
                                        "error": job.error, "time": job.finished})
                    return
                continue
            await ws.send_json(msg)
            if msg.get("event") == FINAL:
                return
    except WebSocketDisconnect:
        return
    finally:
        stream.close()
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
    stream = _Stream(ws, sub)
    try:
        while True:
            msg = await stream.next(KEEPALIVE_S)
            await ws.send_json(msg if msg is not None else {"event": "keepalive"})
    except WebSocketDisconnect:
        return
    finally:
        stream.close()
