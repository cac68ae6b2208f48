"""Assets by content hash (immutable, so cached forever) and uploads.

Clients never give paths: an asset is named only by its sha256. Image and mask values are sent
as PNG (``?format=raw`` gives the stored bytes); uploaded and output files as they are.
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from pathlib import Path
from dataclasses import asdict
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, JSONResponse, Response

from strata.server.errors import ApiError
from strata.server.security import read_body_limited
from strata.server.state import ServerState, authorized_client, get_state
from strata.server.submission import present_params
from strata.server.uploads import MEDIA_TYPES, check_image_bytes, store_upload

router = APIRouter(prefix="/api", tags=["assets"], dependencies=[Depends(authorized_client)])

_SHA = re.compile(r"^[0-9a-f]{64}$")
IMMUTABLE = "max-age=31536000, immutable"


def _check_id(asset_id: str) -> str:
    if not _SHA.match(asset_id):
        raise ApiError(400, "bad_asset_id", "assets are named only by their sha256 (64 lowercase hex digits), "
                       "never by a path; take ids from job results, run nodes or uploads")
    return asset_id


def _kind(st: ServerState, asset_id: str) -> str:
    kind = st.store.db.asset_kind(asset_id)
    if kind is None or not st.store.blobs.has(asset_id):
        raise ApiError(404, "unknown_asset", f"no asset {asset_id[:12]}… in this store")
    return kind


def _png_of(value: Any) -> bytes:
    from strata.media.image import Image, Mask
    from strata.media.image_io import encode_image

    if isinstance(value, Mask):
        import numpy as np
        import PIL.Image

        buf = io.BytesIO()
        PIL.Image.fromarray(np.round(np.clip(value.values, 0, 1) * 255).astype(np.uint8)).save(buf, "PNG",
                                                                                                 compress_level=3)
        return buf.getvalue()
    if isinstance(value, Image):
        return encode_image(value, "PNG")
    raise ApiError(415, "not_an_image", f"this asset is a {type(value).__name__}, which has no PNG form; "
                   "ask for ?format=raw")


def file_media_type(kind: str) -> str:
    """The media type of a stored file kind: ``file/png`` (images), ``file/mp4`` (other writers);
    a ``+c2pa`` suffix (signed with content credentials) does not change it."""
    fmt_name = kind[5:].split("+")[0]
    if fmt_name.upper() in MEDIA_TYPES:
        return MEDIA_TYPES[fmt_name.upper()]
    from strata.media.writers import WRITERS

    return next((w.mime for w in WRITERS.values() if w.format == fmt_name), "application/octet-stream")


def _asset_body(st: ServerState, asset_id: str, kind: str, fmt: str) -> tuple[bytes, str]:
    """(bytes, media type) of an asset in the requested form."""
    if kind.startswith("file/"):
        return st.store.blobs.get(asset_id), file_media_type(kind)
    if kind == "json":
        return st.store.blobs.get(asset_id), "application/json"
    if fmt == "raw" or kind == "list":
        return st.store.blobs.get(asset_id), "application/octet-stream"
    return _png_of(st.store.get_value(asset_id)), "image/png"


@router.get("/assets/{asset_id}", summary="An asset's bytes by sha256 (ETag, immutable caching)",
            responses={200: {"content": {"image/png": {}, "application/octet-stream": {}}}, 304: {}})
def get_asset(asset_id: str, request: Request, format: Literal["png", "raw"] = Query(
        "png", description="png: images and masks as PNG; raw: the stored bytes")) -> Response:
    st = get_state(request)
    _check_id(asset_id)
    kind = _kind(st, asset_id)
    variant = "file" if kind.startswith("file/") or kind in ("json", "list") else format
    etag = f'"{asset_id}.{variant}"'
    cache = ("private, " if st.config.tokens else "public, ") + IMMUTABLE
    headers = {"ETag": etag, "Cache-Control": cache, "X-Content-Type-Options": "nosniff"}
    if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    if kind.startswith("file/"):  # served from the blob file: range requests work (video seeking)
        return FileResponse(st.store.blobs.path(asset_id), media_type=file_media_type(kind), headers=headers)
    data, media = _asset_body(st, asset_id, kind, format)
    return Response(data, media_type=media, headers=headers)


@router.get("/assets/{asset_id}/info", summary="An asset's kind, size and upload details")
def asset_info(asset_id: str, request: Request) -> dict[str, Any]:
    st = get_state(request)
    _check_id(asset_id)
    row = st.store.db.query("SELECT kind, size, created FROM assets WHERE id=?", (asset_id,))
    if not row:
        raise ApiError(404, "unknown_asset", f"no asset {asset_id[:12]}… in this store")
    return {"id": asset_id, "kind": row[0]["kind"], "size": row[0]["size"], "created": row[0]["created"],
            "upload": st.queue.upload(asset_id), "url": f"/api/assets/{asset_id}",
            "lineage": f"/api/assets/{asset_id}/lineage"}


@router.get("/assets/{asset_id}/lineage", summary="The nodes (and params) that produced an asset, recursively")
def asset_lineage(asset_id: str, request: Request, run: str | None = Query(None, description="prefer this run")) -> Any:
    from strata.store.history import lineage

    st = get_state(request)
    _check_id(asset_id)
    tree = lineage(st.store, asset_id, run_hint=run)
    if tree is None:
        row = st.store.db.query("SELECT asset_id, run_id FROM exports WHERE file_sha256=? ORDER BY created DESC LIMIT 1",
                                (asset_id,))
        if row:  # an output file: its lineage is that of the value it encodes
            tree = lineage(st.store, row[0]["asset_id"], run_hint=row[0]["run_id"])
    if tree is None:
        raise ApiError(404, "no_lineage", f"asset {asset_id[:12]}… was not produced by a recorded node "
                       "(it may be an upload)")
    return _present(asdict(tree), st.store.blobs.blob_dir)


def _present(node: dict[str, Any], blob_dir: Any) -> dict[str, Any]:
    """A lineage tree with upload paths shown as asset refs (see present_params)."""
    return {**node, "params": present_params(node["params"], blob_dir),
            "inputs": {port: [_present(n, blob_dir) for n in subs] for port, subs in node["inputs"].items()}}


@router.post("/verify", summary="Check a file's content credentials, provenance and watermark (raw body)",
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}})
async def verify(request: Request) -> dict[str, Any]:
    """The body is the file (PNG, JPEG, WebP, TIFF, WAV or MP4); nothing is stored. Answers what
    ``strata verify FILE`` prints: the verdict, credentials, signer, label, history, problems."""
    st = get_state(request)
    data = await read_body_limited(request, st.config.max_upload_bytes, "the file")
    return await run_in_threadpool(_verify_bytes, data)


def _verify_bytes(data: bytes) -> dict[str, Any]:
    from strata.provenance.verify import verify_file

    fd, name = tempfile.mkstemp(prefix="strata-verify-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        report = verify_file(name).to_dict()
    finally:
        Path(name).unlink(missing_ok=True)
    report.pop("path", None)
    return report


@router.post("/uploads", status_code=201, summary="Upload an image (raw body); returns its asset:<sha256> ref",
             openapi_extra={"requestBody": {"required": True, "content": {
                 t: {"schema": {"type": "string", "format": "binary"}} for t in MEDIA_TYPES.values()}}})
async def upload(request: Request, client: str = Depends(authorized_client)) -> JSONResponse:
    """The body is the image file itself (PNG, JPEG, WebP or TIFF) with its Content-Type. The
    bytes must really be that format, within the size and pixel limits, and decode whole;
    otherwise nothing is stored. Use the returned ``ref`` in file params of workflows."""
    st = get_state(request)
    data = await read_body_limited(request, st.config.max_upload_bytes, "the upload")
    info = await run_in_threadpool(check_image_bytes, data, request.headers.get("content-type", ""), st.config)
    await run_in_threadpool(store_upload, st.queue, data, info, client)
    return JSONResponse(info.public(), status_code=201)
