"""edit layer: mask shapes and algebra, crop, pad, resize, rotate, flip."""

from __future__ import annotations

import math

import numpy as np
import pydantic
import pytest

from strata.errors import OpError
from strata.media.image import Image, Mask
from strata.ops import edit
from strata.workflow.node import REGISTRY


@pytest.fixture
def image() -> Image:
    return Image(np.random.default_rng(0).random((24, 32, 4), dtype=np.float32))


def _shoelace(points: list[tuple[float, float]]) -> float:
    x, y = np.array(points).T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


# ---------------------------------------------------------------- masks from shapes


def test_rectangle_mask_is_exact() -> None:
    canvas = Image.solid(100, 80, (0, 0, 0, 1))
    m = edit.mask_rectangle(canvas, left=10, top=20, width=30, height=15).values
    expected = np.zeros((80, 100), np.float32)
    expected[20:35, 10:40] = 1.0
    np.testing.assert_array_equal(m, expected)
    half = edit.mask_rectangle(canvas, left=10.5, top=20, width=30, height=15).values
    assert half.sum() == pytest.approx(450.0, abs=1e-3) and half[25, 10] == pytest.approx(0.5)
    clipped = edit.mask_rectangle(canvas, left=-10, top=-10, width=20, height=20).values
    assert clipped.sum() == pytest.approx(100.0, abs=1e-3)  # only the part on the image
    everything = edit.mask_rectangle(canvas, left=-5, top=-5, width=200, height=200).values
    assert everything.min() == 1.0


@pytest.mark.parametrize(("rx", "ry", "angle", "rel"), [(30, 18, 0, 2e-3), (25.5, 10.2, 33, 2e-3), (4, 4, 0, 1e-2)])
def test_ellipse_area_matches_formula(rx: float, ry: float, angle: float, rel: float) -> None:
    m = edit.mask_ellipse(Image.solid(100, 100, (0, 0, 0, 1)), center_x=50.3, center_y=49.6,
                          radius_x=rx, radius_y=ry, rotation_deg=angle).values
    assert m.sum() == pytest.approx(math.pi * rx * ry, rel=rel)  # tiny shapes: curvature error
    assert m[50, 50] == 1.0 and m[0, 0] == 0.0


def test_ellipse_rotation_turns_counter_clockwise() -> None:
    m = edit.mask_ellipse(Image.solid(100, 100, (0, 0, 0, 1)), center_x=50, center_y=50,
                          radius_x=40, radius_y=5, rotation_deg=45).values
    assert m[50 - 20, 50 + 20] == 1.0 and m[50 + 20, 50 + 20] == 0.0  # up-right on screen


def test_polygon_area_matches_shoelace_including_concave() -> None:
    canvas = Image.solid(120, 110, (0, 0, 0, 1))
    for points in ([(5, 5), (100, 20), (40, 90)], [(5, 5), (100, 5), (100, 100), (5, 100), (50, 50)]):
        assert edit.mask_polygon(canvas, points=points).values.sum() == pytest.approx(_shoelace(points), rel=1e-3)


def test_shape_outside_image_is_refused() -> None:
    canvas = Image.solid(50, 40, (0, 0, 0, 1))
    with pytest.raises(OpError, match="'left': the shape lies entirely outside the 50×40 image"):
        edit.mask_rectangle(canvas, left=60, top=0, width=10, height=10)
    with pytest.raises(OpError, match="'points': the shape lies entirely outside"):
        edit.mask_polygon(canvas, points=[(-30, -30), (-10, -30), (-10, -10)])
    with pytest.raises(pydantic.ValidationError, match="at least 3 items"):
        REGISTRY["edit.mask_polygon"].params_model(points=[(0, 0), (1, 1)])


def test_mask_from_alpha_and_color_range(image: Image) -> None:
    np.testing.assert_array_equal(edit.mask_from_alpha(image).values, image.alpha)
    pixels = np.zeros((4, 4, 4), np.float32)
    pixels[..., 3] = 1
    pixels[0, 0, :3] = (1, 0, 0)
    pixels[0, 1, :3] = (0.9, 0, 0)  # distance 0.1/√3 ≈ 0.058
    pixels[0, 2, :3] = (0.7, 0, 0)  # distance ≈ 0.173
    m = edit.mask_color_range(Image(pixels), color="#ff0000", tolerance=0.05, softness=0.1).values
    assert m[0, 0] == 1.0 and m[0, 2] == 0.0 and m[1, 1] == 0.0
    assert m[0, 1] == pytest.approx((0.15 - 0.1 / math.sqrt(3)) / 0.1, abs=1e-5)
    hard = edit.mask_color_range(Image(pixels), color="#ff0000", tolerance=0.06, softness=0).values
    assert hard[0, 1] == 1.0 and hard[0, 2] == 0.0


