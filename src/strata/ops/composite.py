"""Composite layer: blend modes, a layer stack, text layers, drop shadows.

Blending follows W3C "Compositing and Blending Level 1" (https://www.w3.org/TR/compositing-1/).
Notation (spec §5, §9): ``cb``/``ab`` backdrop (base) color/alpha, ``cs``/``as`` source (top)
color/alpha, all straight (non-premultiplied) in [0, 1]; ``B(cb, cs)`` a separable blend
function (§10). The source color is first mixed with the blend result where the backdrop
exists (§5.8, "general formula")::

    cs' = (1 - ab)·cs + ab·B(cb, cs)

then composited with Porter-Duff source-over (§9.1.4) in premultiplied form::

    co = cs'·as + cb·ab·(1 - as)        ao = as + ab·(1 - as)

and finally un-premultiplied (``co / ao``). ``as`` here already includes the layer's opacity
and mask. ``add`` is not among the spec's separable modes; strata defines it as linear
dodge, ``B = min(1, cb + cs)``, run through the same formulas.
"""

from __future__ import annotations

from typing import Annotated, Callable, Literal

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field

from strata.errors import OpError
from strata.media.image import Image, Mask
from strata.ops.edit import (
    MAX_SIDE,
    Color,
    Coordinate,
    gaussian_blur,
    parse_color,
    place,
    require_same_size,
    resample,
    rotation_matrix,
    unpremultiply,
    warp_affine,
)
from strata.parallel import in_strips_into
from strata.workflow.node import InputFile, node

BlendMode = Literal[
    "normal", "multiply", "screen", "overlay", "darken", "lighten", "color-dodge", "color-burn",
    "hard-light", "soft-light", "difference", "exclusion", "add",
]
Opacity = Annotated[float, Field(ge=0, le=1, description="0 = invisible, 1 = fully applied")]

# ---------------------------------------------------------------- separable blend functions (§10)


