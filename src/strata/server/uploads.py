"""Uploaded images: checked (size, pixels, real format) before a single byte reaches the store.

An upload is stored as-is (its bytes are the asset; its id is their sha256) and recorded in
``server_uploads``; workflows then name it ``asset:<sha256>`` in file params (e.g.
``io.load_image``'s ``path``). Refusals happen before anything is written.
"""

from __future__ import annotations

import base64
import binascii
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from strata.errors import MediaError
from strata.media import image_io
from strata.server.config import ServerConfig
from strata.server.errors import ApiError
from strata.server.queue import JobQueue
from strata.store import sha256_bytes

# Content types a client may declare, and the format the bytes must then be.
DECLARED_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/jpg": "JPEG", "image/webp": "WEBP",
                    "image/tiff": "TIFF"}
UNDECLARED = ("", "application/octet-stream")
MEDIA_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp", "TIFF": "image/tiff"}


@dataclass(frozen=True)
class UploadInfo:
    """A checked upload: its id, real format and size."""

    sha256: str
    format: str
    width: int
    height: int
    size: int

    def public(self) -> dict[str, object]:
        return {"sha256": self.sha256, "ref": f"asset:{self.sha256}", "url": f"/api/assets/{self.sha256}",
                "format": self.format, "media_type": MEDIA_TYPES[self.format], "width": self.width,
                "height": self.height, "size": self.size}


def check_image_bytes(data: bytes, declared: str, config: ServerConfig, *, what: str = "the upload") -> UploadInfo:
    """Check an uploaded image: not empty, within byte and pixel limits, decodable, and of the
    format its declared content type names (an undeclared type accepts any supported format).

    Raises:
        ApiError: 400 empty/corrupt, 413 too large, 415 not an image or mislabeled.
    """
    declared = declared.split(";")[0].strip().lower()
    if declared not in DECLARED_FORMATS and declared not in UNDECLARED:
        raise ApiError(415, "unsupported_media_type", f"{what} is declared as '{declared}'; send image/png, "
                       "image/jpeg, image/webp or image/tiff")
    if not data:
        raise ApiError(400, "empty_upload", f"{what} is empty (0 bytes); send the image file's bytes as the body")
    if len(data) > config.max_upload_bytes:
        raise ApiError(413, "upload_too_large", f"{what} is {len(data)} bytes; the limit is {config.max_upload_bytes} "
                       "bytes — send a smaller file")
    fd, name = tempfile.mkstemp(prefix="strata-upload-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            info = image_io.probe_image(name)
        except MediaError as exc:
            # a known signature with a broken header is corrupt (400); anything else is not an image (415)
            status, code = (400, "corrupt_image") if image_io._sniff(data) else (415, "not_an_image")
            raise ApiError(status, code, _scrub(str(exc), name, what)) from None
        want = DECLARED_FORMATS.get(declared)
        if want is not None and info.format != want:
            raise ApiError(415, "mislabeled_upload", f"{what} is declared as {declared} but its bytes are a "
                           f"{info.format} file; send the right Content-Type ({MEDIA_TYPES[info.format]})")
        if info.pixels > config.max_upload_pixels:
            raise ApiError(413, "too_many_pixels", f"{what} is {info.width}×{info.height} = {info.pixels} pixels; the "
                           f"limit is {config.max_upload_pixels} pixels — downscale it first")
        try:  # decode fully: a truncated or corrupt body must not become an asset
            image_io.load_image(name, max_pixels=config.max_upload_pixels)
        except MediaError as exc:
            raise ApiError(400, "corrupt_image", _scrub(str(exc), name, what)) from None
    finally:
        Path(name).unlink(missing_ok=True)
    return UploadInfo(sha256_bytes(data), info.format, info.width, info.height, len(data))


def _scrub(message: str, temp_path: str, what: str) -> str:
    """Error text without the server's temp path."""
    return message.replace(temp_path, what)


def store_upload(queue: JobQueue, data: bytes, info: UploadInfo, client: str) -> None:
    """Write checked bytes to the store (blob first, then the rows that point at it)."""
    queue.store.blobs.put(data)
    queue.record_upload(info.sha256, info.format, info.width, info.height, info.size, client)


def upload_path(queue: JobQueue, sha256: str) -> Path | None:
    """The stored file of an uploaded asset, or None if there is no such upload."""
    if queue.upload(sha256) is None or not queue.store.blobs.has(sha256):
        return None
    return queue.store.blobs.path(sha256)


def decode_base64_image(text: str, *, what: str) -> bytes:
    """Bytes of a base64 image as A1111 clients send it (optionally a ``data:`` URL).

    Raises:
        ApiError: 400 if it is not base64.
    """
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "bad_base64", f"{what} is not valid base64; send the image file's bytes base64-encoded "
                       "(a data:image/png;base64,... URL is fine)") from None
