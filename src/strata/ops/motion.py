"""Motion layer: camera moves on stills, parallax, transitions and captions, as Clips.

Ops here do not render frames: they return a :class:`~strata.media.video.Clip`, a small
description (stills + numbers) that ``video.render`` turns into frames one at a time. So a
30 s clip costs its stills in the store, not 900 frames, and changing a caption reruns only
the caption node and the render.

Camera rectangles are given normalized to the image, ``[x, y, w, h]`` with 0..1 = left/top
edge to right/bottom edge; they are widened or narrowed about their center to the frame's
aspect ratio so that pictures are never stretched.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from strata.errors import OpError
from strata.media.image import Image
from strata.media.timed_text import Subtitles
from strata.media.video import EASINGS, CaptionStyle, Clip, Easing, Layer, Rect, Shot, Transition, TransitionKind
from strata.workflow.node import node

Move = Literal["still", "zoom_in", "zoom_out", "pan_left", "pan_right", "pan_up", "pan_down", "ken_burns"]
# multiple_of=2: odd sizes fail when the workflow is validated, before anything runs
Width = Annotated[int, Field(ge=16, le=3840, multiple_of=2, description="frame width, px (even)")]
Height = Annotated[int, Field(ge=16, le=2160, multiple_of=2, description="frame height, px (even)")]
Fps = Annotated[int, Field(ge=1, le=120, description="frames per second")]
Duration = Annotated[float, Field(gt=0, le=3600, description="length, s")]
Zoom = Annotated[float, Field(ge=1, le=8, description="how much closer the tight view is (1 = none)")]
NormRect = Annotated[list[float] | None, Field(min_length=4, max_length=4,
                                               description="[x, y, w, h] as fractions of the image")]

assert set(EASINGS) == set(Easing.__args__)  # type: ignore[attr-defined]  # one list of easings


def check_size(width: int, height: int) -> None:
    """H.264 in yuv420p needs even dimensions: refuse odd ones instead of silently cropping."""
    for name, v in (("width", width), ("height", height)):
        if v % 2:
            raise OpError(f"{name} {v} is odd; H.264 video (yuv420p) needs even dimensions — use {v - 1} or {v + 1}",
                          param=name)


def cover_rect(img_w: int, img_h: int, aspect: float) -> Rect:
    """The largest centered rectangle of ``aspect`` (w/h) inside the image, in image pixels."""
    if img_w / img_h > aspect:
        w, h = img_h * aspect, float(img_h)
    else:
        w, h = float(img_w), img_w / aspect
    return ((img_w - w) / 2, (img_h - h) / 2, w, h)


def _scaled(r: Rect, factor: float, cx: float, cy: float) -> Rect:
    """``r`` shrunk by ``factor`` about the point (cx, cy) given as fractions of ``r``."""
    w, h = r[2] / factor, r[3] / factor
    return (r[0] + (r[2] - w) * cx, r[1] + (r[3] - h) * cy, w, h)


def _fit_rect(norm: list[float], img_w: int, img_h: int, aspect: float, param: str) -> Rect:
    x, y, w, h = norm
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > 1 + 1e-6 or y + h > 1 + 1e-6:
        raise OpError(f"rectangle {norm} must lie inside the image: 0 ≤ x, y; w, h > 0; x + w ≤ 1; y + h ≤ 1",
                      param=param)
    px = (x * img_w, y * img_h, w * img_w, h * img_h)
    cx, cy = px[0] + px[2] / 2, px[1] + px[3] / 2
    # keep the area, change the shape to the frame's aspect
    area = px[2] * px[3]
    nw = (area * aspect) ** 0.5
    nh = nw / aspect
    return (cx - nw / 2, cy - nh / 2, nw, nh)


def camera_rects(img_w: int, img_h: int, width: int, height: int, move: str, zoom: float,
                 start_rect: list[float] | None = None, end_rect: list[float] | None = None) -> tuple[Rect, Rect]:
    """Start and end camera rectangles (image px) for a named move.

    - still: the full (cover) view throughout; zoom_in: full → 1/zoom of it, centered;
      zoom_out: the reverse; pan_*: a view 1/zoom of the full one travels from one edge of
      the image to the other; ken_burns: ``start_rect`` → ``end_rect``.
    """
    aspect = width / height
    full = cover_rect(img_w, img_h, aspect)
    if move == "ken_burns":
        if start_rect is None or end_rect is None:
            raise OpError("ken_burns needs start_rect and end_rect ([x, y, w, h] as fractions of the image)",
                          param="start_rect" if start_rect is None else "end_rect")
        return (_fit_rect(start_rect, img_w, img_h, aspect, "start_rect"),
                _fit_rect(end_rect, img_w, img_h, aspect, "end_rect"))
    if move == "still":
        return full, full
    tight = _scaled(full, zoom, 0.5, 0.5)
    if move == "zoom_in":
        return full, tight
    if move == "zoom_out":
        return tight, full
    w, h = tight[2], tight[3]
    left, right = (0.0, tight[1], w, h), (img_w - w, tight[1], w, h)
    top, bottom = (tight[0], 0.0, w, h), (tight[0], img_h - h, w, h)
    return {"pan_right": (left, right), "pan_left": (right, left),
            "pan_down": (top, bottom), "pan_up": (bottom, top)}[move]


@node("motion.camera", layer="motion", version=1)
def camera(
    image: Image,
    *,
    move: Annotated[Move, Field(description="the camera move")] = "zoom_in",
    duration_s: Duration = 5.0,
    zoom: Zoom = 1.3,
    start_rect: NormRect = None,
    end_rect: NormRect = None,
    easing: Annotated[Easing, Field(description="speed curve of the move")] = "ease_in_out",
    width: Width = 1280,
    height: Height = 720,
    fps: Fps = 30,
) -> Clip:
    """A shot of a still with a camera move: pan, zoom in/out, or Ken Burns between two rectangles.

    Args:
        image: the still (any size; its alpha is ignored).
        move: still, zoom_in (default), zoom_out, pan_left/right/up/down, ken_burns.
        duration_s: (0, 3600] s (default 5).
        zoom: [1, 8] (default 1.3): the tight view is 1/zoom of the full view (zoom and pan moves).
        start_rect, end_rect: ken_burns only: [x, y, w, h] as fractions of the image; each is
            reshaped about its center to the frame's aspect (same area).
        easing: linear, ease_in, ease_out, ease_in_out (default; sine), smoothstep (cubic).
        width, height: frame size (default 1280×720); both must be even.
        fps: frames per second, [1, 120] (default 30).
    """
    check_size(width, height)
    start, end = camera_rects(image.width, image.height, width, height, move, zoom, start_rect, end_rect)
    return Clip(width, height, fps, (Shot((Layer(image),), duration_s, start, end, easing),))


class ParallaxLayer(BaseModel):
    """Placement of one foreground layer in :func:`parallax` (as in ``composite.layers``) and its depth."""

    model_config = ConfigDict(extra="forbid")

    x: float = Field(0.0, ge=-100_000, le=100_000, description="left edge on the base, px")
    y: float = Field(0.0, ge=-100_000, le=100_000, description="top edge on the base, px")
    scale: float = Field(1.0, gt=0, le=64, description="size factor")
    depth: float = Field(1.0, ge=0.1, le=100, description="distance from the camera (1 = moves travel_px; 2 = half)")


@node("motion.parallax", layer="motion", version=1)
def parallax(
    base: Image,
    layers: list[Image],
    *,
    settings: Annotated[list[ParallaxLayer], Field(max_length=64, description="one entry per layer, bottom to top")],
    base_depth: Annotated[float, Field(ge=0.1, le=100, description="distance of the base (background)")] = 4.0,
    travel_px: Annotated[float, Field(ge=-2000, le=2000, description="how far a depth-1 layer moves over the shot, output px")] = 120.0,
    direction: Annotated[Literal["horizontal", "vertical"], Field(description="camera travel direction")] = "horizontal",
    zoom: Annotated[float, Field(ge=1, le=8, description="slow push-in over the shot (1 = none)")] = 1.0,
    duration_s: Duration = 5.0,
    easing: Annotated[Easing, Field(description="speed curve")] = "ease_in_out",
    width: Width = 1280,
    height: Height = 720,
    fps: Fps = 30,
) -> Clip:
    """A shot whose layers move by depth as the camera travels sideways (2.5-D parallax).

    A layer at depth d shifts by ``travel_px / d`` output pixels over the shot (pinhole
    camera: image motion ∝ 1/distance); near layers move more than far ones. The base is
    framed with enough margin that its own shift never shows its edges.

    Args:
        base: the background (fixes the coordinate system, like composite.layers).
        layers: foreground stills with alpha, bottom to top.
        settings: per layer: x, y, scale (placement on the base, px) and depth.
        base_depth: [0.1, 100] (default 4): the background moves travel_px / base_depth.
        travel_px: [−2000, 2000] (default 120).
        direction: horizontal (default) or vertical.
        zoom: [1, 8] (default 1): push-in over the shot.
        duration_s, easing, width, height, fps: as in motion.camera.
    """
    check_size(width, height)
    if len(settings) != len(layers):
        raise OpError(f"settings has {len(settings)} entries for {len(layers)} layers; give one per layer",
                      param="settings")
    settings = [ParallaxLayer.model_validate(s) for s in settings]  # dicts from the engine
    full = cover_rect(base.width, base.height, width / height)
    # the base moves ±travel/(2·base_depth) output px: inset the view so that never shows an edge
    margin = abs(travel_px) / base_depth / (width if direction == "horizontal" else height)
    view = _scaled(full, 1 + margin, 0.5, 0.5)
    end = _scaled(view, zoom, 0.5, 0.5)
    shift = (travel_px, 0.0) if direction == "horizontal" else (0.0, travel_px)
    lays = (Layer(base, base_depth),) + tuple(Layer(im, s.depth, s.x, s.y, s.scale) for im, s in zip(layers, settings))
    # Shot.parallax_px is the shift of a depth-1 layer; the renderer divides by each depth.
    return Clip(width, height, fps, (Shot(lays, duration_s, view, end, easing, shift),))


@node("motion.flipbook", layer="motion", version=1)
def flipbook(
    images: list[Image],
    *,
    duration_s: Duration = 1.0,
    crossfade: Annotated[bool, Field(description="blend each frame into the next (smoother at low frame counts)")] = True,
    width: Width = 1280,
    height: Height = 720,
    fps: Fps = 30,
) -> Clip:
    """Play images one after another as a clip — e.g. the frames of ``image.interpolate``,
    which makes the image model's latent morph a transition between two scenes
    (``motion.sequence`` of scene A, this, scene B with ``cut``).

    Each image is shown for ``duration_s / len(images)`` (framed like ``motion.camera``'s
    still: the largest centered view of the frame's aspect), joined by crossfades of that
    length or cuts.

    Args:
        images: two or more frames.
        duration_s: the whole flipbook's length, s (default 1).
        crossfade: blend consecutive frames (default) or cut between them.
        width, height, fps: as for ``motion.camera``.
    """
    check_size(width, height)
    if len(images) < 2:
        raise OpError(f"a flipbook needs at least 2 images, got {len(images)}", param="images")
    per = duration_s / len(images)
    if per * fps < 1:
        raise OpError(f"{len(images)} images in {duration_s} s at {fps} fps gives each less than one frame; "
                      "lengthen duration_s or raise fps", param="duration_s")
    shots, trans = [], []
    for i, im in enumerate(images):
        view = cover_rect(im.width, im.height, width / height)
        # With crossfades, shots overlap by `per`: each lasts 2·per (the ends 1.5·per) so that
        # the clip is still duration_s long.
        length = per if not crossfade else per * (1.5 if i in (0, len(images) - 1) else 2.0)
        shots.append(Shot((Layer(im),), length, view, view))
        if i:
            trans.append(Transition("crossfade" if crossfade else "cut", per if crossfade else 0.0))
    return Clip(width, height, fps, tuple(shots), tuple(trans))


@node("motion.sequence", layer="motion", version=1)
def sequence(
    clips: list[Clip],
    *,
    transition: Annotated[TransitionKind, Field(description="how each clip gives way to the next")] = "crossfade",
    transition_s: Annotated[float, Field(ge=0, le=10, description="length of each transition, s")] = 1.0,
) -> Clip:
    """Play clips one after another, joined by transitions.

    A transition of d seconds overlaps the end of one clip with the start of the next, so the
    result is ``sum(durations) − (n − 1)·d`` long. ``fade_black`` fades out during the first
    half and in during the second.

    Args:
        clips: two or more clips with the same size and fps, without captions (add captions last).
        transition: cut, crossfade (default), wipe_left/right/up/down, fade_black.
        transition_s: [0, 10] s (default 1; ignored for cut).
    """
    if not clips:
        raise OpError("connect at least one clip", param="clips")
    first = clips[0]
    for i, c in enumerate(clips):
        if (c.width, c.height, c.fps) != (first.width, first.height, first.fps):
            raise OpError(f"clip {i} is {c.width}×{c.height} @ {c.fps} fps but clip 0 is "
                          f"{first.width}×{first.height} @ {first.fps} fps; give every clip the same size and fps",
                          param="clips")
        if c.captions is not None:
            raise OpError(f"clip {i} already has captions; sequence first, then add captions", param="clips")
    d = 0.0 if transition == "cut" else transition_s
    shots, trans = [], []
    for i, c in enumerate(clips):
        if i:
            if d > min(clips[i - 1].shots[-1].duration_s, c.shots[0].duration_s):
                raise OpError(f"a {d} s transition is longer than the shots it joins (clip {i - 1} and {i}); "
                              "shorten transition_s", param="transition_s")
            trans.append(Transition(transition, d))
        shots += c.shots
        trans += c.transitions
    return Clip(first.width, first.height, first.fps, tuple(shots), tuple(trans))


@node("motion.captions", layer="motion", version=1)
def captions(
    clip: Clip,
    subtitles: Subtitles,
    *,
    style: Annotated[Literal["outline", "box"], Field(description="outline = dark edge; box = translucent dark box")] = "box",
    size_px: Annotated[int | None, Field(ge=8, le=400, description="font size, px; empty = height / 20")] = None,
    margin: Annotated[float, Field(ge=0, le=0.4, description="bottom margin as a fraction of the height")] = 0.08,
) -> Clip:
    """Burn subtitles into a clip: centered at the bottom, wrapped inside the title-safe area.

    Lines wrap to 90% of the width (5% safe margin each side) and sit ``margin`` above the
    bottom; a dark outline or a translucent box keeps them readable on any picture.

    Args:
        clip: the clip to caption (its timeline is the subtitles' timeline).
        subtitles: cues from sound.subtitles (times in the clip's seconds).
        style: "box" (default) or "outline".
        size_px: [8, 400] (default: height / 20, e.g. 36 px at 720p).
        margin: [0, 0.4] (default 0.08).
    """
    size = size_px or max(8, clip.height // 20)
    return clip.with_captions(subtitles, CaptionStyle(size, style, (255, 255, 255), margin))


__all__ = ["camera", "camera_rects", "captions", "check_size", "cover_rect", "parallax", "sequence"]
