"""Who may call the API, how often, and which server files a remote workflow may read.

Decisions (see also the README of ``strata serve``):
    - **Tokens**: with tokens configured, every API request needs one (``Authorization: Bearer``
      or ``X-Strata-Token``; HTTP Basic with the token as password, which is how A1111 clients
      such as ``webuiapi`` send credentials; websockets may also use ``?token=``, as browsers
      cannot set headers there). Without tokens the server only binds to loopback (:func:`config.check_bind`).
    - **DNS rebinding / CSRF on loopback**: without tokens, the ``Host`` header must be a
      loopback name, and a request carrying an ``Origin`` must come from the server's own origin
      or an allowed CORS origin (CORS is off by default) — a web page elsewhere cannot drive it.
    - **Rate limit**: a token bucket per client (per token, or per address without tokens).
    - **Files**: a workflow submitted over HTTP never names server paths. File params
      (``InputFile``) accept ``asset:<sha256>`` (an uploaded file, by hash), shipped ``strata:``
      files (checked to stay inside the package's assets), or — only if the operator listed
      folders with ``--allow-dir`` — absolute paths that resolve (symlinks followed) inside one.
      Anything else, including ``..`` tricks and relative paths, is refused before anything runs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request
from starlette.requests import HTTPConnection

from strata.server.config import ServerConfig, is_loopback
from strata.server.errors import ApiError
from strata.workflow.validate import PACKAGE_SCHEME

ASSET_SCHEME = "asset:"
_ASSET_RE = re.compile(r"^asset:([0-9a-f]{64})$")
PACKAGE_ASSETS = Path(__file__).resolve().parents[1] / "assets"


class RateLimiter:
    """Token buckets: ``burst`` requests at once, refilled at ``rate_per_s``."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate = rate_per_s
        self.burst = float(burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """Spend one request for ``key``; returns 0 if allowed, else seconds until one is."""
        now = time.monotonic()
        with self._lock:
            level, last = self._buckets.get(key, (self.burst, now))
            level = min(self.burst, level + (now - last) * self.rate)
            if level >= 1.0:
                self._buckets[key] = (level - 1.0, now)
                return 0.0
            self._buckets[key] = (level, now)
            return (1.0 - level) / self.rate


def _presented_token(conn: HTTPConnection) -> str | None:
    auth = conn.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    if auth.lower().startswith("basic "):  # A1111 clients send --api-auth as HTTP Basic: the password is the token
        try:
            return base64.b64decode(auth[6:].strip(), validate=True).decode().partition(":")[2] or None
        except (binascii.Error, UnicodeDecodeError):
            return None
    if "x-strata-token" in conn.headers:
        return conn.headers["x-strata-token"].strip()
    if conn.scope["type"] == "websocket":
        return conn.query_params.get("token")
    return None


class Guard:
    """Runs the checks of the module docstring for every API request; returns the client id."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.limiter = RateLimiter(config.rate_per_s, config.rate_burst)
        self._digests = [hashlib.sha256(t.encode()).digest() for t in config.tokens]

    def check(self, conn: HTTPConnection) -> str:
        """Host, origin, token and rate checks.

        Raises:
            ApiError: 401 (token missing/wrong), 403 (host or origin refused), 429 (rate).
        """
        host = conn.headers.get("host", "")
        if not self._digests:
            name = urlsplit("//" + host).hostname or ""
            if not (is_loopback(name) or name in self.config.allowed_hosts):
                raise ApiError(403, "host_not_allowed",
                               f"Host '{host}' is not a loopback name; this server has no API token, so it only "
                               "answers requests addressed to localhost/127.0.0.1 (start it with a token to serve "
                               "other names)")
        origin = conn.headers.get("origin")
        if origin and origin not in self.config.cors_origins and urlsplit(origin).netloc != host:
            raise ApiError(403, "origin_not_allowed",
                           f"cross-origin request from {origin} refused: CORS is off; start the server with "
                           f"--cors-origin {origin} to allow that site")
        client = self._client(conn)
        wait = self.limiter.take(client)
        if wait > 0:
            raise ApiError(429, "rate_limited",
                           f"too many requests: the limit is {self.config.rate_per_s:g}/s (burst "
                           f"{self.config.rate_burst}) per token; retry after {wait:.2f} s",
                           headers={"Retry-After": str(max(1, int(wait + 0.999)))})
        return client

    def _client(self, conn: HTTPConnection) -> str:
        if not self._digests:
            return "local:" + (conn.client.host if conn.client else "?")
        token = _presented_token(conn)
        if not token:
            raise ApiError(401, "token_required",
                           "this server requires an API token: send the header 'Authorization: Bearer <token>' "
                           "(websockets may add ?token=<token>)", headers={"WWW-Authenticate": "Bearer"})
        digest = hashlib.sha256(token.encode()).digest()
        # compare against every token so the time taken does not reveal which one nearly matched
        ok = [hmac.compare_digest(digest, d) for d in self._digests]
        if not any(ok):
            raise ApiError(401, "token_invalid", "the API token is not valid for this server; check the token you "
                           "were given", headers={"WWW-Authenticate": "Bearer"})
        return "token:" + digest.hex()[:16]


async def read_body_limited(request: Request, limit: int, what: str) -> bytes:
    """The request body, refusing (413) more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "body_too_large", f"{what} is {int(declared)} bytes; the limit is {limit} bytes "
                       f"({limit / 2**20:.1f} MB) — send a smaller one")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "body_too_large", f"{what} exceeds the limit of {limit} bytes "
                           f"({limit / 2**20:.1f} MB) — send a smaller one")
        chunks.append(chunk)
    return b"".join(chunks)


