"""enhance layer: tone/color formulas, .cube LUTs (parser + trilinear), sharpen, denoise, upscale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest

from strata.errors import MediaError, OpError
from strata.media.image import Image
from strata.ops import enhance
from strata.workflow.node import REGISTRY


def _image(seed: int = 0, low: float = 0.0, high: float = 1.0, size: tuple[int, int] = (20, 24)) -> Image:
    rgb = np.random.default_rng(seed).uniform(low, high, size + (3,)).astype(np.float32)
    return Image.from_array(rgb)


def _linear(c: np.ndarray) -> np.ndarray:
    """sRGB decoding written out from IEC 61966-2-1, in float64."""
    c = np.asarray(c, np.float64)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)


# ---------------------------------------------------------------- tone and color


def test_srgb_transfer_functions() -> None:
    ramp = np.linspace(0, 1, 1001, dtype=np.float32)
    np.testing.assert_allclose(enhance.srgb_to_linear(ramp), _linear(ramp), atol=1e-6)
    np.testing.assert_allclose(enhance.linear_to_srgb(enhance.srgb_to_linear(ramp)), ramp, atol=1e-5)
    assert float(enhance.srgb_to_linear(np.float32(0.5))) == pytest.approx(0.214041, abs=1e-6)


def test_exposure_plus_one_stop_doubles_linear_light() -> None:
    img = _image(low=0.0, high=0.7)  # 0.7 sRGB ≈ 0.45 linear, so doubling does not clip
    out = enhance.exposure(img, stops=1.0)
    np.testing.assert_allclose(_linear(out.rgb), 2 * _linear(img.rgb), atol=2e-6)
    np.testing.assert_allclose(_linear(enhance.exposure(img, stops=-2).rgb), _linear(img.rgb) / 4, atol=2e-6)
    np.testing.assert_array_equal(out.alpha, img.alpha)


def test_large_images_run_in_strips_with_the_same_result(tmp_path: Path) -> None:
    img = _image(low=0.0, high=0.7, size=(500, 700))  # 350k px: several 64k-px strips
    np.testing.assert_allclose(_linear(enhance.exposure(img, stops=1.0).rgb), 2 * _linear(img.rgb), atol=2e-6)
    out = enhance.lut(img, path=_cube(tmp_path, enhance.identity_table(9)))
    assert np.abs(out.pixels - img.pixels).max() < 1e-5


def test_contrast_and_saturation() -> None:
    img = _image()
    np.testing.assert_allclose(enhance.contrast(img, factor=1).pixels, img.pixels, atol=1e-7)
    np.testing.assert_allclose(enhance.contrast(img, factor=0).rgb, 0.5)
    np.testing.assert_allclose(enhance.contrast(img, factor=1.5).rgb, np.clip((img.rgb - 0.5) * 1.5 + 0.5, 0, 1),
                               atol=1e-6)
    gray = enhance.saturation(img, factor=0).rgb
    np.testing.assert_allclose(gray[..., 0], gray[..., 1], atol=1e-6)
    np.testing.assert_allclose(gray[..., 0], img.rgb @ np.array([0.2126, 0.7152, 0.0722]), atol=1e-6)
    np.testing.assert_allclose(enhance.saturation(img, factor=1).pixels, img.pixels, atol=1e-6)


def test_gray_world_equalizes_linear_channel_means() -> None:
    rgb = np.random.default_rng(2).uniform(0.1, 0.6, (32, 32, 3)) * np.array([1.0, 0.8, 0.55])  # a warm cast
    pixels = np.concatenate([rgb, np.ones((32, 32, 1))], axis=2).astype(np.float32)
    pixels[:4, :, 3] = 0.0  # transparent rows do not count
    pixels[:4, :, :3] = (0, 0, 1)
    out = enhance.white_balance(Image(pixels), gray_world=True)
    means = _linear(out.rgb[4:]).reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(means, means.mean(), rtol=1e-4)


def test_manual_temperature_and_tint() -> None:
    img = _image(low=0.2, high=0.5)
    warm = enhance.white_balance(img, temperature=1.0, tint=0.5)
    ratio = _linear(warm.rgb) / _linear(img.rgb)
    np.testing.assert_allclose(ratio[..., 0], 2**0.5, rtol=1e-4)
    np.testing.assert_allclose(ratio[..., 1], 2**-0.25, rtol=1e-4)
    np.testing.assert_allclose(ratio[..., 2], 2**-0.5, rtol=1e-4)


def test_white_balance_errors() -> None:
    with pytest.raises(OpError, match="'gray_world': the image is fully transparent"):
        enhance.white_balance(Image.solid(4, 4, (0.5, 0.5, 0.5, 0.0)), gray_world=True)
    with pytest.raises(OpError, match=r"'gray_world': channel means \[.*\] include 0"):
        enhance.white_balance(Image.solid(4, 4, (0.5, 0.0, 0.5, 1.0)), gray_world=True)


def test_curves_identity_monotone_and_through_points() -> None:
    img = _image()
    np.testing.assert_allclose(enhance.curves(img).pixels, img.pixels, atol=1e-6)
    ramp = Image.from_array(np.linspace(0, 1, 256, dtype=np.float32)[None, :].repeat(3, 0))
    points = [(0.0, 0.0), (0.3, 0.6), (0.7, 0.65), (1.0, 1.0)]
    out = enhance.curves(ramp, points=points).rgb[0, :, 0]
    assert np.all(np.diff(out) >= -1e-7)  # monotone: no tone reversal despite the flat middle
    assert out.max() <= 1.0
    for x, y in points:
        assert np.interp(x, np.linspace(0, 1, 256), out) == pytest.approx(y, abs=2e-3)
    red_only = enhance.curves(img, points=[(0, 1), (1, 0)], channel="red")
    np.testing.assert_allclose(red_only.rgb[..., 0], 1 - img.rgb[..., 0], atol=1e-5)
    np.testing.assert_array_equal(red_only.rgb[..., 1:], img.rgb[..., 1:])


def test_curves_errors() -> None:
    with pytest.raises(OpError, match=r"'points': inputs \[0.0, 0.5, 0.5\] must be strictly increasing"):
        enhance.curves(_image(), points=[(0, 0), (0.5, 0.2), (0.5, 1)])
    params = REGISTRY["enhance.curves"].params_model
    with pytest.raises(pydantic.ValidationError, match="at least 2 items"):
        params(points=[(0, 0)])
    with pytest.raises(pydantic.ValidationError, match="less than or equal to 1"):
        params(points=[(0, 0), (1, 1.2)])


# ---------------------------------------------------------------- LUTs


def _cube(tmp_path: Path, table: np.ndarray, name: str = "lut.cube") -> str:
    path = tmp_path / name
    enhance.write_cube(path, table)
    return str(path)


@pytest.mark.parametrize("size", [2, 17, 33])
def test_identity_lut_round_trips(tmp_path: Path, size: int) -> None:
    img = _image(size=(40, 50))
    out = enhance.lut(img, path=_cube(tmp_path, enhance.identity_table(size)))
    assert np.abs(out.rgb - img.rgb).max() < 1e-5  # far inside the 1/255 acceptance bound


def _trilinear_reference(table: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Textbook trilinear interpolation, one color at a time (table[b, g, r])."""
    n = table.shape[0]
    out = np.empty(rgb.shape, np.float64)
    for idx in np.ndindex(rgb.shape[:-1]):
        p = rgb[idx] * (n - 1)
        i0 = np.minimum(np.floor(p).astype(int), n - 2)
        f = p - i0
        acc = np.zeros(3)
        for dr in (0, 1):
            for dg in (0, 1):
                for db in (0, 1):
                    w = (f[0] if dr else 1 - f[0]) * (f[1] if dg else 1 - f[1]) * (f[2] if db else 1 - f[2])
                    acc += w * table[i0[2] + db, i0[1] + dg, i0[0] + dr]
        out[idx] = acc
    return out


