"""Moving pictures: Clip, a lazily rendered timeline of shots (encoding: :mod:`strata.media.mp4`).

A :class:`Clip` is a *description*: shots (layers of still images, a camera path between two
rectangles with an easing curve, parallax by depth), transitions between shots and optional
captions. Frames are computed on demand by :meth:`Clip.frame`, one at a time, so rendering
30 s of 720p never holds more than a frame or two in memory, and the store keeps the stills
and the numbers, not the frames.

Coordinates: a shot's camera rectangle ``(x, y, w, h)`` is in pixels of its first (base)
layer; the output frame shows that rectangle scaled to ``width × height``. A layer at
``depth`` d moves by ``parallax_px / d`` output pixels over the shot (a pinhole camera
translating sideways sees a point at distance Z move by f·T/Z).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np

from strata.errors import MediaError
from strata.media.codec import decode_value, encode_value, register_codec
from strata.media.image import Image
from strata.media.timed_text import Subtitles

Rect = tuple[float, float, float, float]
Easing = Literal["linear", "ease_in", "ease_out", "ease_in_out", "smoothstep"]
TransitionKind = Literal["cut", "crossfade", "wipe_left", "wipe_right", "wipe_up", "wipe_down", "fade_black"]

# ---------------------------------------------------------------- easing curves (u in [0, 1])

EASINGS: dict[str, Callable[[np.ndarray | float], Any]] = {
    "linear": lambda u: u,
    "ease_in": lambda u: u * u,  # quadratic: starts at rest
    "ease_out": lambda u: 1 - (1 - u) * (1 - u),  # quadratic: ends at rest
    "ease_in_out": lambda u: 0.5 - 0.5 * np.cos(np.pi * u),  # sine: rests at both ends
    "smoothstep": lambda u: u * u * (3 - 2 * u),  # cubic Hermite, zero slope at both ends
}


def ease(kind: str, u: float) -> float:
    """Eased progress for linear progress ``u`` (clamped to [0, 1])."""
    return float(EASINGS[kind](min(1.0, max(0.0, u))))


# ---------------------------------------------------------------- clip description


@dataclass(frozen=True, eq=False)
class Layer:
    """A still in a shot: placed on the base at (x, y) (base px) with ``scale``, at ``depth``."""

    image: Image
    depth: float = 1.0
    x: float = 0.0
    y: float = 0.0
    scale: float = 1.0


@dataclass(frozen=True, eq=False)
class Shot:
    """One continuous camera move over layered stills."""

    layers: tuple[Layer, ...]
    duration_s: float
    start: Rect
    end: Rect
    easing: str = "linear"
    parallax_px: tuple[float, float] = (0.0, 0.0)

    def rect_at(self, u: float) -> Rect:
        """The camera rectangle at eased progress ``u``: linear interpolation of the corners."""
        return tuple(a + (b - a) * u for a, b in zip(self.start, self.end))  # type: ignore[return-value]


@dataclass(frozen=True)
class Transition:
    kind: str = "cut"
    duration_s: float = 0.0


@dataclass(frozen=True)
class CaptionStyle:
    size_px: int = 40
    style: Literal["outline", "box"] = "outline"
    color: tuple[int, int, int] = (255, 255, 255)
    margin_frac: float = 0.08  # bottom margin; sides keep 5% (title-safe area)


@dataclass(frozen=True, eq=False)
class Clip:
    """A timeline of shots joined by transitions, optionally captioned; frames on demand."""

    width: int
    height: int
    fps: int
    shots: tuple[Shot, ...]
    transitions: tuple[Transition, ...] = ()
    captions: Subtitles | None = None
    caption_style: CaptionStyle = field(default_factory=CaptionStyle)

    def __post_init__(self) -> None:
        if self.width % 2 or self.height % 2 or self.width < 2 or self.height < 2:
            raise MediaError(f"video size {self.width}×{self.height}: width and height must be even and ≥ 2 "
                             "(H.264 in yuv420p halves the color resolution)")
        if not self.shots:
            raise MediaError("a clip needs at least one shot")
        object.__setattr__(self, "shots", tuple(self.shots))
        trans = tuple(self.transitions) or tuple(Transition() for _ in self.shots[1:])
        if len(trans) != len(self.shots) - 1:
            raise MediaError(f"{len(self.shots)} shots need {len(self.shots) - 1} transitions, got {len(trans)}")
        for i, (t, a, b) in enumerate(zip(trans, self.shots, self.shots[1:])):
            if t.duration_s > min(a.duration_s, b.duration_s) + 1e-9:
                raise MediaError(f"transition {i} ({t.duration_s} s) is longer than the shots it joins "
                                 f"({a.duration_s} s, {b.duration_s} s)")
        object.__setattr__(self, "transitions", trans)

    @property
    def starts_s(self) -> list[float]:
        """Start time of each shot; a transition of d seconds overlaps the two shots by d."""
        t, out = 0.0, []
        for i, s in enumerate(self.shots):
            out.append(t)
            t += s.duration_s - (self.transitions[i].duration_s if i < len(self.transitions) else 0.0)
        return out

    @property
    def duration_s(self) -> float:
        return self.starts_s[-1] + self.shots[-1].duration_s

    @property
    def num_frames(self) -> int:
        return max(1, round(self.duration_s * self.fps))

    def with_captions(self, captions: Subtitles | None, style: CaptionStyle) -> "Clip":
        return Clip(self.width, self.height, self.fps, self.shots, self.transitions, captions, style)

    def frame(self, t_s: float) -> np.ndarray:
        """The RGB uint8 (H, W, 3) frame at time ``t_s`` (use a :class:`FrameRenderer` for many)."""
        return FrameRenderer(self).frame(t_s)


# ---------------------------------------------------------------- rendering


class FrameRenderer:
    """Renders a clip's frames; keeps each shot's stills as prepared uint8 arrays between frames."""

    def __init__(self, clip: Clip):
        import cv2

        self.clip = clip
        self.cv2 = cv2
        self._prepared: dict[int, list[tuple[np.ndarray, Layer, float]]] = {}
        self._caption_cache: dict[int, tuple[np.ndarray, int, int] | None] = {}

    def _prepare(self, i: int) -> list[tuple[np.ndarray, Layer, float]]:
        """Layers of shot ``i`` as uint8 arrays (base: opaque RGBA; others: premultiplied RGBA), prefiltered.

        When the camera never shows the base at 1:1 or closer (every output pixel covers more
        than one source pixel), the stills are first shrunk with area averaging so that the
        per-frame bilinear warp does not alias; ``k`` is that shrink factor.
        """
        if i in self._prepared:
            return self._prepared[i]
        shot, (W, H) = self.clip.shots[i], (self.clip.width, self.clip.height)
        min_src_per_px = min(min(r[2] / W, r[3] / H) for r in (shot.start, shot.end))
        k = 1.0 / min_src_per_px if min_src_per_px > 1.25 else 1.0
        out = []
        for j, layer in enumerate(shot.layers):
            px = layer.image.pixels
            if k != 1.0:
                h, w = px.shape[:2]
                px = self.cv2.resize(px, (max(1, round(w * k)), max(1, round(h * k))), interpolation=self.cv2.INTER_AREA)
            if j == 0:  # 4 channels: OpenCV's vectorized bilinear warp (3: ~2.5× slower, same values)
                arr = self.cv2.cvtColor(np.clip(np.rint(px[:, :, :3] * 255), 0, 255).astype(np.uint8),
                                        self.cv2.COLOR_RGB2RGBA)
            else:  # premultiplied, so bilinear warping does not bleed color from transparent pixels
                pre = np.concatenate([px[:, :, :3] * px[:, :, 3:], px[:, :, 3:]], axis=2)
                arr = np.clip(np.rint(pre * 255), 0, 255).astype(np.uint8)
            out.append((arr, layer, k))
        # Shots render in order and at most two overlap (a transition): keep the last two.
        self._prepared = {k: v for k, v in self._prepared.items() if k == i - 1}
        self._prepared[i] = out
        return out

    def shot_frame(self, i: int, local_s: float) -> np.ndarray:
        """Shot ``i`` at ``local_s`` seconds into it: RGB uint8 (H, W, 3)."""
        cv2 = self.cv2
        shot, (W, H) = self.clip.shots[i], (self.clip.width, self.clip.height)
        u = ease(shot.easing, local_s / shot.duration_s if shot.duration_s > 0 else 1.0)
        x, y, w, h = shot.rect_at(u)
        frame: np.ndarray | None = None
        acc: np.ndarray | None = None
        for j, (arr, layer, k) in enumerate(self._prepare(i)):
            # output px (X, Y) → base px: (x + (X − dx)·w/W, y + (Y − dy)·h/H) → layer px: (b − pos)/scale
            dx = shot.parallax_px[0] * (u - 0.5) / layer.depth
            dy = shot.parallax_px[1] * (u - 0.5) / layer.depth
            sx, sy = w / W, h / H
            s = layer.scale / k if j else 1.0 / k
            m = np.array([[sx / s, 0, (x - dx * sx - (layer.x if j else 0)) / s],
                          [0, sy / s, (y - dy * sy - (layer.y if j else 0)) / s]], np.float64)
            if j == 0:
                frame = cv2.cvtColor(cv2.warpAffine(arr, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                                    borderMode=cv2.BORDER_REPLICATE), cv2.COLOR_RGBA2RGB)
            else:
                warped = cv2.warpAffine(arr, m, (W, H), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0))
                if acc is None:
                    acc = frame.astype(np.float32)  # type: ignore[union-attr]
                a = warped[:, :, 3:].astype(np.float32) * np.float32(1 / 255)
                acc = acc * (1 - a) + warped[:, :, :3]  # "over" with premultiplied color
        if acc is not None:
            frame = np.clip(acc + 0.5, 0, 255).astype(np.uint8)
        assert frame is not None  # a shot always has a base layer (checked when built)
        return frame

    def frame(self, t_s: float) -> np.ndarray:
        """The RGB uint8 (H, W, 3) frame at ``t_s``."""
        clip = self.clip
        starts = clip.starts_s
        active = [i for i, (s0, sh) in enumerate(zip(starts, clip.shots)) if s0 - 1e-9 <= t_s < s0 + sh.duration_s]
        if not active:  # at or past the end: the last shot's last moment
            active = [len(clip.shots) - 1]
            t_s = min(t_s, starts[-1] + clip.shots[-1].duration_s)
        if len(active) == 1:
            i = active[0]
            out = self.shot_frame(i, t_s - starts[i])
        else:
            i, j = active[0], active[-1]
            tr = clip.transitions[i]
            p = (t_s - starts[j]) / tr.duration_s if tr.duration_s > 0 else 1.0
            out = transition_mix(tr.kind, self.shot_frame(i, t_s - starts[i]), self.shot_frame(j, t_s - starts[j]), p)
        if clip.captions is not None:
            out = self._burn_caption(out, t_s)
        return out

    def _caption_overlay(self, index: int, text: str) -> tuple[np.ndarray, int, int]:
        """Premultiplied float RGBA overlay for one cue, and its top-left corner (cached per cue)."""
        if index in self._caption_cache:
            return self._caption_cache[index]  # type: ignore[return-value]
        from PIL import Image as PILImage, ImageDraw

        from strata.ops.composite import load_font, wrap_lines

        st, (W, H) = self.clip.caption_style, (self.clip.width, self.clip.height)
        font = load_font(None, st.size_px)
        safe_w = int(W * 0.9)  # title-safe area: 5% margin each side
        pad = max(2, st.size_px // 4)
        stroke = max(1, st.size_px // 14) if st.style == "outline" else 0
        lines = wrap_lines(text, font, safe_w - 2 * pad - 2 * stroke)
        asc, desc = font.getmetrics()
        line_h = int((asc + desc) * 1.15)
        box_w = min(safe_w, int(max(font.getlength(line) for line in lines)) + 2 * pad + 2 * stroke)
        box_h = line_h * len(lines) + 2 * pad
        img = PILImage.new("RGBA", (box_w, box_h), (0, 0, 0, 0))
        draw = ImageDraw.Draw(img)
        if st.style == "box":  # a translucent dark box keeps white text readable on any picture
            draw.rounded_rectangle((0, 0, box_w - 1, box_h - 1), radius=pad, fill=(0, 0, 0, 170))
        for n, line in enumerate(lines):
            draw.text(((box_w - font.getlength(line)) / 2, pad + n * line_h), line, font=font, fill=(*st.color, 255),
                      stroke_width=stroke, stroke_fill=(0, 0, 0, 255))
        rgba = np.asarray(img, np.float32).copy()
        rgba[:, :, :3] *= rgba[:, :, 3:] / 255
        result = (rgba, (W - box_w) // 2, max(0, H - int(H * st.margin_frac) - box_h))
        self._caption_cache[index] = result
        return result

    def _burn_caption(self, frame: np.ndarray, t_s: float) -> np.ndarray:
        assert self.clip.captions is not None
        cue_index = next((n for n, c in enumerate(self.clip.captions.cues) if c.start_s <= t_s < c.end_s), None)
        if cue_index is None:
            return frame
        rgba, x0, y0 = self._caption_overlay(cue_index, self.clip.captions.cues[cue_index].text)
        h, w = min(rgba.shape[0], frame.shape[0] - y0), min(rgba.shape[1], frame.shape[1] - x0)
        region = frame[y0 : y0 + h, x0 : x0 + w].astype(np.float32)
        a = rgba[:h, :w, 3:] / 255
        frame = frame if frame.flags.writeable else frame.copy()
        frame[y0 : y0 + h, x0 : x0 + w] = np.clip(region * (1 - a) + rgba[:h, :w, :3] + 0.5, 0, 255)
        return frame


def transition_mix(kind: str, a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    """Frame ``p`` ∈ [0, 1] of the transition from uint8 frame ``a`` to uint8 frame ``b``."""
    import cv2

    p = min(1.0, max(0.0, p))
    if kind == "crossfade":
        return cv2.addWeighted(a, 1 - p, b, p, 0.0)  # (1 − p)·a + p·b, rounded, saturated
    if kind == "fade_black":  # first half: a to black; second half: black to b
        return cv2.convertScaleAbs(a, alpha=1 - 2 * p) if p < 0.5 else cv2.convertScaleAbs(b, alpha=2 * p - 1)
    if kind.startswith("wipe_"):
        h, w = a.shape[:2]
        out = a.copy()
        if kind == "wipe_right":  # the edge travels left → right, revealing b behind it
            out[:, : round(p * w)] = b[:, : round(p * w)]
        elif kind == "wipe_left":
            out[:, w - round(p * w) :] = b[:, w - round(p * w) :]
        elif kind == "wipe_down":
            out[: round(p * h)] = b[: round(p * h)]
        else:  # wipe_up
            out[h - round(p * h) :] = b[h - round(p * h) :]
        return out
    return b if p >= 1.0 or kind == "cut" else a


# ---------------------------------------------------------------- store codecs
#
# A clip is b"STCL", a uint32 JSON length, the JSON (everything but pixels) and then the
# stills as a list value (codec "list" of images): deterministic and lossless.

_CLIP_MAGIC = b"STCL"


def _encode_clip(clip: Clip) -> bytes:
    images: list[Image] = []
    shots = []
    for s in clip.shots:
        layers = []
        for layer in s.layers:
            layers.append({"image": len(images), "depth": layer.depth, "x": layer.x, "y": layer.y, "scale": layer.scale})
            images.append(layer.image)
        shots.append({"layers": layers, "duration_s": s.duration_s, "start": list(s.start), "end": list(s.end),
                      "easing": s.easing, "parallax_px": list(s.parallax_px)})
    st = clip.caption_style
    meta = {
        "width": clip.width, "height": clip.height, "fps": clip.fps, "shots": shots,
        "transitions": [[t.kind, t.duration_s] for t in clip.transitions],
        "captions": None if clip.captions is None else [[c.text, c.start_s, c.end_s] for c in clip.captions.cues],
        "caption_style": [st.size_px, st.style, list(st.color), st.margin_frac],
    }
    js = json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    _, imgs = encode_value(images)
    return _CLIP_MAGIC + struct.pack("<I", len(js)) + js + imgs


def _decode_clip(data: bytes) -> Clip:
    from strata.media.timed_text import TimedText

    try:
        if data[:4] != _CLIP_MAGIC:
            raise ValueError("bad magic")
        (n,) = struct.unpack_from("<I", data, 4)
        meta = json.loads(data[8 : 8 + n])
        images = decode_value("list", data[8 + n :])
        shots = tuple(
            Shot(tuple(Layer(images[la["image"]], la["depth"], la["x"], la["y"], la["scale"]) for la in s["layers"]),
                 s["duration_s"], tuple(s["start"]), tuple(s["end"]), s["easing"], tuple(s["parallax_px"]))
            for s in meta["shots"])
        caps = meta["captions"]
        size, style, color, margin = meta["caption_style"]
        return Clip(meta["width"], meta["height"], meta["fps"], shots,
                    tuple(Transition(k, d) for k, d in meta["transitions"]),
                    None if caps is None else Subtitles(tuple(TimedText(*c) for c in caps)),
                    CaptionStyle(size, style, tuple(color), margin))
    except (ValueError, KeyError, TypeError, IndexError, struct.error) as e:
        raise MediaError(f"stored clip is malformed ({e})") from e


register_codec("clip", Clip, _encode_clip, _decode_clip)

__all__ = ["CaptionStyle", "Clip", "EASINGS", "FrameRenderer", "Layer", "Shot", "Transition", "ease", "transition_mix"]
