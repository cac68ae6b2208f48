"""composite layer: W3C blend modes (vs the spec and the blend-modes package), layers, text, shadows."""

from __future__ import annotations

import blend_modes
import numpy as np
import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import ImageFont

from strata.errors import OpError
from strata.media.image import Image, Mask
from strata.ops import composite
from strata.workflow.node import REGISTRY

MODES = list(composite.BLEND_FUNCTIONS)


# ---------------------------------------------------------------- the spec, written out independently

def spec_blend(mode: str, cb: float, cs: float) -> float:
    """B(cb, cs) transcribed from W3C Compositing and Blending Level 1, §10, one scalar at a time."""
    def hard_light(b: float, s: float) -> float:
        return b * 2 * s if s <= 0.5 else spec_blend("screen", b, 2 * s - 1)

    if mode == "normal":
        return cs
    if mode == "multiply":
        return cb * cs
    if mode == "screen":
        return cb + cs - cb * cs
    if mode == "overlay":
        return hard_light(cs, cb)
    if mode == "darken":
        return min(cb, cs)
    if mode == "lighten":
        return max(cb, cs)
    if mode == "color-dodge":
        if cb == 0:
            return 0.0
        if cs == 1:
            return 1.0
        return min(1.0, cb / (1 - cs))
    if mode == "color-burn":
        if cb == 1:
            return 1.0
        if cs == 0:
            return 0.0
        return 1 - min(1.0, (1 - cb) / cs)
    if mode == "hard-light":
        return hard_light(cb, cs)
    if mode == "soft-light":
        if cs <= 0.5:
            return cb - (1 - 2 * cs) * cb * (1 - cb)
        d = ((16 * cb - 12) * cb + 4) * cb if cb <= 0.25 else cb**0.5
        return cb + (2 * cs - 1) * (d - cb)
    if mode == "difference":
        return abs(cb - cs)
    if mode == "exclusion":
        return cb + cs - 2 * cb * cs
    if mode == "add":  # strata's definition (linear dodge); not in the Level 1 list
        return min(1.0, cb + cs)
    raise KeyError(mode)


def spec_composite(base: np.ndarray, top: np.ndarray, mode: str, opacity: float) -> np.ndarray:
    """General formula (§5.8) + source-over (§9.1.4), un-premultiplied, in float64."""
    out = np.zeros(base.shape, np.float64)
    for i, j in np.ndindex(base.shape[:2]):
        cb, ab = base[i, j, :3].astype(float), float(base[i, j, 3])
        cs, a_s = top[i, j, :3].astype(float), float(top[i, j, 3]) * opacity
        mixed = np.array([spec_blend(mode, float(b), float(s)) for b, s in zip(cb, cs)])
        cs_prime = (1 - ab) * cs + ab * mixed
        co = cs_prime * a_s + cb * ab * (1 - a_s)
        ao = a_s + ab * (1 - a_s)
        out[i, j, :3] = co / ao if ao > 0 else 0.0
        out[i, j, 3] = ao
    return out


def _pair(seed: int, *, opaque_base: bool, size: int = 12) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.random((size, size, 4)).astype(np.float32)
    top = rng.random((size, size, 4)).astype(np.float32)
    # Exact 0, 0.25, 0.5 and 1 hit every branch of dodge, burn, hard- and soft-light.
    special = np.array([0.0, 0.25, 0.5, 1.0], np.float32)
    base[:4, :, :3] = special[rng.integers(0, 4, (4, size, 3))]
    top[:, :4, :3] = special[rng.integers(0, 4, (size, 4, 3))]
    top[0, :, 3], top[1, :, 3] = 0.0, 1.0
    base[:, :, 3] = 1.0 if opaque_base else base[:, :, 3]
    if not opaque_base:
        base[:, 0, 3], base[:, 1, 3] = 0.0, 1.0
    return base, top


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("opaque_base", [False, True], ids=["translucent", "opaque"])
def test_blend_matches_spec_formula(mode: str, opaque_base: bool) -> None:
    base, top = _pair(hash(mode) % 1000, opaque_base=opaque_base)
    got = composite.blend(Image(base), Image(top), mode=mode, opacity=0.8).pixels
    np.testing.assert_allclose(got, spec_composite(base, top, mode, 0.8), atol=2e-6)


unit = st.floats(0.0, 1.0, width=32) | st.sampled_from([0.0, 0.25, 0.5, 1.0])


@settings(max_examples=150, deadline=None)
@given(mode=st.sampled_from(MODES), base=st.tuples(unit, unit, unit, unit), top=st.tuples(unit, unit, unit, unit),
       opacity=unit)