def _lookup(lut: enhance.CubeLUT, rgb: np.ndarray) -> np.ndarray:
    rgba = np.concatenate([rgb, np.full(rgb.shape[:-1] + (1,), 0.5, np.float32)], axis=-1)
    out = enhance.apply_lut(rgba, lut)
    np.testing.assert_array_equal(out[..., 3], 0.5)  # alpha passes through
    return out[..., :3]


def test_trilinear_at_grid_points_midpoints_and_anywhere(tmp_path: Path) -> None:
    n = 5
    table = np.random.default_rng(3).random((n, n, n, 3)).astype(np.float32)
    lut = enhance.read_cube(_cube(tmp_path, table))
    np.testing.assert_allclose(lut.table, table, atol=1e-6)  # written with 6 decimals
    grid = enhance.identity_table(n)  # grid[b, g, r] = (r, g, b): LUT lookup there = the table entry
    np.testing.assert_allclose(_lookup(lut, grid.reshape(n * n, n, 3)), lut.table.reshape(n * n, n, 3),
                               atol=1e-5)
    mid = (grid[:-1, :-1, :-1] + 0.5 / (n - 1)).reshape(-1, 1, 3)  # cell centers: mean of 8 corners
    t = lut.table
    corners = [t[b:b + n - 1, g:g + n - 1, r:r + n - 1] for b in (0, 1) for g in (0, 1) for r in (0, 1)]
    np.testing.assert_allclose(_lookup(lut, mid), np.mean(corners, axis=0).reshape(-1, 1, 3), atol=1e-5)
    anywhere = np.random.default_rng(4).random((30, 1, 3)).astype(np.float32)
    np.testing.assert_allclose(_lookup(lut, anywhere), _trilinear_reference(lut.table, anywhere), atol=1e-5)


