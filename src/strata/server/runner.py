"""Run the server with uvicorn, after the bind check."""

from __future__ import annotations

from pathlib import Path

from strata.server.config import ServerConfig, check_bind
from strata.store import Store

DEFAULT_PORT = 8188


def serve(store: Store | str | Path, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
          config: ServerConfig | None = None, log_level: str = "info") -> None:
    """Serve ``store`` on ``host:port`` until interrupted (SIGINT/SIGTERM stop it gracefully:
    running jobs go back to the queue).

    Raises:
        ServerConfigError: a non-loopback ``host`` without API tokens.
    """
    import uvicorn

    from strata.server.app import create_app

    config = config or ServerConfig()
    check_bind(host, config.tokens)
    app = create_app(store, config=config)
    uvicorn.run(app, host=host, port=port, log_level=log_level, ws_max_size=2**20, timeout_graceful_shutdown=30)
