"""Enhance layer: tone and color correction, 3D LUTs, sharpening, denoising, upscaling (Lanczos and learned).

All ops change color only and keep alpha. Adjustments that model light (exposure, white
balance) work in linear light (IEC 61966-2-1 sRGB transfer function); the others work on
the sRGB-encoded values, as photo editors do. Results are clipped to [0, 1] at the end, so
pushed highlights clip as they would in any 8- or 16-bit file.
"""

from __future__ import annotations

import functools

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Callable, Literal

import cv2
import numpy as np
from pydantic import Field

from strata.errors import MediaError, ModelError, OpError
from strata.media.image import Image
from strata.ops.edit import MAX_SIDE, gaussian_blur, join_alpha, resample, split_rgb
from strata.parallel import in_strips, in_strips_into
from strata.workflow.node import InputFile, node

Factor = Annotated[float, Field(ge=0, le=4, description="1 = unchanged, 0 = none, >1 = more")]
Unit = Annotated[float, Field(ge=0, le=1)]
LUTS_DIR = Path(__file__).resolve().parent.parent / "assets" / "luts"

# ---------------------------------------------------------------- helpers


def srgb_to_linear(c: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light (IEC 61966-2-1)."""
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear light → sRGB-encoded values (inverse of :func:`srgb_to_linear`); negatives map to 0."""
    c = np.maximum(c, 0.0)
    return np.where(c <= 0.0031308, c * 12.92, 1.055 * c ** (1.0 / 2.4) - 0.055).astype(np.float32)


def _adjust_rgb(image: Image, adjust: Callable[[np.ndarray], np.ndarray], *, pointwise: bool = True) -> Image:
    """A new image whose color is ``adjust(rgb)`` clipped to [0, 1]; alpha unchanged.

    ``adjust`` gets a contiguous (H, W, 3) float32 copy it may modify in place. Pointwise
    adjustments (each output pixel depends only on the same input pixel) run in strips.
    """

    def run(pixels: np.ndarray) -> np.ndarray:
        rgb = adjust(split_rgb(pixels))
        return join_alpha(np.clip(rgb, 0.0, 1.0, out=rgb), pixels[:, :, 3])

    return Image(in_strips(run, image.pixels) if pointwise else run(image.pixels))


# ---------------------------------------------------------------- tone and color


@node("enhance.exposure", layer="enhance", version=1)
def exposure(
    image: Image,
    *,
    stops: Annotated[float, Field(ge=-10, le=10, description="exposure change in stops (+1 doubles the light)")] = 0.0,
) -> Image:
    """Scale linear light by ``2**stops``, like opening the aperture.

    Args:
        stops: [-10, 10] (default 0); +1 doubles, −1 halves the light. Highlights pushed above
            white clip.
    """
    gain = np.float32(2.0**stops)
    return _adjust_rgb(image, lambda rgb: linear_to_srgb(srgb_to_linear(rgb) * gain))


@node("enhance.contrast", layer="enhance", version=1)
def contrast(image: Image, *, factor: Factor = 1.0) -> Image:
    """Stretch (>1) or flatten (<1) values about mid-gray 0.5: ``(c − 0.5)·factor + 0.5``.

    Args:
        factor: [0, 4] (default 1 = unchanged; 0 = flat gray).
    """
    return _adjust_rgb(image, lambda rgb: (rgb - 0.5) * np.float32(factor) + 0.5)


_LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)  # Rec. 709 weights


@node("enhance.saturation", layer="enhance", version=1)
def saturation(image: Image, *, factor: Factor = 1.0) -> Image:
    """Scale colorfulness: mix each pixel with its gray (Rec. 709 luma of the sRGB values).

    Args:
        factor: [0, 4] (default 1 = unchanged; 0 = grayscale; 2 = twice as saturated).
    """

    def adjust(rgb: np.ndarray) -> np.ndarray:
        gray = (rgb @ _LUMA)[:, :, None]
        return gray + (rgb - gray) * np.float32(factor)

    return _adjust_rgb(image, adjust)


