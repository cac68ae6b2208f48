"""Lossless, deterministic bytes for media values, for the content-addressed store.

``encode_value(value) -> (kind, bytes)`` and ``decode_value(kind, bytes) -> value`` round-trip
exactly, and the same value always gives the same bytes (so an asset id, the hash of the
bytes, identifies the value). Images and masks are stored as ``.npy`` bytes of their float32
arrays: no rounding between nodes, and encoding is one memory copy; decoding is zero-copy
(a read-only view of the bytes, which is what Image/Mask want anyway).

Built-in kinds:
    ``image``  Image — npy float32 (H, W, 4)
    ``mask``   Mask  — npy float32 (H, W)
    ``list``   list/tuple of registered values (e.g. a batch of images) — see :func:`_encode_list`
    ``json``   plain JSON values (None, bool, int, float, str, list, dict) — canonical JSON

Other media types register themselves with :func:`register_codec` (e.g. Audio, Video).
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from strata.errors import MediaError
from strata.media.image import Image, Mask


Buffer = bytes | memoryview  # what an encoded value is made of


@dataclass(frozen=True)
class Codec:
    """How one value type becomes bytes and back.

    Attributes:
        kind: short stable name stored next to the bytes (e.g. ``"image"``).
        type: the Python class of the values.
        encode: value → bytes; must be deterministic and lossless.
        decode: bytes → value; raises MediaError on bad data.
        parts: optional value → pieces whose concatenation is ``encode(value)``, for large
            values whose bytes need not be joined to be hashed and stored (no copy).
    """

    kind: str
    type: type
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    parts: Callable[[Any], Sequence[Buffer]] | None = None


_BY_KIND: dict[str, Codec] = {}
_BY_TYPE: dict[type, Codec] = {}


def register_codec(kind: str, type_: type, encode: Callable[[Any], bytes], decode: Callable[[bytes], Any],
                   parts: Callable[[Any], Sequence[Buffer]] | None = None) -> None:
    """Register how values of ``type_`` are stored.

    Args:
        kind: the name stored with the bytes; must never change once assets exist.
        type_: the value class (exact class; subclasses are not matched).
        encode: deterministic, lossless value → bytes.
        decode: bytes → value (raise MediaError on malformed bytes).
        parts: optional value → pieces that concatenate to ``encode(value)`` (see :class:`Codec`).
    """
    if kind in _BY_KIND and _BY_KIND[kind].type is not type_:
        raise MediaError(f"codec kind {kind!r} is already registered for {_BY_KIND[kind].type.__name__}")
    codec = Codec(kind, type_, encode, decode, parts)
    _BY_KIND[kind] = codec
    _BY_TYPE[type_] = codec


def npy_parts(array: np.ndarray) -> tuple[bytes, memoryview]:
    """``.npy`` bytes of an array (C order) as two pieces, the header and a view of the data:
    joined, exactly what ``np.save`` writes. Hashing or writing the pieces in turn copies nothing."""
    array = np.ascontiguousarray(array)
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, np.lib.format.header_data_from_array_1_0(array))
    return header.getvalue(), memoryview(array.reshape(-1)).cast("B")


def npy_bytes(array: np.ndarray) -> bytes:
    """``.npy`` bytes of an array (C order), exactly as ``np.save`` writes them."""
    # One copy (the join) instead of np.save's write-then-getvalue two.
    return b"".join(npy_parts(array))


def npy_array(data: bytes, *, dtype: np.dtype[Any], ndim: int, what: str) -> np.ndarray:
    """A read-only array viewing ``.npy`` bytes, checked to have ``dtype`` and ``ndim``."""
    try:
        buf = io.BytesIO(data)
        version = np.lib.format.read_magic(buf)
        if version == (1, 0):
            shape, fortran, stored = np.lib.format.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, stored = np.lib.format.read_array_header_2_0(buf)
        else:
            raise ValueError(f"unsupported .npy version {version}")
    except Exception as e:  # numpy raises ValueError/struct errors on garbage
        raise MediaError(f"stored {what} is not valid .npy data ({e}); the store is damaged — run `strata gc`") from e
    if stored != dtype or len(shape) != ndim or fortran:
        raise MediaError(f"stored {what} has dtype {stored}, shape {shape}; expected {dtype} with {ndim} dims")
    count = int(np.prod(shape))
    offset = buf.tell()
    if len(data) - offset != count * dtype.itemsize:
        raise MediaError(f"stored {what} is truncated ({len(data) - offset} of {count * dtype.itemsize} bytes)")
    return np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape)


_F32 = np.dtype("<f4")


def _decode_image(data: bytes) -> Image:
    return Image(npy_array(data, dtype=_F32, ndim=3, what="image"))


def _decode_mask(data: bytes) -> Mask:
    return Mask(npy_array(data, dtype=_F32, ndim=2, what="mask"))


# A list is: b"STRL", a uint32 count, then per item a uint16 kind length, the kind (ASCII),
# a uint64 payload length and the payload. Fixed-width little-endian fields: deterministic.
_LIST_MAGIC = b"STRL"


def _encode_list(values: list[Any] | tuple[Any, ...]) -> bytes:
    parts = [_LIST_MAGIC, struct.pack("<I", len(values))]
    for v in values:
        kind, payload = encode_value(v)
        k = kind.encode("ascii")
        parts += [struct.pack("<H", len(k)), k, struct.pack("<Q", len(payload)), payload]
    return b"".join(parts)


def _decode_list(data: bytes) -> list[Any]:
    view = memoryview(data)
    try:
        if bytes(view[:4]) != _LIST_MAGIC:
            raise ValueError("bad magic")
        (count,) = struct.unpack_from("<I", view, 4)
        pos, items = 8, []
        for _ in range(count):
            (klen,) = struct.unpack_from("<H", view, pos)
            kind = bytes(view[pos + 2 : pos + 2 + klen]).decode("ascii")
            pos += 2 + klen
            (plen,) = struct.unpack_from("<Q", view, pos)
            pos += 8
            if pos + plen > len(view):
                raise ValueError("truncated")
            items.append(decode_value(kind, bytes(view[pos : pos + plen])))
            pos += plen
    except (ValueError, struct.error, UnicodeDecodeError) as e:
        raise MediaError(f"stored list is malformed ({e}); the store is damaged — run `strata gc`") from e
    return items


def _encode_json(value: Any) -> bytes:
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError) as e:
        raise MediaError(
            f"cannot store a value of type {type(value).__name__}: it is neither a registered media type "
            f"({', '.join(sorted(_BY_KIND))}) nor plain JSON ({e})"
        ) from e


def _decode_json(data: bytes) -> Any:
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MediaError(f"stored JSON value is malformed ({e})") from e


def encode_value(value: Any) -> tuple[str, bytes]:
    """Serialize a value for the store: ``(kind, bytes)``, lossless and deterministic.

    Args:
        value: an Image, a Mask, any type added with :func:`register_codec`, a list/tuple of
            such values, or a plain JSON value.

    Raises:
        MediaError: the value cannot be stored (unknown type, NaN in JSON, ...).
    """
    codec = _BY_TYPE.get(type(value))
    if codec is not None:
        return codec.kind, codec.encode(value)
    if isinstance(value, (list, tuple)) and value and all(type(v) in _BY_TYPE for v in value):
        return "list", _encode_list(value)
    return "json", _encode_json(value)


def encode_value_parts(value: Any) -> tuple[str, Sequence[Buffer]]:
    """:func:`encode_value` as pieces to hash or write in turn; ``b"".join`` of them is its bytes.

    Images and masks come as the ``.npy`` header and a view of their (read-only) pixels, so
    storing a large value hashes it without first copying it.
    """
    codec = _BY_TYPE.get(type(value))
    if codec is not None and codec.parts is not None:
        return codec.kind, codec.parts(value)
    kind, data = encode_value(value)
    return kind, (data,)


def decode_value(kind: str, data: bytes) -> Any:
    """Rebuild a value from :func:`encode_value`'s ``(kind, bytes)``.

    Raises:
        MediaError: unknown kind or malformed bytes.
    """
    if kind == "list":
        return _decode_list(data)
    if kind == "json":
        return _decode_json(data)
    codec = _BY_KIND.get(kind)
    if codec is None:
        raise MediaError(f"unknown stored value kind {kind!r}; known: {', '.join(sorted(_BY_KIND) + ['json', 'list'])}")
    return codec.decode(data)


# Explicit little-endian float32, so the bytes (and asset ids) are the same on every machine.
def _image_parts(image: Image) -> tuple[bytes, memoryview]:
    return npy_parts(image.pixels.astype(_F32, copy=False))


def _mask_parts(mask: Mask) -> tuple[bytes, memoryview]:
    return npy_parts(mask.values.astype(_F32, copy=False))


register_codec("image", Image, lambda im: b"".join(_image_parts(im)), _decode_image, _image_parts)
register_codec("mask", Mask, lambda m: b"".join(_mask_parts(m)), _decode_mask, _mask_parts)

__all__ = ["Buffer", "Codec", "decode_value", "encode_value", "encode_value_parts", "npy_array", "npy_bytes",
           "npy_parts", "register_codec"]