def test_blend_matches_spec_on_any_pixel(mode: str, base: tuple, top: tuple, opacity: float) -> None:
    b = np.array(base, np.float32).reshape(1, 1, 4)
    t = np.array(top, np.float32).reshape(1, 1, 4)
    got = composite.blend(Image(b), Image(t), mode=mode, opacity=opacity).pixels
    want = spec_composite(b, t, mode, opacity)
    np.testing.assert_allclose(_premultiplied(got), _premultiplied(want), atol=2e-6)


# blend-modes keeps the base's alpha instead of Porter-Duff source-over, so the two agree when
# the base is opaque (then ao = 1 in both). It lacks color-burn and exclusion, and its
# soft_light is the "pegtop" formula, not the W3C one (checked to differ below).
PACKAGE = {
    "multiply": blend_modes.multiply, "screen": blend_modes.screen, "overlay": blend_modes.overlay,
    "darken": blend_modes.darken_only, "lighten": blend_modes.lighten_only,
    "color-dodge": blend_modes.dodge, "hard-light": blend_modes.hard_light,
    "difference": blend_modes.difference, "add": blend_modes.addition,
}


@pytest.mark.parametrize("mode", list(PACKAGE))
def test_blend_matches_blend_modes_package(mode: str) -> None:
    rng = np.random.default_rng(7)
    base = rng.uniform(0.01, 0.99, (16, 16, 4)).astype(np.float32)
    top = rng.uniform(0.01, 0.99, (16, 16, 4)).astype(np.float32)
    base[:, :, 3] = 1.0
    if mode == "add":  # blend-modes does not clip cb + cs; stay where the sum is ≤ 1
        base[:, :, :3] *= 0.5
        top[:, :, :3] *= 0.5
    theirs = PACKAGE[mode](base.astype(np.float64) * 255, top.astype(np.float64) * 255, 0.7) / 255
    ours = composite.blend(Image(base), Image(top), mode=mode, opacity=0.7).pixels
    assert np.abs(ours - theirs).max() < 1 / 255


def test_normal_matches_blend_modes_even_with_translucent_base() -> None:
    base, top = _pair(3, opaque_base=False)
    base[:, :, 3] = np.maximum(base[:, :, 3], 0.05)  # the package divides by the result alpha
    theirs = blend_modes.normal(base.astype(np.float64) * 255, top.astype(np.float64) * 255, 0.6) / 255
    ours = composite.blend(Image(base), Image(top), mode="normal", opacity=0.6).pixels
    assert np.abs(ours - theirs).max() < 1 / 255


def test_blend_modes_soft_light_is_a_different_formula() -> None:
    base, top = _pair(5, opaque_base=True)
    theirs = blend_modes.soft_light(base.astype(np.float64) * 255, top.astype(np.float64) * 255, 1.0) / 255
    ours = composite.blend(Image(base), Image(top), mode="soft-light").pixels
    assert np.abs(ours - theirs).max() > 0.02


def _premultiplied(pixels: np.ndarray) -> np.ndarray:
    """Comparable form: the color of a fully transparent pixel is meaningless (strata stores 0)."""
    return np.concatenate([pixels[:, :, :3] * pixels[:, :, 3:], pixels[:, :, 3:]], axis=2)


def test_blend_opacity_and_mask() -> None:
    base, top = _pair(11, opaque_base=False)
    b, t = Image(base), Image(top)
    np.testing.assert_allclose(_premultiplied(composite.blend(b, t, opacity=0.0).pixels), _premultiplied(base),
                               atol=1e-6)
    mask = np.zeros(base.shape[:2], np.float32)
    mask[:, 6:] = 1.0
    got = composite.blend(b, t, Mask(mask), mode="multiply", opacity=0.5).pixels
    np.testing.assert_allclose(_premultiplied(got[:, :6]), _premultiplied(base[:, :6]), atol=1e-6)
    np.testing.assert_allclose(got[:, 6:], spec_composite(base, top, "multiply", 0.5)[:, 6:], atol=2e-6)


def test_blend_large_image_in_strips_matches_formula() -> None:
    rng = np.random.default_rng(9)
    base, top = rng.random((2, 300, 1000, 4), dtype=np.float32)  # 300k px: several 64k-px strips
    mask = rng.random((300, 1000), dtype=np.float32)
    got = composite.blend(Image(base), Image(top), Mask(mask), mode="screen", opacity=0.7).pixels
    a_s = top[..., 3:] * mask[..., None] * 0.7
    a_b = base[..., 3:]
    mixed = base[..., :3] + top[..., :3] - base[..., :3] * top[..., :3]
    co = ((1 - a_b) * top[..., :3] + a_b * mixed) * a_s + base[..., :3] * a_b * (1 - a_s)
    ao = a_s + a_b * (1 - a_s)
    np.testing.assert_allclose(got, np.concatenate([co / ao, ao], axis=2), atol=3e-6)


