"""``/docs``: Swagger UI served from the ``swagger-ui-py`` package, so it works offline.

FastAPI's default page loads Swagger UI from a CDN; here its files come from this server. If
``swagger-ui-py`` is not installed, ``/docs`` says so and ``/openapi.json`` (always served,
offline) remains the API's contract.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

router = APIRouter(include_in_schema=False)
STATIC_URL = "/docs/static"


def swagger_static_dir() -> Path | None:
    """The folder with swagger-ui-bundle.js and swagger-ui.css, or None if not installed."""
    try:
        import swagger_ui
    except ImportError:
        return None
    folder = Path(swagger_ui.__file__).resolve().parent / "static"
    return folder if (folder / "swagger-ui-bundle.js").is_file() else None


def mount_static(app: FastAPI) -> None:
    """Serve the Swagger UI files under :data:`STATIC_URL` (if the package is installed)."""
    folder = swagger_static_dir()
    if folder is not None:
        app.mount(STATIC_URL, StaticFiles(directory=folder), name="swagger-static")


@router.get("/docs")
def docs(request: Request) -> HTMLResponse:
    if swagger_static_dir() is None:
        return HTMLResponse("<h1>strata API</h1><p>Interactive docs need the <code>swagger-ui-py</code> package "
                            "(<code>pip install swagger-ui-py</code>). The API's contract is "
                            "<a href='/openapi.json'>/openapi.json</a>.</p>")
    return get_swagger_ui_html(openapi_url=str(request.app.openapi_url), title="strata API",
                               swagger_js_url=f"{STATIC_URL}/swagger-ui-bundle.js",
                               swagger_css_url=f"{STATIC_URL}/swagger-ui.css",
                               swagger_favicon_url=f"{STATIC_URL}/favicon-32x32.png")
