"""The studio: a single page (``/``) over this API, its files served from the package.

The page holds no secrets and works offline; with a token configured it asks for it and sends it
with every call. A strict Content-Security-Policy keeps it to this server's own scripts.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STUDIO_DIR = Path(__file__).resolve().parents[1] / "studio"


def mount_static(app: FastAPI) -> None:
    """Serve studio.js / studio.css under ``/studio``."""
    app.mount("/studio", StaticFiles(directory=STUDIO_DIR), name="studio")


@router.get("/")
def studio(request: Request) -> HTMLResponse:
    host = request.headers.get("host", "")
    # blob: media = outputs fetched with the token, which <video src> cannot send
    csp = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
           f"connect-src 'self' ws://{host} wss://{host}; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
    return HTMLResponse((STUDIO_DIR / "index.html").read_text(encoding="utf-8"),
                        headers={"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff",
                                 "Referrer-Policy": "no-referrer"})
