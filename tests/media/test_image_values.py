"""Image.from_array: every accepted layout matches a direct reference conversion."""

from __future__ import annotations

import numpy as np
import pytest

from strata.errors import MediaError
from strata.media import Image, Mask

SCALE = {np.uint8: 255.0, np.uint16: 65535.0, np.float32: 1.0, bool: 1.0}


@pytest.mark.parametrize("dtype", list(SCALE))
@pytest.mark.parametrize("channels", [None, 1, 2, 3, 4])
def test_from_array_matches_reference(dtype, channels):
    shape = (5, 7) if channels is None else (5, 7, channels)
    raw = (np.random.default_rng(0).random(shape) * SCALE[dtype]).astype(dtype)
    image = Image.from_array(raw)
    f = raw.astype(np.float64) / SCALE[dtype]
    f = f[:, :, None] if f.ndim == 2 else f
    c = f.shape[2]
    rgb = np.repeat(f[:, :, :1], 3, axis=2) if c in (1, 2) else f[:, :, :3]
    alpha = f[:, :, c - 1] if c in (2, 4) else np.ones(f.shape[:2])
    np.testing.assert_allclose(image.rgb, rgb, atol=1e-7)
    np.testing.assert_allclose(image.alpha, alpha, atol=1e-7)
    assert image.pixels.dtype == np.float32 and not image.pixels.flags.writeable


def test_bad_shapes_are_refused():
    with pytest.raises(MediaError, match="cannot make an image from an array of shape"):
        Image.from_array(np.zeros((4, 4, 5)))
    with pytest.raises(MediaError, match="zero size"):
        Image.from_array(np.zeros((0, 4, 3)))
    with pytest.raises(MediaError, match=r"\(height, width, 4\)"):
        Image(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(MediaError, match="zero size"):
        Mask(np.zeros((3, 0), np.float32))
