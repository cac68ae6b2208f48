"""select layer: image.pick, and image.select's measures, ranking, duplicates and contact sheet."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from strata.errors import OpError
from strata.media.image import Image
from strata.ops.select import measure, pick, select


def test_pick_returns_the_indexed_image_and_names_bad_indices():
    images = [Image.solid(4, 4, (v, v, v, 1)) for v in (0.1, 0.5, 0.9)]
    assert pick(images) is images[0] and pick(images, index=2) is images[2]
    with pytest.raises(OpError, match=r"index 3 is past the end of the 3 images \(0–2\)"):
        pick(images, index=3)
    with pytest.raises(OpError, match="empty"):
        pick([])


def _disc(seed: int = 0, blur: float = 0.0, noise: float = 0.0, fuzz: bool = False, shift: int = 0) -> Image:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    inside = ((xx - 32 - shift) ** 2 + (yy - 32) ** 2) < 20**2
    rgb = np.zeros((64, 64, 3), np.float32)
    rgb[inside] = (0.8, 0.3, 0.2)
    rgb[inside & (xx % 8 < 4)] = (0.6, 0.2, 0.1)  # stripes: detail that blur removes
    alpha = inside.astype(np.float32)
    if blur:  # a soft picture: premultiplied color and alpha blurred together
        premul = cv2.GaussianBlur(np.dstack([rgb * alpha[..., None], alpha]), (0, 0), blur)
        alpha = premul[..., 3]
        rgb = np.where(alpha[..., None] > 1e-3, premul[..., :3] / np.maximum(alpha[..., None], 1e-3), 0)
    rgb = np.clip(rgb + noise * rng.standard_normal(rgb.shape).astype(np.float32), 0.02, 0.98)
    if fuzz:
        alpha = np.where(rng.random(alpha.shape) < 0.15, 0.5, alpha).astype(np.float32)
    return Image(np.dstack([rgb, alpha]).astype(np.float32))


def test_measures_move_the_way_they_should():
    clean = measure(_disc())
    assert measure(_disc(blur=1.5))["sharpness"] < clean["sharpness"]
    assert measure(_disc(noise=0.08))["noise"] > 2 * clean["noise"]
    assert measure(_disc(fuzz=True))["alpha_fuzz"] > 0.05 > clean["alpha_fuzz"]
    burnt = Image(np.dstack([np.ones((64, 64, 3), np.float32), np.ones((64, 64), np.float32)]))
    assert measure(burnt)["clipping"] == 1.0 and clean["clipping"] == 0.0


def test_select_keeps_the_best_distinct_ones_and_draws_a_sheet():
    candidates = [_disc(blur=1.5), _disc(noise=0.08), _disc(), _disc(fuzz=True), _disc(shift=1)]
    out = select(candidates, keep=2)
    # The clean disc wins; its one-pixel-shifted twin is a near-duplicate, never kept beside it.
    assert out["images"][0] is candidates[2] is out["best"]
    assert len(out["images"]) == 2 and candidates[4] not in out["images"]
    sheet = out["sheet"]
    assert sheet.width > 4 * 96 and sheet.height > 2 * 96 and sheet.is_opaque
    everything = select(candidates, keep=5, max_hash_distance=0)
    assert len(everything["images"]) == 5  # with duplicates allowed, all five come out, best first
    assert everything["images"][0] is candidates[2]
    with pytest.raises(OpError, match="no candidates"):
        select([])