# ---------------------------------------------------------------- mask algebra


def _blob() -> Mask:
    return edit.mask_ellipse(Image.solid(64, 64, (0, 0, 0, 1)), center_x=32, center_y=30, radius_x=12, radius_y=9)


def test_grow_and_shrink() -> None:
    dot = np.zeros((41, 41), np.float32)
    dot[20, 20] = 1.0
    grown = edit.mask_grow(Mask(dot), radius_px=6).values
    assert grown.sum() == pytest.approx(math.pi * 6.5**2, rel=0.1)
    large = edit.mask_grow(Mask(dot), radius_px=19).values  # runs as several smaller discs
    assert large.sum() == pytest.approx(math.pi * 19.5**2, rel=0.05)  # a sum of discrete discs is a bit smaller
    assert np.flatnonzero(large[20]).tolist() == list(range(1, 40))  # reaches exactly 19 px
    blob = _blob()
    assert edit.mask_grow(blob, radius_px=-3).values.sum() < blob.values.sum() < edit.mask_grow(blob).values.sum()
    np.testing.assert_array_equal(edit.mask_grow(blob, radius_px=0).values, blob.values)


def test_feather_keeps_mean_and_softens() -> None:
    blob = _blob()
    soft = edit.mask_feather(blob, sigma_px=3.0).values
    assert soft.mean() == pytest.approx(blob.values.mean(), rel=1e-4)
    assert ((soft > 0.01) & (soft < 0.99)).sum() > 3 * ((blob.values > 0.01) & (blob.values < 0.99)).sum()


def test_invert_and_combine_laws() -> None:
    rng = np.random.default_rng(1)
    a, b = Mask(rng.random((16, 16), np.float32)), Mask(rng.random((16, 16), np.float32))

    def comb(x: Mask, y: Mask, op: str) -> np.ndarray:
        return edit.mask_combine(x, y, operation=op).values

    np.testing.assert_array_equal(edit.mask_invert(edit.mask_invert(a)).values, a.values)
    np.testing.assert_array_equal(comb(a, b, "union"), comb(b, a, "union"))
    np.testing.assert_allclose(comb(a, b, "union") + comb(a, b, "intersect"), a.values + b.values, atol=1e-6)
    # De Morgan, and subtract = intersect with the complement
    np.testing.assert_allclose(edit.mask_invert(Mask(comb(a, b, "union"))).values,
                               comb(edit.mask_invert(a), edit.mask_invert(b), "intersect"), atol=1e-6)
    np.testing.assert_array_equal(comb(a, b, "subtract"), comb(a, edit.mask_invert(b), "intersect"))
    assert np.all(comb(a, b, "intersect") <= a.values)


def test_combine_refuses_size_mismatch() -> None:
    with pytest.raises(OpError, match="'b': size 8×4 does not match the 8×8 mask"):
        edit.mask_combine(Mask.full(8, 8), Mask.full(8, 4))


# ---------------------------------------------------------------- geometry


def test_crop_values_and_errors(image: Image) -> None:
    out = edit.crop(image, left=3, top=2, width=10, height=5)
    np.testing.assert_array_equal(out.pixels, image.pixels[2:7, 3:13])
    with pytest.raises(OpError, match="'width': crop spans x 30..40 but the image ends at 32; use width ≤ 2"):
        edit.crop(image, left=30, top=0, width=10, height=5)
    with pytest.raises(OpError, match="'top': top=24 is outside the 32×24 image"):
        edit.crop(image, left=0, top=24, width=1, height=1)
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 1"):
        REGISTRY["edit.crop"].params_model(width=0)


@pytest.mark.parametrize("mode", ["edge", "reflect", "constant", "noise"])
def test_pad_then_crop_is_identity(image: Image, mode: str) -> None:
    padded = edit.pad(image, left=5, top=3, right=7, bottom=2, mode=mode, color="#11223344", seed=4)
    assert padded["image"].size == (44, 29)
    assert padded["mask"].values.sum() == 44 * 29 - 32 * 24
    assert padded["mask"].values[3:27, 5:37].max() == 0.0
    back = edit.crop(padded["image"], left=5, top=3, width=32, height=24)
    np.testing.assert_array_equal(back.pixels, image.pixels)


