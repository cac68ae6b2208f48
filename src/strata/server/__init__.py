"""strata's HTTP server: a persistent job queue, live events, assets by hash, A1111 endpoints.

Public API::

    from strata.server import create_app, serve, ServerConfig

    app = create_app("strata-data", token=None)        # an ASGI app (FastAPI)
    serve("strata-data", host="127.0.0.1", port=8188)  # run it with uvicorn

Errors: :mod:`strata.server.errors`. Queue design: :mod:`strata.server.queue`. Security
decisions: :mod:`strata.server.security`.
"""

from strata.server.app import create_app
from strata.server.config import ServerConfig, check_bind, is_loopback
from strata.server.errors import ApiError, ServerConfigError
from strata.server.runner import serve

__all__ = ["ApiError", "ServerConfig", "ServerConfigError", "check_bind", "create_app", "is_loopback", "serve"]