@node("enhance.white_balance", layer="enhance", version=1)
def white_balance(
    image: Image,
    *,
    gray_world: Annotated[bool, Field(description="first neutralize the average color (gray-world)")] = False,
    temperature: Annotated[float, Field(ge=-2, le=2, description="warm (+) / cool (−), stops of red vs blue")] = 0.0,
    tint: Annotated[float, Field(ge=-2, le=2, description="magenta (+) / green (−), stops of green")] = 0.0,
) -> Image:
    """Correct the color cast with per-channel gains in linear light.

    Args:
        gray_world: if True, first scale the channels so their alpha-weighted means are
            equal (the gray-world assumption: a scene averages to gray) (default False).
        temperature: then multiply red by 2**(t/2) and blue by 2**(−t/2), [-2, 2]
            (default 0).
        tint: then multiply green by 2**(−tint/2), [-2, 2] (default 0).
    """
    gains = np.array([2.0 ** (temperature / 2), 2.0 ** (-tint / 2), 2.0 ** (-temperature / 2)])
    if gray_world:
        linear = srgb_to_linear(split_rgb(image.pixels))
        weight = image.alpha
        if weight.sum() <= 0:
            raise OpError("the image is fully transparent, so it has no average color", param="gray_world")
        means = np.einsum("hwc,hw->c", linear, weight, dtype=np.float64) / weight.sum(dtype=np.float64)
        if means.min() <= 0:
            raise OpError(f"channel means {np.round(means, 4).tolist()} include 0; gray-world needs "
                          "some of every channel", param="gray_world")
        gains *= means.mean() / means
    gains = gains.astype(np.float32)
    return _adjust_rgb(image, lambda rgb: linear_to_srgb(srgb_to_linear(rgb) * gains))


_CURVE_SAMPLES = 4096  # the curve is tabulated, then interpolated linearly: error < 1e-6


@node("enhance.curves", layer="enhance", version=1)
def curves(
    image: Image,
    *,
    points: Annotated[
        list[tuple[Unit, Unit]],
        Field(min_length=2, max_length=64, description="[input, output] pairs in [0, 1], inputs increasing"),
    ] = [(0.0, 0.0), (1.0, 1.0)],  # noqa: B006 - pydantic copies defaults
    channel: Annotated[Literal["rgb", "red", "green", "blue"], Field(description="which channels to map")] = "rgb",
) -> Image:
    """Map values through a smooth curve through ``points`` (monotone cubic, PCHIP).

    PCHIP never overshoots between points, so a rising set of points gives a rising curve
    (no tone reversals). Inputs below the first point map to its output, above the last
    to the last output.

    Args:
        points: 2..64 ``[input, output]`` pairs in [0, 1] with strictly increasing inputs
            (default identity ``[[0, 0], [1, 1]]``).
        channel: ``rgb`` (all three), ``red``, ``green`` or ``blue`` (default rgb).
    """
    from scipy.interpolate import PchipInterpolator  # scipy.interpolate takes ~0.5 s to import

    xs, ys = np.asarray(points, np.float64).T
    if np.any(np.diff(xs) <= 0):
        raise OpError(f"inputs {xs.tolist()} must be strictly increasing", param="points")
    grid = np.linspace(0.0, 1.0, _CURVE_SAMPLES)
    table = PchipInterpolator(xs, ys)(np.clip(grid, xs[0], xs[-1])).astype(np.float32)
    channels = [0, 1, 2] if channel == "rgb" else [["red", "green", "blue"].index(channel)]

    def adjust(rgb: np.ndarray) -> np.ndarray:
        out = rgb.copy()
        for c in channels:
            out[:, :, c] = np.interp(rgb[:, :, c], grid, table)
        return out

    return _adjust_rgb(image, adjust)


# ---------------------------------------------------------------- 3D LUTs (.cube)