def test_pad_fills(image: Image) -> None:
    edge = edit.pad(image, left=4, mode="edge")["image"].pixels
    np.testing.assert_array_equal(edge[:, 0], image.pixels[:, 0])
    mirror = edit.pad(image, left=2, mode="reflect")["image"].pixels
    np.testing.assert_array_equal(mirror[:, 0], image.pixels[:, 2])
    const = edit.pad(image, bottom=1, mode="constant", color="#ff000080")["image"].pixels
    np.testing.assert_allclose(const[-1], np.broadcast_to([1, 0, 0, 128 / 255], (32, 4)))
    n1, n2, n3 = (edit.pad(image, right=8, mode="noise", seed=s)["image"].pixels[:, 32:] for s in (1, 1, 2))
    np.testing.assert_array_equal(n1, n2)
    assert not np.array_equal(n1, n3)
    assert n1[..., :3].mean() == pytest.approx(image.rgb.mean(), abs=0.05) and n1[..., 3].min() == 1.0


def test_flip_twice_is_identity(image: Image) -> None:
    for axis in ("horizontal", "vertical"):
        np.testing.assert_array_equal(edit.flip(edit.flip(image, axis=axis), axis=axis).pixels, image.pixels)
    np.testing.assert_array_equal(edit.flip(image).pixels, image.pixels[:, ::-1])


def test_rotate_quarter_turns_are_exact(image: Image) -> None:
    np.testing.assert_array_equal(edit.rotate(image, angle_deg=90).pixels, np.rot90(image.pixels))
    np.testing.assert_array_equal(edit.rotate(image, angle_deg=-180).pixels, np.rot90(image.pixels, 2))
    np.testing.assert_array_equal(edit.rotate(image, angle_deg=360).pixels, image.pixels)
    square = edit.crop(image, width=24, height=24)
    opaque = Image(np.concatenate([square.rgb, np.ones((24, 24, 1), np.float32)], axis=2))
    # the resampling path turns the same way as np.rot90 (counter-clockwise)
    general = edit.rotate(opaque, angle_deg=90, expand=False, method="bilinear").pixels
    np.testing.assert_allclose(general, np.rot90(opaque.pixels), atol=1e-5)


def test_rotate_expands_canvas_and_leaves_corners_transparent() -> None:
    out = edit.rotate(Image.solid(40, 20, (1, 1, 1, 1)), angle_deg=30)
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert out.size == (math.ceil(40 * c + 20 * s), math.ceil(40 * s + 20 * c))
    assert out.alpha[0, 0] == 0.0 and out.alpha[out.height // 2, out.width // 2] == pytest.approx(1.0)
    assert out.alpha.sum() == pytest.approx(800, rel=0.01)  # area is preserved
    assert edit.rotate(Image.solid(40, 20, (1, 1, 1, 1)), angle_deg=30, expand=False).size == (40, 20)


@pytest.mark.parametrize("method", ["lanczos", "bicubic", "nearest"])
def test_resize_shapes_and_flat_stays_flat(method: str) -> None:
    flat = Image.solid(30, 20, (0.2, 0.4, 0.6, 1.0))
    for size in ((60, 40), (7, 5)):
        out = edit.resize(flat, width=size[0], height=size[1], method=method)
        assert out.size == size
        np.testing.assert_allclose(out.pixels, np.broadcast_to((0.2, 0.4, 0.6, 1.0), (size[1], size[0], 4)), atol=1e-5)


def test_resize_nearest_round_trip(image: Image) -> None:
    up = edit.resize(image, width=64, height=48, method="nearest")
    np.testing.assert_array_equal(edit.resize(up, width=32, height=24, method="nearest").pixels, image.pixels)


def test_resize_is_alpha_aware_no_fringe() -> None:
    pixels = np.zeros((16, 16, 4), np.float32)
    pixels[:, :8] = (1, 0, 0, 1)  # opaque red
    pixels[:, 8:] = (0, 1, 0, 0)  # transparent, with a green color that must not leak
    out = edit.resize(Image(pixels), width=6, height=6).pixels
    visible = out[..., 3] > 0.01
    assert visible.any() and out[..., 1][visible].max() < 1e-5
    np.testing.assert_allclose(out[..., 0][visible], 1.0, atol=1e-4)


def test_ops_do_not_mutate_inputs(image: Image) -> None:
    before = image.pixels.copy()
    edit.resize(image, width=10, height=10)
    edit.rotate(image, angle_deg=17)
    edit.pad(image, left=3, mode="noise")
    edit.flip(image)
    np.testing.assert_array_equal(image.pixels, before)