def _multiply(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    return cv2.multiply(cb, cs)  # OpenCV's elementwise ops are vectorized and multithreaded


def _screen(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    return cb + cs - cb * cs


def _hard_light(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    return np.where(cs <= 0.5, _multiply(cb, 2.0 * cs), _screen(cb, 2.0 * cs - 1.0))


def _color_dodge(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.minimum(1.0, cb / (1.0 - cs))
    return np.where(cb == 0, 0.0, np.where(cs == 1, 1.0, ratio)).astype(np.float32)


def _color_burn(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 1.0 - np.minimum(1.0, (1.0 - cb) / cs)
    return np.where(cb == 1, 1.0, np.where(cs == 0, 0.0, ratio)).astype(np.float32)


def _soft_light(cb: np.ndarray, cs: np.ndarray) -> np.ndarray:
    d = np.where(cb <= 0.25, ((16.0 * cb - 12.0) * cb + 4.0) * cb, np.sqrt(cb))
    return np.where(cs <= 0.5, cb - (1.0 - 2.0 * cs) * cb * (1.0 - cb), cb + (2.0 * cs - 1.0) * (d - cb))


BLEND_FUNCTIONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "normal": lambda cb, cs: cs,
    "multiply": _multiply,
    "screen": _screen,
    "overlay": lambda cb, cs: _hard_light(cs, cb),
    "darken": cv2.min,
    "lighten": cv2.max,
    "color-dodge": _color_dodge,
    "color-burn": _color_burn,
    "hard-light": _hard_light,
    "soft-light": _soft_light,
    "difference": cv2.absdiff,
    "exclusion": lambda cb, cs: cb + cs - 2.0 * cb * cs,
    "add": lambda cb, cs: np.minimum(cb + cs, 1.0),
}


# Modes whose blend function OpenCV computes straight into an output array.
_BLEND_INTO: dict[str, Callable[..., np.ndarray]] = {
    "multiply": cv2.multiply, "darken": cv2.min, "lighten": cv2.max, "difference": cv2.absdiff,
}


def composite_over(base: np.ndarray, top: np.ndarray, mode: str, coverage: np.ndarray | float = 1.0) -> np.ndarray:
    """Blend straight RGBA ``top`` onto ``base`` (same shape) with ``mode``; returns straight RGBA.

    ``coverage`` (scalar or (H, W)) scales the top's alpha: opacity times mask.
    """
    if mode not in BLEND_FUNCTIONS:
        raise OpError(f"unknown blend mode {mode!r}; choose one of {', '.join(BLEND_FUNCTIONS)}", param="mode")
    out = np.empty(base.shape, np.float32)
    return in_strips_into(_composite_strip, out, base, top, mode, np.asarray(coverage, np.float32))


def _composite_strip(out: np.ndarray, base: np.ndarray, top: np.ndarray, mode: str, cover: np.ndarray) -> None:
    # The blend function runs on whole contiguous RGBA arrays (several times faster in numpy
    # than on strided RGB views), written into ``out``; its alpha lane is replaced below.
    if mode in _BLEND_INTO:
        _BLEND_INTO[mode](base, top, dst=out)
    else:
        np.copyto(out, BLEND_FUNCTIONS[mode](base, top))
    if mode == "multiply" and cover.min() >= 1.0 and out[:, :, 3].min() >= 1.0:
        # B's alpha lane holds ab·as, which (alphas lie in [0, 1]) is 1 exactly where both are
        # 1: one look at it replaces reading both alphas, and it already is the result's alpha.
        return
    opaque_base = base[:, :, 3].min() >= 1.0
    if opaque_base and cover.min() >= 1.0 and top[:, :, 3].min() >= 1.0:
        out[:, :, 3] = 1.0  # everything opaque: the result is B
        return
    a_s = top[:, :, 3:4] * (cover[:, :, None] if cover.ndim == 2 else cover)
    if opaque_base:
        # Opaque backdrop (the common case): cs' = B and ao = 1, so co = cb + (B − cb)·as.
        out -= base
        out *= a_s
        out += base
        out[:, :, 3] = 1.0
        return
    a_b = base[:, :, 3:4]
    out -= top  # cs' = cs + ab·(B − cs), the general formula
    out *= a_b
    out += top
    out *= a_s  # co = cs'·as + cb·ab·(1 − as)
    out += base * (a_b * (1.0 - a_s))
    out[:, :, 3:4] = a_s + a_b * (1.0 - a_s)  # ao
    unpremultiply(out)


def _top_coverage(opacity: float, mask: Mask | None, reference: Image, *, param: str) -> np.ndarray | float:
    if mask is None:
        return opacity
    require_same_size(mask, reference, param=param)
    return mask.values * np.float32(opacity)


@node("composite.blend", layer="composite", version=1)
def blend(
    base: Image,
    top: Image,
    mask: Mask | None = None,
    *,
    mode: Annotated[BlendMode, Field(description="W3C blend mode")] = "normal",
    opacity: Opacity = 1.0,
) -> Image:
    """Blend ``top`` onto ``base`` (same size) with a W3C blend mode and source-over alpha.

    Args:
        base: the backdrop.
        top: the source layer, same size as ``base``.
        mask: optional; where it is 0 the top is not applied (same size as ``base``).
        mode: one of the W3C separable modes plus ``add`` (see the module docstring)
            (default normal).
        opacity: multiplies the top's alpha, [0, 1] (default 1).
    """
    require_same_size(top, base, param="top")
    coverage = _top_coverage(opacity, mask, base, param="mask")
    return Image(composite_over(base.pixels, top.pixels, mode, coverage))


# ---------------------------------------------------------------- layer stack


class LayerSettings(BaseModel):
    """Placement and blending of one layer of :func:`layers`."""

    model_config = ConfigDict(extra="forbid")

    x: Coordinate = Field(0.0, description="left edge of the scaled layer on the base, px")
    y: Coordinate = Field(0.0, description="top edge of the scaled layer on the base, px")
    scale: float = Field(1.0, gt=0, le=64, description="size factor (1 = as is)")
    rotation_deg: float = Field(0.0, ge=-360, le=360, description="counter-clockwise turn about the layer center")
    opacity: float = Field(1.0, ge=0, le=1, description="0 = invisible, 1 = fully applied")
    mode: BlendMode = Field("normal", description="W3C blend mode")
    mask: int | None = Field(None, ge=0, description="index into the masks input; the mask is in layer pixels")


def _place_layer(pixels: np.ndarray, s: LayerSettings, canvas: tuple[int, int]) -> np.ndarray:
    """The layer transformed onto a transparent canvas (w, h) of the base's size."""
    h, w = pixels.shape[:2]
    if s.scale != 1.0:
        # Resize first (antialiased Lanczos), so strong shrinking does not alias.
        w, h = max(1, round(w * s.scale)), max(1, round(h * s.scale))
        pixels = resample(pixels, (w, h), "lanczos")
    if s.rotation_deg == 0 and s.x == int(s.x) and s.y == int(s.y):
        return place(pixels, (canvas[1], canvas[0]), int(s.x), int(s.y))  # exact: no resampling
    matrix = rotation_matrix(s.rotation_deg, (w / 2, h / 2), (s.x + w / 2, s.y + h / 2))
    return warp_affine(pixels, matrix, canvas, "bicubic")


@node("composite.layers", layer="composite", version=1)
def layers(
    base: Image,
    layers: list[Image],
    masks: list[Mask] | None = None,
    *,
    settings: Annotated[
        list[LayerSettings], Field(max_length=256, description="one entry per layer, bottom to top")
    ],
) -> Image:
    """Stack layers onto ``base``, bottom to top; the result has the base's size.

    Each layer is scaled (Lanczos), turned about its center, placed with its top-left at
    (x, y), and blended with its mode, opacity and optional mask.

    Args:
        base: the bottom image; fixes the output size.
        layers: images to stack, bottom first.
        masks: optional masks, referred to by index from ``settings[i].mask``; each must have
            the size of the layer it is used with (it moves with the layer).
        settings: one :class:`LayerSettings` (or dict) per layer: ``x``, ``y`` px (default 0),
            ``scale`` (0, 64] (default 1), ``rotation_deg`` [-360, 360] (default 0),
            ``opacity`` [0, 1] (default 1), ``mode`` (default normal), ``mask`` index or None.
    """
    if len(settings) != len(layers):
        raise OpError(f"got {len(layers)} layer image(s) but {len(settings)} settings entries; "
                      "give exactly one settings entry per layer", param="settings")
    masks = masks or []
    out = base.pixels
    for i, (layer, raw) in enumerate(zip(layers, settings)):
        s = LayerSettings.model_validate(raw)
        pixels = layer.pixels
        if s.mask is not None:
            if s.mask >= len(masks):
                raise OpError(f"layer {i} uses mask {s.mask} but only {len(masks)} mask(s) are connected",
                              param="settings")
            require_same_size(masks[s.mask], layer, param="masks")
            pixels = pixels.copy()
            pixels[:, :, 3] *= masks[s.mask].values
        placed = _place_layer(pixels, s, base.size)
        if not placed[:, :, 3].any() and pixels[:, :, 3].any():
            raise OpError(f"layer {i} at x={s.x}, y={s.y} lies entirely outside the "
                          f"{base.width}×{base.height} base", param="settings")
        out = composite_over(out, placed, s.mode, s.opacity)
    return Image(out if out is not base.pixels else out.copy())


# ---------------------------------------------------------------- text


def load_font(font: str | None, size_px: int) -> ImageFont.FreeTypeFont:
    """The TrueType/OpenType font at path ``font``, or Pillow's bundled font (Aileron) when None."""
    if font is None:
        loaded = ImageFont.load_default(size=size_px)
        if not isinstance(loaded, ImageFont.FreeTypeFont):
            raise OpError("this Pillow build lacks FreeType, so the bundled font cannot be scaled; "
                          "install a standard Pillow wheel or pass a .ttf file", param="font")
        return loaded
    try:
        return ImageFont.truetype(font, size_px)
    except OSError as exc:
        raise OpError(f"cannot read font file {font!r} ({exc}); give a .ttf or .otf file", param="font") from exc


def wrap_lines(text: str, font: ImageFont.FreeTypeFont, box_width_px: int) -> list[str]:
    """Split ``text`` into lines no wider than ``box_width_px`` (0 = only at newlines).

    Greedy by words; a word wider than the box is broken between characters.
    """
    if box_width_px == 0:
        return text.split("\n")
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if font.getlength(candidate) <= box_width_px:
                line = candidate
                continue
            if line:
                lines.append(line)
            line = ""
            for char in word:  # only reached for words that do not fit on a line of their own
                if line and font.getlength(line + char) > box_width_px:
                    lines.append(line)
                    line = ""
                line += char
        lines.append(line)
    return lines


@node("composite.text", layer="composite", version=1)
def text(
    image: Image,
    *,
    text: Annotated[str, Field(min_length=1, max_length=10_000, description="the text; \\n starts a new line")],
    x: Annotated[int, Field(ge=0, le=MAX_SIDE, description="left edge of the text box, px")] = 0,
    y: Annotated[int, Field(ge=0, le=MAX_SIDE, description="top edge of the text box, px")] = 0,
    box_width_px: Annotated[int, Field(ge=0, le=MAX_SIDE, description="wrap to this width, px (0 = no wrapping)")] = 0,
    font: Annotated[InputFile, Field(description=".ttf/.otf file; empty = bundled Aileron")] | None = None,
    size_px: Annotated[int, Field(ge=4, le=2048, description="font size, px")] = 48,
    color: Color = "#ffffff",
    stroke_width_px: Annotated[int, Field(ge=0, le=256, description="outline width, px")] = 0,
    stroke_color: Color = "#000000",
    align: Annotated[Literal["left", "center", "right"], Field(description="line alignment in the box")] = "left",
    line_spacing: Annotated[float, Field(ge=0.5, le=4, description="line pitch, multiple of the font height")] = 1.2,
    mode: Annotated[BlendMode, Field(description="W3C blend mode of the text layer")] = "normal",
    opacity: Opacity = 1.0,
) -> Image:
    """Draw text as a layer over ``image``.

    The default font is Aileron Regular, which Pillow embeds (``ImageFont.load_default``),
    so text renders offline on any install with no font files.

    Args:
        text: the text (1..10000 chars); ``\\n`` breaks lines.
        x, y: top-left of the text box in px; must be inside the image (default 0, 0).
        box_width_px: wrap lines to this width and align within it; 0 = no wrapping, align
            within the widest line (default 0).
        font: path of a TrueType/OpenType font; None = the bundled font (default None).
        size_px: font size in px, [4, 2048] (default 48).
        color: fill color '#rrggbb[aa]' (default white).
        stroke_width_px: outline width in px, [0, 256] (default 0 = none).
        stroke_color: outline color (default black).
        align: ``left``, ``center`` or ``right`` (default left).
        line_spacing: distance between baselines as a multiple of the font's height,
            [0.5, 4] (default 1.2).
        mode: blend mode of the text layer (default normal).
        opacity: [0, 1] (default 1).
    """
    if x >= image.width or y >= image.height:
        raise OpError(f"text box at ({x}, {y}) starts outside the {image.width}×{image.height} image",
                      param="x" if x >= image.width else "y")
    face = load_font(font, size_px)
    lines = wrap_lines(text, face, box_width_px)
    ascent, descent = face.getmetrics()
    widths = [face.getlength(line) for line in lines]
    box = box_width_px or max(widths)
    # Fill and fill+stroke are drawn as 8-bit coverage masks; colors are applied in float.
    fill_cov, outer_cov = (PILImage.new("L", image.size, 0) for _ in range(2))
    for i, (line, width) in enumerate(zip(lines, widths)):
        left = x + {"left": 0.0, "center": (box - width) / 2, "right": box - width}[align]
        top = y + i * (ascent + descent) * line_spacing
        ImageDraw.Draw(fill_cov).text((left, top), line, font=face, fill=255)
        ImageDraw.Draw(outer_cov).text((left, top), line, font=face, fill=255,
                                       stroke_width=stroke_width_px, stroke_fill=255)
    fill = np.asarray(fill_cov, np.float32)[:, :, None] / 255.0
    outer = np.maximum(np.asarray(outer_cov, np.float32)[:, :, None] / 255.0, fill)
    fill_rgba, stroke_rgba = parse_color(color), parse_color(stroke_color, param="stroke_color")
    fill_alpha, ring_alpha = fill * fill_rgba[3], (outer - fill) * stroke_rgba[3]
    layer = np.concatenate([fill_alpha * fill_rgba[:3] + ring_alpha * stroke_rgba[:3], fill_alpha + ring_alpha], axis=2)
    layer = unpremultiply(layer.astype(np.float32))
    return Image(composite_over(image.pixels, layer, mode, opacity))


# ---------------------------------------------------------------- drop shadow


@node("composite.drop_shadow", layer="composite", version=1)
def drop_shadow(
    image: Image,
    *,
    offset_x_px: Annotated[int, Field(ge=-4096, le=4096, description="shadow shift to the right, px")] = 8,
    offset_y_px: Annotated[int, Field(ge=-4096, le=4096, description="shadow shift downwards, px")] = 8,
    sigma_px: Annotated[float, Field(ge=0, le=500, description="blur standard deviation, px")] = 6.0,
    color: Color = "#000000",
    opacity: Opacity = 0.6,
) -> Image:
    """Put a soft shadow of the image's opaque parts beneath it (canvas size unchanged).

    Use it on a layer with transparent areas (a cut-out, text on a transparent image) before
    stacking; pad first if the shadow needs room beyond the canvas.

    Args:
        offset_x_px, offset_y_px: shadow shift in px, [-4096, 4096] (default 8, 8).
        sigma_px: Gaussian blur standard deviation in px, [0, 500] (default 6).
        color: shadow color '#rrggbb[aa]' (default black).
        opacity: shadow opacity, [0, 1] (default 0.6).
    """
    if image.is_opaque:
        raise OpError("the image is fully opaque, so a shadow beneath it cannot show; apply drop_shadow "
                      "to a layer with transparent areas (e.g. pad it with a transparent color first)",
                      param="image")
    rgba = parse_color(color)
    shadow_alpha = place(gaussian_blur(image.alpha, sigma_px), (image.height, image.width), offset_x_px, offset_y_px)
    shadow = np.empty_like(image.pixels)
    shadow[:, :, :3] = rgba[:3]
    shadow[:, :, 3] = np.clip(shadow_alpha * rgba[3] * opacity, 0.0, 1.0)
    return Image(composite_over(shadow, image.pixels, "normal"))
