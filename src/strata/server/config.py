"""Server settings, and the one rule checked before binding: no token → loopback only."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from strata.server.errors import ServerConfigError

TOKEN_ENV = "STRATA_API_TOKEN"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1", "[::1]")
MIN_TOKEN_CHARS = 16


@dataclass(frozen=True)
class ServerConfig:
    """Everything the server can be told; every field has a safe default.

    Args:
        tokens: accepted API tokens (default none: only allowed on a loopback bind). When set,
            every API request must carry one (``Authorization: Bearer <token>``).
        workers: jobs run at the same time (default 1; each job already uses every core).
        max_upload_bytes: largest accepted upload or request body with media (default 32 MB).
        max_upload_pixels: largest accepted uploaded image, width × height (default 4096²).
        max_workflow_bytes: largest workflow body (default 1 MB).
        max_workflow_nodes: most nodes in a submitted workflow (default 500).
        rate_per_s: sustained requests per second allowed per token (default 20).
        rate_burst: requests allowed at once before the rate applies (default 100).
        cors_origins: browser origins allowed to call the API cross-origin (default none: CORS off).
        allowed_file_dirs: folders whose files remote workflows may name in file params (default
            none: only uploaded assets, ``asset:<sha256>``, and shipped ``strata:`` files).
        allowed_hosts: extra Host header names accepted without a token (DNS-rebinding guard).
        poll_s: how often idle workers look for jobs submitted by other processes.
        heartbeat_s: how often a running job's heartbeat and cancel flag are refreshed.
        stale_after_s: a running job whose heartbeat is older than this is taken to be orphaned.
        max_attempts: a job re-queued after this many server deaths is marked failed instead.
    """

    tokens: tuple[str, ...] = ()
    workers: int = 1
    max_upload_bytes: int = 32 * 2**20
    max_upload_pixels: int = 4096 * 4096
    max_workflow_bytes: int = 2**20
    max_workflow_nodes: int = 500
    rate_per_s: float = 20.0
    rate_burst: int = 100
    cors_origins: tuple[str, ...] = ()
    allowed_file_dirs: tuple[Path, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    poll_s: float = 0.5
    heartbeat_s: float = 1.0
    stale_after_s: float = 30.0
    max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ServerConfigError(f"workers must be at least 1, got {self.workers}")
        for t in self.tokens:
            if len(t) < MIN_TOKEN_CHARS:
                raise ServerConfigError(f"API tokens must be at least {MIN_TOKEN_CHARS} characters; make one with "
                                        "`python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        if self.rate_per_s <= 0 or self.rate_burst < 1:
            raise ServerConfigError("rate_per_s must be > 0 and rate_burst ≥ 1")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (127.0.0.0/8, ::1)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # any other name may resolve to a public address


def check_bind(host: str, tokens: tuple[str, ...]) -> None:
    """Refuse to serve on a non-loopback address without an API token.

    Raises:
        ServerConfigError: naming the address and how to fix it.
    """
    if not is_loopback(host) and not tokens:
        raise ServerConfigError(
            f"refusing to listen on {host}: it is reachable from other machines and no API token is set. "
            f"Set one with --token-file FILE or the {TOKEN_ENV} environment variable, or bind to 127.0.0.1"
        )


def tokens_from_env() -> tuple[str, ...]:
    """Tokens from ``STRATA_API_TOKEN`` (comma-separated), or none."""
    raw = os.environ.get(TOKEN_ENV, "")
    return tuple(t.strip() for t in raw.split(",") if t.strip())