def test_lut_domain_and_strength(tmp_path: Path) -> None:
    path = tmp_path / "domain.cube"
    path.write_text("LUT_3D_SIZE 2\nDOMAIN_MIN 0 0 0\nDOMAIN_MAX 2 2 2\n"
                    + "\n".join(" ".join(map(str, row)) for row in enhance.identity_table(2).reshape(-1, 3)))
    img = _image(low=0.2, high=0.8)
    np.testing.assert_allclose(enhance.lut(img, path=str(path)).rgb, img.rgb / 2, atol=1e-5)
    half = enhance.lut(img, path=str(path), strength=0.5).rgb
    np.testing.assert_allclose(half, img.rgb * 0.75, atol=1e-5)


def test_shipped_luts_parse_and_change_color() -> None:
    img = _image()
    for name in ("film_warm", "teal_orange"):
        lut = enhance.read_cube(enhance.shipped_lut(name))
        assert lut.size == 33 and lut.table.min() >= 0 and lut.table.max() <= 1
        assert np.abs(enhance.lut(img, path=str(enhance.shipped_lut(name))).rgb - img.rgb).mean() > 0.01
    with pytest.raises(OpError, match="no shipped LUT 'sepia'; available: film_warm, teal_orange"):
        enhance.shipped_lut("sepia")
    assert REGISTRY["enhance.lut"].file_params == ("path",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("TITLE x\n0 0 0\n", "no LUT_3D_SIZE line"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 7, "LUT_3D_SIZE 2 needs 8 data rows, found 7"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 3 + "0 0.5 oops\n" + "0 0 0\n" * 4,
         "line 5: data row must be 3 numbers, got '0 0.5 oops'"),
        ("LUT_3D_SIZE 2\n" + "0 0\n" * 8, "line 2: data row must be 3 finite numbers, got '0 0'"),
        ("LUT_3D_SIZE 300\n", "line 1: LUT_3D_SIZE must be an integer in 2..256, got '300'"),
        ("LUT_1D_SIZE 16\n", "1D LUTs are not supported"),
        ("LUT_3D_SIZE 2\nDOMAIN_MAX 0 1 1\n" + "0 0 0\n" * 8, "DOMAIN_MAX must exceed DOMAIN_MIN"),
        ("LUT_3D_SIZE 2\n" + "0 0 0\n" * 8 + "TITLE late\n", "line 10: keyword 'TITLE' after the data rows"),
    ],
)
def test_corrupt_cube_files_are_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.cube"
    path.write_text(text)
    with pytest.raises(MediaError, match=message):
        enhance.lut(_image(), path=str(path))


