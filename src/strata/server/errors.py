"""Errors of the HTTP server, drawn once here.

    StrataError (strata.errors)
    ├── ServerConfigError     the server refuses to start (e.g. non-loopback bind without a token)
    └── ApiError              a request is refused; becomes an HTTP response
          .status   HTTP status code (400 bad input, 401 token, 403 forbidden, 404 unknown,
                    409 conflict, 413 too large, 415 wrong media type, 429 rate limit,
                    503 capability missing)
          .code     a stable machine-readable name ("path_not_allowed", "upload_too_large", ...)
          .message  what is wrong and how to fix it

Every refusal reaches the client as ``{"error": code, "detail": message}`` (plus ``issues`` for
invalid workflows: each with node, param and message).
"""

from __future__ import annotations

from typing import Any

from strata.errors import StrataError


class ServerConfigError(StrataError):
    """The server cannot start with these settings (the message says which to change)."""


class ApiError(StrataError):
    """A refused request.

    Args:
        status: HTTP status code.
        code: stable error name for programs.
        message: what is wrong and how to fix it, for people.
        headers: extra response headers (e.g. ``Retry-After``).
        extra: more JSON fields for the body (e.g. ``issues``).
    """

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra or {}

    def body(self) -> dict[str, Any]:
        """The JSON body sent to the client."""
        return {"error": self.code, "detail": self.message, **self.extra}
