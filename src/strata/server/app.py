"""The app factory: ``create_app(store, token=...)`` → a FastAPI app with the queue running.

Routers by concern live in :mod:`strata.server.routes`; this module only wires them with the
shared state, error handlers, the body-size guard, optional CORS and offline API docs.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from strata.errors import StoreError, StrataError, WorkflowError
from strata.server.config import ServerConfig
from strata.server.errors import ApiError
from strata.server.generation import DEFAULT_GENERATORS, Generative
from strata.server.hub import EventHub
from strata.server.queue import JobQueue
from strata.server.security import Guard
from strata.server.state import ServerState
from strata.server.submission import issues_json
from strata.server.worker import WorkerPool
from strata.store import Store
from strata.workflow.node import load_builtin_ops

log = logging.getLogger("strata.server")

API_DESCRIPTION = """\
strata's HTTP API: queue workflows, follow their events over a websocket, fetch assets by hash,
browse run history and lineage, read op schemas. Errors are `{"error": code, "detail": message}`.
With an API token configured, send `Authorization: Bearer <token>`.
"""


class BodyLimit:
    """Refuse any request body over ``limit`` bytes (413) before a route reads it whole."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise ApiError(413, "body_too_large", self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the request body is over the server's limit of {self.limit} bytes — send a smaller one"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        await JSONResponse({"error": "body_too_large", "detail": self._message()}, status_code=413)(scope, receive, send)


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(WorkflowError)
    async def workflow_error(request: Request, exc: WorkflowError) -> JSONResponse:
        return JSONResponse({"error": "invalid_workflow", "detail": str(exc), "issues": issues_json(exc)},
                            status_code=400)

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse({"error": "not_found", "detail": str(exc)}, status_code=404)

    @app.exception_handler(StrataError)
    async def strata_error(request: Request, exc: StrataError) -> JSONResponse:
        return JSONResponse({"error": "bad_request", "detail": str(exc)}, status_code=400)


def create_app(store: Store | str | Path, *, token: str | Sequence[str] | None = None,
               config: ServerConfig | None = None, models: Any = None,
               generators: Mapping[str, Generative] | None = None, start_workers: bool = True) -> FastAPI:
    """Build the server for ``store``.

    Args:
        store: the store (or its folder) whose history and queue the server uses.
        token: API token(s); overrides ``config.tokens``. With none, only loopback callers are
            served (and ``strata serve`` only binds to loopback).
        config: everything else (defaults: :class:`ServerConfig`).
        models: the model registry (default: :func:`strata.models.registry.default_registry`).
        generators: capability → generative op the generation endpoints run ("text-to-image",
            "img2img", "inpaint"); default :data:`strata.server.generation.DEFAULT_GENERATORS`.
        start_workers: run queued jobs (default True); False makes an API-only server that
            still queues jobs (tests, or a front end beside worker processes).

    The queue starts with the app (its lifespan): orphaned jobs are recovered, workers start;
    on shutdown running jobs are interrupted and go back to the queue.
    """
    from strata.server.routes import a1111, assets, docs, events, jobs, ops, runs, studio

    store = store if isinstance(store, Store) else Store(store)
    config = config or ServerConfig()
    if token is not None:
        tokens = (token,) if isinstance(token, str) else tuple(token)
        config = dataclasses.replace(config, tokens=tokens)
    if models is None:
        from strata.models.registry import default_registry

        models = default_registry()
    queue = JobQueue(store)
    hub = EventHub()
    pool = WorkerPool(queue, hub, config, models)
    state = ServerState(store, config, queue, hub, pool, Guard(config), models,
                        {**DEFAULT_GENERATORS, **(generators or {})})

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # import every op module now (seconds, once per process), not during the first request
        await run_in_threadpool(load_builtin_ops)
        if start_workers:
            pool.start()
        try:
            yield
        finally:
            pool.stop()

    app = FastAPI(title="strata", description=API_DESCRIPTION, version=_version(), lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    app.state.strata = state
    _error_handlers(app)
    for module in (jobs, events, assets, runs, ops, a1111, docs, studio):
        app.include_router(module.router)
    docs.mount_static(app)
    studio.mount_static(app)
    # base64 images in A1111 bodies are 4/3 of the file; leave room for the JSON around them
    app.add_middleware(BodyLimit, limit=max(config.max_workflow_bytes, config.max_upload_bytes * 4 // 3 + 2**16))
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Strata-Token", "Idempotency-Key"])
    return app


def _version() -> str:
    from strata import __version__

    return __version__
