"""Image and Mask: the value types that image ops take and return.

Both hold float32 numpy arrays in [0, 1] so that ops compose without rounding between
steps; files are 8- or 16-bit, values in memory are not. Colors are sRGB-encoded (as in
files); ops that need linear light convert explicitly. Alpha is straight (not premultiplied),
as in PNG; compositing premultiplies internally.

Values are immutable by convention: ops return new values and never write into inputs
(the arrays are marked read-only to catch mistakes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from strata.errors import MediaError


def _frozen(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array, dtype=np.float32)
    array.setflags(write=False)
    return array


class _Raster:
    """``width``, ``height`` and ``size`` of a value held as an array of (height, width, ...)."""

    __slots__ = ()

    def _array(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def width(self) -> int:
        return int(self._array().shape[1])

    @property
    def height(self) -> int:
        return int(self._array().shape[0])

    @property
    def size(self) -> tuple[int, int]:
        """(width, height), the order Pillow uses."""
        return (self.width, self.height)


@dataclass(frozen=True, eq=False)
class Image(_Raster):
    """An RGBA image: ``pixels`` is float32 (H, W, 4), sRGB, straight alpha, values in [0, 1].

    Construct from other layouts with :meth:`from_array`.
    """

    pixels: np.ndarray

    def __post_init__(self) -> None:
        p = self.pixels
        if not isinstance(p, np.ndarray) or p.ndim != 3 or p.shape[2] != 4:
            raise MediaError(
                f"Image needs a (height, width, 4) array, got shape {getattr(p, 'shape', None)}; "
                "use Image.from_array() for RGB, gray or uint8 data"
            )
        if p.shape[0] == 0 or p.shape[1] == 0:
            raise MediaError(f"image has zero size ({p.shape[1]}×{p.shape[0]}); width and height must be ≥ 1")
        object.__setattr__(self, "pixels", _frozen(p))

    @classmethod
    def from_array(cls, array: np.ndarray) -> "Image":
        """Build an Image from (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) data.

        uint8 is scaled by 1/255, uint16 by 1/65535; floats are taken as already in [0, 1].
        Missing alpha becomes fully opaque.
        """
        a = np.asarray(array)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
            raise MediaError(f"cannot make an image from an array of shape {a.shape}")
        scale = {np.dtype(np.uint8): 1 / 255.0, np.dtype(np.uint16): 1 / 65535.0}.get(a.dtype)
        h, w, c = a.shape
        # Fill one preallocated array: at 4096² concatenating channel copies costs seconds.
        out = np.empty((h, w, 4), np.float32)
        color = a[:, :, :1] if c in (1, 2) else a[:, :, :3]
        alpha = a[:, :, c - 1 : c] if c in (2, 4) else None
        # One pass per part: cast and scale together (gray broadcasts to three channels).
        np.multiply(color, np.float32(scale or 1.0), out=out[:, :, :3], casting="unsafe")
        if alpha is None:
            out[:, :, 3] = 1.0
        else:
            np.multiply(alpha, np.float32(scale or 1.0), out=out[:, :, 3:], casting="unsafe")
        return cls(out)

    @classmethod
    def solid(cls, width: int, height: int, rgba: tuple[float, float, float, float]) -> "Image":
        """A ``width``×``height`` image filled with one RGBA color (components in [0, 1])."""
        return cls(np.broadcast_to(np.asarray(rgba, np.float32), (height, width, 4)).copy())

    def _array(self) -> np.ndarray:
        return self.pixels

    @property
    def rgb(self) -> np.ndarray:
        """The (H, W, 3) color channels (read-only view)."""
        return self.pixels[:, :, :3]

    @property
    def alpha(self) -> np.ndarray:
        """The (H, W) alpha channel (read-only view)."""
        return self.pixels[:, :, 3]

    @property
    def is_opaque(self) -> bool:
        return bool(np.all(self.pixels[:, :, 3] >= 1.0))

    def to_uint8(self) -> np.ndarray:
        """(H, W, 4) uint8, rounded to nearest."""
        return np.clip(np.rint(self.pixels * 255.0), 0, 255).astype(np.uint8)

    def with_pixels(self, pixels: np.ndarray) -> "Image":
        """A new Image with ``pixels`` (convenience for ops)."""
        return Image(pixels)

    def __repr__(self) -> str:
        return f"Image({self.width}×{self.height})"


@dataclass(frozen=True, eq=False)
class Mask(_Raster):
    """A one-channel mask: ``values`` is float32 (H, W) in [0, 1]; 1 = selected."""

    values: np.ndarray

    def __post_init__(self) -> None:
        v = self.values
        if not isinstance(v, np.ndarray) or v.ndim != 2:
            raise MediaError(f"Mask needs a (height, width) array, got shape {getattr(v, 'shape', None)}")
        if v.shape[0] == 0 or v.shape[1] == 0:
            raise MediaError(f"mask has zero size ({v.shape[1]}×{v.shape[0]}); width and height must be ≥ 1")
        object.__setattr__(self, "values", _frozen(v))

    @classmethod
    def from_array(cls, array: np.ndarray) -> "Mask":
        """Build a Mask from bool, uint8 (0..255), uint16 or float data of shape (H, W)."""
        a = np.asarray(array)
        if a.dtype == np.uint8:
            a = a.astype(np.float32) / 255.0
        elif a.dtype == np.uint16:
            a = a.astype(np.float32) / 65535.0
        else:
            a = a.astype(np.float32)
        if a.ndim == 3 and a.shape[2] == 1:
            a = a[:, :, 0]
        return cls(a)

    @classmethod
    def full(cls, width: int, height: int, value: float = 1.0) -> "Mask":
        return cls(np.full((height, width), value, np.float32))

    def _array(self) -> np.ndarray:
        return self.values

    def __repr__(self) -> str:
        return f"Mask({self.width}×{self.height})"
