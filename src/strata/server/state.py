"""What every route reaches through ``request.app.state.strata``, and the request guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import HTTPConnection

from strata.server.config import ServerConfig
from strata.server.generation import Generative
from strata.server.hub import EventHub
from strata.server.queue import JobQueue
from strata.server.security import Guard
from strata.server.worker import WorkerPool
from strata.store import Store


@dataclass
class ServerState:
    """The server's parts, built once by :func:`strata.server.create_app`."""

    store: Store
    config: ServerConfig
    queue: JobQueue
    hub: EventHub
    pool: WorkerPool
    guard: Guard
    models: Any
    generators: dict[str, Generative]


def get_state(conn: HTTPConnection) -> ServerState:
    """FastAPI dependency: the server state."""
    return conn.app.state.strata


def authorized_client(conn: HTTPConnection) -> str:
    """FastAPI dependency on every API router: host/origin/token/rate checks; the client id."""
    return get_state(conn).guard.check(conn)
