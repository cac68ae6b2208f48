"""select layer: image.pick."""

from __future__ import annotations

import pytest

from strata.errors import OpError
from strata.media.image import Image
from strata.ops.select import pick


def test_pick_returns_the_indexed_image_and_names_bad_indices():
    images = [Image.solid(4, 4, (v, v, v, 1)) for v in (0.1, 0.5, 0.9)]
    assert pick(images) is images[0] and pick(images, index=2) is images[2]
    with pytest.raises(OpError, match=r"index 3 is past the end of the 3 images \(0–2\)"):
        pick(images, index=3)
    with pytest.raises(OpError, match="empty"):
        pick([])