def test_multiply_of_opaque_images_is_the_product_and_one_translucent_pixel_is_seen() -> None:
    rng = np.random.default_rng(10)
    base, top = rng.random((2, 400, 1000, 4), dtype=np.float32)  # 400k px: strips run in parallel
    base[..., 3] = top[..., 3] = 1.0
    got = composite.blend(Image(base.copy()), Image(top.copy()), mode="multiply").pixels
    np.testing.assert_array_equal(got[..., :3], base[..., :3] * top[..., :3])  # float32 cb·cs, bit for bit
    assert np.all(got[..., 3] == 1.0)
    # A translucent pixel in one strip of the top and one in another strip of the base: those
    # strips take the general formula, the others stay the plain product.
    top[150, 500, 3], base[330, 20, 3] = 0.5, 0.25
    got = composite.blend(Image(base), Image(top), mode="multiply").pixels
    want = spec_composite(base[[150, 330]][:, [500, 20]], top[[150, 330]][:, [500, 20]], "multiply", 1.0)
    np.testing.assert_allclose(got[[150, 330]][:, [500, 20]], want, atol=2e-6)
    np.testing.assert_array_equal(got[0, :, :3], base[0, :, :3] * top[0, :, :3])


def test_blend_errors_name_the_input() -> None:
    b = Image.solid(8, 8, (0, 0, 0, 1))
    with pytest.raises(OpError, match=r"'top': size 4×8 does not match the 8×8 image"):
        composite.blend(b, Image.solid(4, 8, (1, 1, 1, 1)))
    with pytest.raises(OpError, match=r"'mask': size 8×7 does not match the 8×8 image"):
        composite.blend(b, b, Mask.full(8, 7))
    with pytest.raises(OpError, match="unknown blend mode 'glow'"):
        composite.blend(b, b, mode="glow")  # type: ignore[arg-type]


def test_blend_params_validated_by_node_spec() -> None:
    params = REGISTRY["composite.blend"].params_model
    assert params(mode="color-burn", opacity=0.5).mode == "color-burn"
    with pytest.raises(pydantic.ValidationError, match="Input should be 'normal', 'multiply'"):
        params(mode="glow")
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 1"):
        params(opacity=1.5)


# ---------------------------------------------------------------- layer stack

RED = (1.0, 0.0, 0.0, 1.0)


def test_layer_placed_exactly_at_integer_position() -> None:
    base = Image.solid(40, 30, (0, 0, 0, 1))
    out = composite.layers(base, [Image.solid(10, 10, RED)], settings=[{"x": 5, "y": 7}]).pixels
    red = out[:, :, 0] > 0.5
    assert red.sum() == 100 and red[7:17, 5:15].all()


def test_layer_scale_rotation_opacity_and_mode() -> None:
    base = Image.solid(40, 40, (0.5, 0.5, 0.5, 1))
    layer = Image.solid(10, 10, RED)
    out = composite.layers(base, [layer], settings=[{"x": 10, "y": 10, "scale": 2.0}]).pixels
    assert (out[:, :, 1] < 0.01).sum() == 400  # 20×20 red square
    turned = composite.layers(base, [layer], settings=[{"x": 15, "y": 15, "rotation_deg": 90}]).pixels
    np.testing.assert_allclose(turned[16:24, 16:24], np.broadcast_to(RED, (8, 8, 4)), atol=1e-4)
    faded = composite.layers(base, [layer], settings=[{"opacity": 0.5, "mode": "multiply"}]).pixels
    np.testing.assert_allclose(faded[5, 5, :3], [0.5, 0.25, 0.25], atol=1e-6)  # 0.5 + (0.5·c − 0.5)·0.5


def test_layer_mask_moves_with_layer() -> None:
    base = Image.solid(20, 20, (0, 0, 0, 1))
    half = np.zeros((10, 10), np.float32)
    half[:, :5] = 1.0
    out = composite.layers(base, [Image.solid(10, 10, RED)], [Mask(half)],
                           settings=[{"x": 4, "y": 4, "mask": 0}]).pixels
    assert (out[:, :, 0] > 0.5).sum() == 50 and out[4:14, 4:9, 0].min() == 1.0