def test_cube_comments_and_blank_lines_are_allowed(tmp_path: Path) -> None:
    rows = [" ".join(map(str, row)) for row in enhance.identity_table(2).reshape(-1, 3)]
    path = tmp_path / "commented.cube"
    path.write_text("# made by hand\nTITLE \"id\"\n\nLUT_3D_SIZE 2\n" + rows[0] + "  # black\n\n"
                    + "\n".join(rows[1:]) + "\n")
    lut = enhance.read_cube(path)
    assert lut.title == "id"
    np.testing.assert_allclose(lut.table, enhance.identity_table(2))


def test_unreadable_cube_file(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match="cannot read LUT .*missing.cube"):
        enhance.read_cube(tmp_path / "missing.cube")
    (tmp_path / "binary.cube").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(MediaError, match="cannot read LUT"):
        enhance.read_cube(tmp_path / "binary.cube")


# ---------------------------------------------------------------- detail


def test_unsharp_mask_leaves_flat_image_and_boosts_edges() -> None:
    flat = Image.solid(16, 16, (0.3, 0.5, 0.7, 1.0))
    np.testing.assert_allclose(enhance.sharpen(flat, amount=3).pixels, flat.pixels, atol=1e-6)
    step = np.full((16, 16, 3), 0.3, np.float32)
    step[:, 8:] = 0.7
    out = enhance.sharpen(Image.from_array(step), amount=1, sigma_px=1.5).rgb
    assert out[0, 7, 0] < 0.3 and out[0, 8, 0] > 0.7  # overshoot on both sides of the edge
    quiet = enhance.sharpen(Image.from_array(step), amount=1, sigma_px=1.5, threshold=0.5).rgb
    np.testing.assert_array_equal(quiet, step)  # the edge detail is below the threshold


def test_denoise_reduces_noise() -> None:
    y, x = np.mgrid[0:64, 0:64] / 63.0
    clean = np.stack([0.3 + 0.4 * x, 0.5 + 0.2 * y, np.full_like(x, 0.4)], axis=2).astype(np.float32)
    noisy = np.clip(clean + np.random.default_rng(5).normal(0, 0.05, clean.shape), 0, 1).astype(np.float32)
    out = enhance.denoise(Image.from_array(noisy), strength=0.06, color_strength=0.06).rgb
    before, after = np.std(noisy - clean), np.std(out - clean)
    assert after < 0.5 * before
    with pytest.raises(OpError, match="'patch_px': must be odd, got 6"):
        enhance.denoise(Image.from_array(noisy), patch_px=6)


def test_upscale_lanczos() -> None:
    flat = Image.solid(10, 6, (0.2, 0.4, 0.6, 1.0))
    out = enhance.upscale_lanczos(flat, factor=3)
    assert out.size == (30, 18)
    np.testing.assert_allclose(out.pixels, np.broadcast_to((0.2, 0.4, 0.6, 1.0), (18, 30, 4)), atol=1e-5)
    with pytest.raises(OpError, match="'factor': result would be 32776×8, over the 32768 px limit"):
        enhance.upscale_lanczos(Image.solid(4097, 1, (0, 0, 0, 1)), factor=8)
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 2"):
        REGISTRY["enhance.upscale_lanczos"].params_model(factor=1)