@dataclass(frozen=True)
class CubeLUT:
    """A parsed 3D LUT: ``table[b, g, r]`` = output RGB (float32 (N, N, N, 3))."""

    table: np.ndarray
    domain_min: np.ndarray
    domain_max: np.ndarray
    title: str = ""

    @property
    def size(self) -> int:
        return int(self.table.shape[0])

    @functools.cached_property
    def texture(self) -> np.ndarray:
        """The table as :func:`apply_lut`'s ``remap`` reads it: the blue slices stacked into
        one (N·N, N) 4-lane image (row b·N + g, column r; 4th lane unused). Built once per
        LUT (not per strip), read-only."""
        n = self.size
        texture = np.zeros((n * n, n, 4), np.float32)
        texture[:, :, :3] = self.table.reshape(n * n, n, 3)
        texture.setflags(write=False)
        return texture


def read_cube(path: str | Path) -> CubeLUT:
    """Parse an Adobe/Resolve ``.cube`` 3D LUT (keywords first, then rows with red varying fastest).

    Raises MediaError saying which line is wrong and why.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"cannot read LUT {path}: {exc}") from exc
    header: dict[str, Any] = {"TITLE": "", "LUT_3D_SIZE": None, "DOMAIN_MIN": np.zeros(3), "DOMAIN_MAX": np.ones(3)}
    # Walk the keyword lines only; the (large) data block is handed to numpy in one piece.
    start, number = 0, 1
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line = text[start:end].split("#", 1)[0].strip()
        if line and not line[0].isalpha():
            break
        if line:
            _read_keyword(line, f"{path}, line {number}", header)
        start, number = end + 1, number + 1
    size = header["LUT_3D_SIZE"]
    if size is None:
        raise MediaError(f"{path}: no LUT_3D_SIZE line; is this a .cube 3D LUT?")
    if np.any(header["DOMAIN_MAX"] <= header["DOMAIN_MIN"]):
        raise MediaError(f"{path}: DOMAIN_MAX must exceed DOMAIN_MIN in every channel")
    table = _read_rows(text[start:], number, size, path).astype(np.float32).reshape(size, size, size, 3)
    return CubeLUT(table, header["DOMAIN_MIN"].astype(np.float32), header["DOMAIN_MAX"].astype(np.float32),
                   header["TITLE"])


def _read_keyword(line: str, where: str, header: dict[str, Any]) -> None:
    key, _, rest = line.partition(" ")
    if key == "TITLE":
        header["TITLE"] = rest.strip().strip('"')
    elif key == "LUT_1D_SIZE":
        raise MediaError(f"{where}: 1D LUTs are not supported; use a 3D LUT (LUT_3D_SIZE)")
    elif key == "LUT_3D_SIZE":
        if not rest.strip().isdigit() or not 2 <= int(rest) <= 256:
            raise MediaError(f"{where}: LUT_3D_SIZE must be an integer in 2..256, got {rest.strip()!r}")
        header["LUT_3D_SIZE"] = int(rest)
    elif key in ("DOMAIN_MIN", "DOMAIN_MAX"):
        header[key] = _numbers(rest.split(), where, key)
    # other keywords (e.g. LUT_3D_INPUT_RANGE from some tools) do not affect the table


def _numbers(fields: list[str], where: str, what: str) -> np.ndarray:
    try:
        values = np.array([float(f) for f in fields])
    except ValueError:
        raise MediaError(f"{where}: {what} must be 3 numbers, got {' '.join(fields)!r}") from None
    if values.shape != (3,) or not np.all(np.isfinite(values)):
        raise MediaError(f"{where}: {what} must be 3 finite numbers, got {' '.join(fields)!r}")
    return values


def _read_rows(data: str, first_number: int, size: int, path: str | Path) -> np.ndarray:
    """The size³ data rows (``data`` starts at line ``first_number``) as a flat float64 array."""
    try:  # fast path: numpy parses a clean data block at once
        values = np.fromstring(data, dtype=np.float64, sep=" ")
        if values.size == 3 * size**3 and np.all(np.isfinite(values)):
            return values
    except ValueError:
        pass
    # Slow path (comments between rows, or an error): read row by row and name the bad line.
    rows = []
    for number, raw in enumerate(data.splitlines(), start=first_number):
        line = raw.split("#", 1)[0].strip()
        where = f"{path}, line {number}"
        if line and line[0].isalpha():
            raise MediaError(f"{where}: keyword {line.split()[0]!r} after the data rows; keywords come first")
        if line:
            rows.append(_numbers(line.split(), where, "data row"))
    if len(rows) != size**3:
        raise MediaError(f"{path}: LUT_3D_SIZE {size} needs {size**3} data rows, found {len(rows)} "
                         "(truncated or corrupt file?)")
    return np.concatenate(rows)


def write_cube(path: str | Path, table: np.ndarray, title: str = "") -> None:
    """Write ``table[b, g, r]`` (float (N, N, N, 3)) as a ``.cube`` file with domain [0, 1]."""
    n = table.shape[0]
    lines = ([f'TITLE "{title}"'] if title else []) + [f"LUT_3D_SIZE {n}"]
    lines += [f"{r:.6f} {g:.6f} {b:.6f}" for r, g, b in np.asarray(table, np.float64).reshape(-1, 3)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")


def identity_table(size: int) -> np.ndarray:
    """The (size, size, size, 3) table that maps every color to itself."""
    g = np.linspace(0.0, 1.0, size, dtype=np.float32)
    b, gg, r = np.meshgrid(g, g, g, indexing="ij")
    return np.stack([r, gg, b], axis=-1)


def apply_lut(pixels: np.ndarray, lut: CubeLUT, out: np.ndarray | None = None) -> np.ndarray:
    """Trilinear interpolation of ``lut`` at every color of RGBA ``pixels`` (float32 (H, W, 4));
    returns an RGBA array with the same alpha: ``out`` if given (same shape), else a new one.

    Trilinear = bilinear in (r, g) on the two blue slices around each color, then linear in
    blue. The table's blue slices are stacked into one (N·N, N) texture, so OpenCV's
    multithreaded ``remap`` does the bilinear lookups (about 15× faster than gathering the 8
    corners with numpy); the blue interpolation is done here. Everything runs on 4 channels,
    for which OpenCV has SIMD paths (3-channel remap is ~1.6× slower).
    """
    n, texture = lut.size, lut.texture
    scale = (n - 1) / (lut.domain_max - lut.domain_min)

    def grid_coordinate(channel: int) -> np.ndarray:
        plane = cv2.extractChannel(pixels, channel)
        plane -= lut.domain_min[channel]
        plane *= scale[channel]
        # Colors outside the LUT's domain take the value at its edge (standard LUT behaviour).
        return np.clip(plane, 0.0, n - 1, out=plane)

    map_x, map_y, blue = (grid_coordinate(c) for c in range(3))
    slice0 = np.minimum(np.floor(blue), n - 2)
    blue -= slice0  # now the fraction between the two slices
    slice0 *= n
    map_y += slice0
    lower = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    map_y += n
    upper = cv2.remap(texture, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    upper -= lower
    upper *= cv2.merge([blue] * 4)
    out = np.add(upper, lower, out=out)
    out[:, :, 3] = pixels[:, :, 3]
    return out


def _file_stamp(path: str) -> tuple[int, int]:
    try:
        st = Path(path).stat()
    except OSError as exc:
        raise MediaError(f"cannot read LUT {path}: {exc.strerror}") from exc
    return st.st_mtime_ns, st.st_size


@functools.lru_cache(maxsize=8)
def _read_cube_cached(path: str, mtime_ns: int, size: int) -> CubeLUT:
    """:func:`read_cube`, parsed once per file version (iterating on a grade rereads nothing)."""
    lut = read_cube(path)
    lut.table.setflags(write=False)  # shared between calls: nobody may change it
    return lut


@node("enhance.lut", layer="enhance", version=1)
def lut(
    image: Image,
    *,
    path: Annotated[InputFile, Field(description=".cube 3D LUT file")],
    strength: Annotated[float, Field(ge=0, le=1, description="mix of graded and original (1 = full grade)")] = 1.0,
) -> Image:
    """Color-grade with a 3D LUT from a ``.cube`` file (trilinear interpolation).

    Shipped grades live in ``strata/assets/luts/`` (``film_warm.cube``, ``teal_orange.cube``).

    Args:
        path: the ``.cube`` file (3D, size 2..256).
        strength: [0, 1] (default 1); 0.5 mixes the graded and original colors half and half.
    """
    table = _read_cube_cached(path, *_file_stamp(path))

    def grade(out: np.ndarray, pixels: np.ndarray) -> None:
        graded = apply_lut(pixels, table, out)
        if strength < 1.0:
            graded -= pixels
            graded *= np.float32(strength)
            graded += pixels
        np.clip(graded, 0.0, 1.0, out=graded)

    return Image(in_strips_into(grade, np.empty_like(image.pixels), image.pixels))


# ---------------------------------------------------------------- detail


@node("enhance.sharpen", layer="enhance", version=1)
def sharpen(
    image: Image,
    *,
    amount: Annotated[float, Field(ge=0, le=5, description="strength; 1 adds the detail once more")] = 1.0,
    sigma_px: Annotated[float, Field(gt=0, le=50, description="blur standard deviation: size of detail, px")] = 1.5,
    threshold: Annotated[float, Field(ge=0, le=1, description="ignore detail below this (keeps noise down)")] = 0.0,
) -> Image:
    """Unsharp mask: ``c + amount·(c − blur(c))`` where ``|c − blur(c)| ≥ threshold``.

    Args:
        amount: [0, 5] (default 1).
        sigma_px: Gaussian standard deviation in px, (0, 50] (default 1.5).
        threshold: minimum local contrast that is sharpened, [0, 1] (default 0).
    """

    def adjust(rgb: np.ndarray) -> np.ndarray:
        detail = rgb - gaussian_blur(rgb, sigma_px)
        if threshold > 0:
            detail *= np.abs(detail) >= threshold
        return rgb + detail * np.float32(amount)

    return _adjust_rgb(image, adjust, pointwise=False)


@node("enhance.denoise", layer="enhance", version=1)
def denoise(
    image: Image,
    *,
    strength: Annotated[float, Field(ge=0, le=1, description="luminance filter strength (OpenCV h / 255)")] = 0.04,
    color_strength: Annotated[float, Field(ge=0, le=1, description="chroma filter strength (hColor / 255)")] = 0.04,
    patch_px: Annotated[int, Field(ge=3, le=21, description="side of the compared patches, px (odd)")] = 7,
    search_px: Annotated[int, Field(ge=5, le=63, description="side of the search window, px (odd)")] = 21,
) -> Image:
    """Non-local-means denoising (OpenCV ``fastNlMeansDenoisingColored``).

    OpenCV's implementation takes 8-bit data, so color is quantized to 1/255 for the filter;
    that is below the noise it removes, and it runs one to two orders of magnitude faster
    than scikit-image's float implementation.

    Args:
        strength: luminance strength, [0, 1] (default 0.04 ≈ OpenCV h=10); raise it for
            stronger noise (about 1–1.5× the noise standard deviation).
        color_strength: chroma strength, [0, 1] (default 0.04).
        patch_px: patch side, odd, [3, 21] (default 7).
        search_px: search window side, odd, [5, 63] (default 21); time grows with its square.
    """
    for name, value in (("patch_px", patch_px), ("search_px", search_px)):
        if value % 2 == 0:
            raise OpError(f"must be odd, got {value}", param=name)

    def adjust(rgb: np.ndarray) -> np.ndarray:
        bgr8 = cv2.convertScaleAbs(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), alpha=255.0)  # rounds to nearest
        clean = cv2.fastNlMeansDenoisingColored(bgr8, None, strength * 255.0, color_strength * 255.0,
                                                patch_px, search_px)
        return cv2.cvtColor(clean, cv2.COLOR_BGR2RGB).astype(np.float32) * np.float32(1.0 / 255.0)

    return _adjust_rgb(image, adjust, pointwise=False)


@node("enhance.upscale_lanczos", layer="enhance", version=1)
def upscale_lanczos(
    image: Image,
    *,
    factor: Annotated[int, Field(ge=2, le=8, description="size multiplier")] = 4,
) -> Image:
    """Enlarge by an integer ``factor`` with Lanczos resampling (the classical baseline that
    learned super-resolution is measured against).

    Args:
        factor: [2, 8] (default 4).
    """
    size = (image.width * factor, image.height * factor)
    if max(size) > MAX_SIDE:
        raise OpError(f"result would be {size[0]}×{size[1]}, over the {MAX_SIDE} px limit; use a smaller factor",
                      param="factor")
    return Image(resample(image.pixels, size, "lanczos"))


# Largest learned-upscale result: 8192² float32 RGBA is 1 GiB, the whole result is held in memory.
MAX_UPSCALE_PIXELS = 8192 * 8192


@node("image.upscale", layer="enhance", version=1, model="upscale")
def upscale(
    image: Image,
    *,
    scale: Annotated[Literal[2, 4], Field(description="size multiplier: 2 or 4")] = 4,
    tile_px: Annotated[int, Field(ge=48, le=2048, description="tile side in input px (memory grows with its square)")] = 256,
    overlap_px: Annotated[int, Field(ge=0, le=256, description="context around each tile, input px (≤ tile_px / 2)")] = 24,
    model: Annotated[str | None, Field(description="registered upscale model id (default: strata's own)")] = None,
    loaded_model: Any = None,
) -> Image:
    """Enlarge ×2 or ×4 with the learned upscaler (capability "upscale"), alpha included.

    The image is processed in tiles of ``tile_px`` with ``overlap_px`` of context on each side;
    neighbouring tiles cross-fade over ``overlap_px / 2``, so there are no seams and memory does
    not grow with the image (only the result does).

    Args:
        scale: 2 or 4 (default 4).
        tile_px: [48, 2048] (default 256).
        overlap_px: [0, 256], at most ``tile_px / 2`` (default 24: each side of the 12 px
            cross-fade keeps 12 px of context, the built-in model's receptive radius, so the
            result equals an untiled run; see :func:`strata.models.upscale.tiled`).
        model: id of a registered upscale model (default: the first installed, strata's own).
    """
    if scale not in (2, 4):  # the engine validates params; direct Python calls land here
        raise OpError(f"scale must be 2 or 4, got {scale!r}", param="scale")
    if 2 * overlap_px > tile_px:
        raise OpError(f"overlap_px {overlap_px} is more than half of tile_px {tile_px}; lower it or raise tile_px",
                      param="overlap_px")
    width, height = image.width * scale, image.height * scale
    if max(width, height) > MAX_SIDE or width * height > MAX_UPSCALE_PIXELS:
        raise OpError(f"result would be {width}×{height}, over the output limit ({MAX_SIDE} px a side, "
                      f"{MAX_UPSCALE_PIXELS / 1e6:.0f} Mpx); crop the image or use a smaller scale", param="scale")
    if loaded_model is None:
        raise OpError("no upscale model was loaded: run this op through a workflow (the engine loads the "
                      "registered model) or pass loaded_model=; if none is installed, train and export one with "
                      "`strata train upscale` then `strata train upscale --export`", param="model")
    try:
        return Image(loaded_model.upscale(image.pixels, scale, tile=tile_px, overlap=overlap_px))
    except ModelError as exc:
        raise OpError(str(exc), param="model") from exc


def shipped_lut(name: str) -> Path:
    """Path of a LUT shipped in ``strata/assets/luts`` (e.g. ``"film_warm"``)."""
    path = LUTS_DIR / f"{name}.cube"
    if not path.is_file():
        available = ", ".join(sorted(p.stem for p in LUTS_DIR.glob("*.cube")))
        raise OpError(f"no shipped LUT {name!r}; available: {available}", param="path")
    return path