def test_layer_errors() -> None:
    base = Image.solid(20, 20, (0, 0, 0, 1))
    layer = Image.solid(10, 10, RED)
    with pytest.raises(OpError, match="got 1 layer image.* but 2 settings entries"):
        composite.layers(base, [layer], settings=[{}, {}])
    with pytest.raises(OpError, match="layer 0 uses mask 1 but only 1 mask"):
        composite.layers(base, [layer], [Mask.full(10, 10)], settings=[{"mask": 1}])
    with pytest.raises(OpError, match="'masks': size 5×5 does not match the 10×10 image"):
        composite.layers(base, [layer], [Mask.full(5, 5)], settings=[{"mask": 0}])
    with pytest.raises(OpError, match="layer 0 at x=50.0, y=0.0 lies entirely outside the 20×20 base"):
        composite.layers(base, [layer], settings=[{"x": 50}])
    params = REGISTRY["composite.layers"].params_model
    with pytest.raises(pydantic.ValidationError, match="greater than 0"):
        params(settings=[{"scale": 0}])
    with pytest.raises(pydantic.ValidationError, match="Extra inputs are not permitted"):
        params(settings=[{"blend": "multiply"}])


# ---------------------------------------------------------------- text and shadow


def _ink_box(pixels: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(pixels[:, :, 0] > 0.2)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def test_text_draws_inside_the_expected_box() -> None:
    canvas = Image.solid(200, 80, (0, 0, 0, 1))
    out = composite.text(canvas, text="Hello", x=20, y=10, size_px=32).pixels
    font = ImageFont.load_default(size=32)
    left, top, right, bottom = font.getbbox("Hello")
    x0, y0, x1, y1 = _ink_box(out)
    # Ink lies inside the font's layout box placed at (x, y) and fills most of it.
    assert 20 + left <= x0 and x1 <= 20 + right and 10 + top <= y0 and y1 <= 10 + bottom
    assert x1 - x0 >= 0.85 * (right - left) and y1 - y0 >= 0.85 * (bottom - top)
    np.testing.assert_allclose(out[y0:y1, x0:x1].max(axis=(0, 1)), [1, 1, 1, 1])  # white, default color


def test_text_wraps_aligns_and_strokes() -> None:
    canvas = Image.solid(300, 200, (0, 0, 0, 1))
    one_line = _ink_box(composite.text(canvas, text="aaa bbb ccc", size_px=24).pixels)
    wrapped = _ink_box(composite.text(canvas, text="aaa bbb ccc", size_px=24, box_width_px=60).pixels)
    assert wrapped[3] - wrapped[1] > 2.5 * (one_line[3] - one_line[1]) and wrapped[2] <= 60
    centered = _ink_box(composite.text(canvas, text="mid", x=0, size_px=24, box_width_px=300, align="center").pixels)
    assert abs((centered[0] + centered[2]) / 2 - 150) <= 2
    stroked = _ink_box(composite.text(canvas, text="mid", x=40, y=40, size_px=24, stroke_width_px=3,
                                      stroke_color="#ff0000").pixels)
    plain = _ink_box(composite.text(canvas, text="mid", x=40, y=40, size_px=24).pixels)
    assert stroked[0] <= plain[0] - 2 and stroked[2] >= plain[2] + 2


def test_text_errors(tmp_path) -> None:
    canvas = Image.solid(50, 50, (0, 0, 0, 1))
    with pytest.raises(OpError, match=r"'x': text box at \(60, 0\) starts outside the 50×50 image"):
        composite.text(canvas, text="hi", x=60)
    bad_font = tmp_path / "broken.ttf"
    bad_font.write_bytes(b"not a font")
    with pytest.raises(OpError, match="'font': cannot read font file"):
        composite.text(canvas, text="hi", font=str(bad_font))
    with pytest.raises(pydantic.ValidationError, match="at least 1 character"):
        REGISTRY["composite.text"].params_model(text="")
    with pytest.raises(pydantic.ValidationError, match="String should match pattern"):
        REGISTRY["composite.text"].params_model(text="hi", color="red")
    with pytest.raises(OpError, match="'stroke_color': color 'red' is not #rrggbb or #rrggbbaa"):
        composite.text(canvas, text="hi", stroke_color="red")


def test_drop_shadow_sits_beneath_at_offset() -> None:
    pixels = np.zeros((40, 40, 4), np.float32)
    pixels[10:20, 10:20] = (1, 1, 1, 1)
    out = composite.drop_shadow(Image(pixels), offset_x_px=8, offset_y_px=6, sigma_px=0.0, opacity=0.5).pixels
    np.testing.assert_array_equal(out[10:20, 10:20], pixels[10:20, 10:20])  # the subject stays on top
    np.testing.assert_allclose(out[22:26, 22:28], np.broadcast_to((0, 0, 0, 0.5), (4, 6, 4)))
    assert out[5, 5, 3] == 0.0 and out[30, 30, 3] == 0.0
    soft = composite.drop_shadow(Image(pixels), sigma_px=3.0).pixels
    assert 0 < soft[29, 22, 3] < 0.3  # blurred edge


def test_drop_shadow_refuses_opaque_image() -> None:
    with pytest.raises(OpError, match="'image': the image is fully opaque"):
        composite.drop_shadow(Image.solid(10, 10, RED))
