"""Image-to-image (SDEdit) and the latent morph with the tiny random model (fixed seeds, few steps)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from strata.errors import StrataError
from strata.media.image import Image
from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel, TextEncoder
from strata.models.image_pipeline import Progress, generate, interpolate, seed_noise, slerp, variation

TINY = ImageDiffusionConfig(block_channels=(16, 32), attention_levels=(1,), attention_heads=2, text_tokens=8)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def model() -> ImageDiffusionModel:
    return ImageDiffusionModel.random(TINY, seed=0, text=TextEncoder(TINY))


def _u8(images: list[Image]) -> list[bytes]:
    return [im.to_uint8().tobytes() for im in images]


def _picture(side: int = 64) -> Image:
    yy, xx = np.mgrid[0:side, 0:side] / side
    return Image.from_array(np.dstack([xx, yy, 0.5 + 0 * xx, 0.5 + 0.5 * (xx > 0.3)]).astype(np.float32))


def test_strength_zero_returns_the_input_and_one_ignores_it(model) -> None:
    pic = _picture()
    assert variation(model, pic, "red disc", strength=0.0).images[0] is pic
    big = variation(model, _picture(200), "red disc", strength=0.0).images[0]
    assert big.size == (64, 64)  # brought into the model's domain
    full = variation(model, pic, "red disc", strength=1.0, seed=5, steps=4)
    plain = generate(model, "red disc", seed=5, steps=4)
    assert _u8(full.images) == _u8(plain.images)


@pytest.mark.parametrize("sampler", ["dpmpp", "euler", "ddim"])
def test_partial_strength_runs_that_share_of_the_steps_and_is_deterministic(model, sampler) -> None:
    pic = _picture()
    seen: list[Progress] = []
    a = variation(model, pic, "red disc", strength=0.5, seed=2, steps=8, sampler=sampler, callback=seen.append)
    b = variation(model, pic, "red disc", strength=0.5, seed=2, steps=8, sampler=sampler)
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[-1].total == 4
    assert _u8(a.images) == _u8(b.images)
    near = variation(model, pic, "red disc", strength=0.25, seed=2, steps=8, sampler=sampler).images[0]
    far = variation(model, pic, "red disc", strength=1.0, seed=2, steps=8, sampler=sampler).images[0]
    # Less strength stays closer to the input: the measured property SDEdit promises.
    d = lambda x: float(np.abs(x.pixels - pic.pixels).mean())  # noqa: E731
    assert d(near) < d(far)


def test_bad_strength_is_refused(model) -> None:
    with pytest.raises(StrataError, match="strength must be between 0 and 1"):
        variation(model, _picture(), "x", strength=1.5)


def test_slerp_keeps_the_ends_and_the_norm() -> None:
    a, b = seed_noise(TINY, 1), seed_noise(TINY, 2)
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), b)
    mid = slerp(a, b, 0.5)
    # Independent Gaussian noises are nearly orthogonal: slerp keeps the norm where a lerp loses ~30 %.
    assert abs(float(mid.norm() / a.norm()) - 1) < 0.05 and float(((a + b) / 2).norm() / a.norm()) < 0.8


def test_morph_endpoints_equal_plain_generation(model) -> None:
    seen: list[Progress] = []
    morph = interpolate(model, "red disc", "blue square", seed_a=3, seed_b=9, frames=4, steps=3, callback=seen.append)
    assert len(morph.images) == 4 and [p.step for p in seen] == [1, 2, 3, 4]
    assert _u8(morph.images[:1]) == _u8(generate(model, "red disc", seed=3, steps=3).images)
    assert _u8(morph.images[-1:]) == _u8(generate(model, "blue square", seed=9, steps=3).images)
    same = interpolate(model, "red disc", "red disc", seed_a=3, seed_b=3, frames=3, steps=3)
    assert len(set(_u8(same.images))) == 1  # nothing to morph: every frame is the same image
    with pytest.raises(StrataError, match="frames must be between 2 and 240"):
        interpolate(model, "a", "b", frames=1)