def resolve_remote_file(value: str, *, upload_path: Any, allowed_dirs: tuple[Path, ...]) -> str:
    """The server-side value for a file param sent by a remote client (see the module docstring).

    Args:
        value: what the client sent.
        upload_path: ``sha256 -> Path | None``, the stored file of an uploaded asset.
        allowed_dirs: folders the operator allowed (resolved); empty = none.

    Raises:
        ApiError: 403 with the reason and the fix.
    """
    if value.startswith(ASSET_SCHEME):
        m = _ASSET_RE.match(value)
        if m is None:
            raise ApiError(403, "path_not_allowed", f"{value!r}: write asset:<sha256> with the 64 lowercase hex "
                           "digits that POST /api/uploads returned")
        path = upload_path(m.group(1))
        if path is None:
            raise ApiError(403, "path_not_allowed", f"{value!r} is not an uploaded file on this server; upload it "
                           "first (POST /api/uploads)")
        return str(path)
    if value.startswith(PACKAGE_SCHEME):
        target = _resolved(PACKAGE_ASSETS / value[len(PACKAGE_SCHEME):])
        if target is None or not target.is_relative_to(PACKAGE_ASSETS) or not target.is_file():
            raise ApiError(403, "path_not_allowed", f"{value!r} is not a file shipped with strata (strata: names a file "
                           "under the package's assets folder, e.g. strata:luts/film_warm.cube)")
        return value
    if allowed_dirs:
        p = Path(value)
        target = _resolved(p) if p.is_absolute() else None
        if target is not None and target.is_file() and any(target.is_relative_to(d) for d in allowed_dirs):
            return str(target)
        raise ApiError(403, "path_not_allowed", f"{value!r} is not a file inside the folders this server allows "
                       f"({', '.join(map(str, allowed_dirs))}); give an absolute path inside one, or upload the file "
                       "(POST /api/uploads) and use asset:<sha256>")
    raise ApiError(403, "path_not_allowed", f"{value!r}: workflows sent over HTTP cannot name files on the server; "
                   "upload the file (POST /api/uploads) and use asset:<sha256> instead")


def _resolved(p: Path) -> Path | None:
    try:
        return p.resolve(strict=True)
    except (OSError, ValueError, RuntimeError):  # missing, NUL byte, symlink loop
        return None
