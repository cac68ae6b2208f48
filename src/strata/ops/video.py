"""Video layer: a timeline of scenes (durations explicit or from narration) → MP4 and poster.

- ``video.timeline``: stills + narrations → a Clip (camera move per scene, transitions), the
  narration placed on the timeline as one track, and its word timings shifted to match.
- ``video.render``: Clip + audio → MP4 (H.264 yuv420p BT.709 + AAC 48 kHz, moov atom first
  so browsers start playing before the download ends). Frames are rendered and encoded one
  at a time. Audio and video streams end together (the audio is padded to the last frame).
- ``video.poster``: one frame of a clip as an Image (written as the poster PNG).

Audio longer than the video is an error by default (``audio_overrun="error"``), because
silently cutting narration loses words; "trim" cuts it (50 ms fade) and "hold" holds the
last frame until the audio ends.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from strata.errors import MediaError, OpError
from strata.media.audio import Audio, resample
from strata.media.image import Image
from strata.media.timed_text import TimedText, Words
from strata.media.mp4 import Video, encode_mp4
from strata.media.video import Clip, Easing, Layer, Shot, Transition, TransitionKind
from strata.ops.motion import Fps, Height, Move, Width, camera_rects, check_size
from strata.workflow.node import node


class Scene(BaseModel):
    """One scene of :func:`timeline`."""

    model_config = ConfigDict(extra="forbid")

    image: int | None = Field(None, ge=0, description="index into the images input (or give clip)")
    clip: int | None = Field(None, ge=0, description="index into the clips input: a one-shot clip (motion.camera, "
                                                     "motion.parallax) retimed to the scene; move/zoom/rects are ignored")
    narration: int | None = Field(None, ge=0, description="index into narrations (default: the scene's own index, if connected)")
    duration_s: float | None = Field(None, gt=0, le=3600, description="length, s; empty = lead + narration + tail")
    move: Move = Field("zoom_in", description="camera move (see motion.camera)")
    zoom: float = Field(1.3, ge=1, le=8, description="zoom of the move")
    start_rect: list[float] | None = Field(None, min_length=4, max_length=4, description="ken_burns start [x, y, w, h]")
    end_rect: list[float] | None = Field(None, min_length=4, max_length=4, description="ken_burns end [x, y, w, h]")
    easing: Easing = "ease_in_out"


@node("video.timeline", layer="video", version=1, outputs={"clip": Clip, "narration": Audio, "words": Words})
def timeline(
    images: list[Image] | None = None,
    narrations: list[Audio] | None = None,
    words: list[Words] | None = None,
    clips: list[Clip] | None = None,
    *,
    scenes: Annotated[list[Scene], Field(min_length=1, max_length=500, description="the scenes, in order")],
    transition: Annotated[TransitionKind, Field(description="between scenes")] = "crossfade",
    transition_s: Annotated[float, Field(ge=0, le=10, description="transition length, s")] = 0.8,
    lead_s: Annotated[float, Field(ge=0, le=30, description="picture before the narration starts, s")] = 0.6,
    tail_s: Annotated[float, Field(ge=0, le=30, description="picture after the narration ends, s")] = 0.8,
    width: Width = 1280,
    height: Height = 720,
    fps: Fps = 30,
) -> dict[str, Any]:
    """Lay out scenes: each shows a still with a camera move, for a set time or for its narration.

    A scene with a narration and no ``duration_s`` lasts ``lead_s + narration + tail_s``; its
    narration starts ``lead_s`` after the scene does. Transitions overlap neighbouring scenes
    by ``transition_s`` (taken from the tail of one and the lead of the next, so voices never
    overlap while ``transition_s ≤ lead_s + tail_s``).

    Args:
        images: the stills scenes refer to by index.
        clips: prepared one-shot clips (e.g. motion.parallax of composite layers) scenes may use
            instead of a still; the shot keeps its move and is stretched to the scene's length.
        narrations: optional voice tracks (sound.speech audio); scene i uses narration i
            unless it names another.
        words: optional word timings matching ``narrations`` (same order), shifted onto the
            timeline for subtitles.
        scenes: per scene: image (or clip), narration, duration_s, move, zoom, start_rect/end_rect, easing.
        transition: cut, crossfade (default), wipes, fade_black; transition_s [0, 10] (default 0.8).
        lead_s, tail_s: picture before/after the narration (default 0.6 / 0.8 s).
        width, height, fps: frame size (even; default 1280×720) and rate (default 30).

    Returns:
        clip: the timeline; narration: all narrations on one track, as long as the clip;
        words: the narrations' words on the clip's timeline.
    """
    check_size(width, height)
    images, narrations, words, clips = images or [], narrations or [], words or [], clips or []
    if words and len(words) != len(narrations):
        raise OpError(f"{len(words)} word lists for {len(narrations)} narrations; connect one per narration",
                      param="words")
    scenes = [Scene.model_validate(sc) for sc in scenes]  # the engine passes validated JSON (dicts)
    d = 0.0 if transition == "cut" else transition_s
    shots, placed = [], []
    for i, sc in enumerate(scenes):
        if (sc.image is None) == (sc.clip is None):
            raise OpError(f"scene {i}: give exactly one of image or clip", param="scenes")
        if sc.image is not None and sc.image >= len(images):
            raise OpError(f"scene {i} refers to image {sc.image}, but only {len(images)} image(s) are connected "
                          f"(indices 0–{len(images) - 1})", param="scenes")
        if sc.clip is not None and sc.clip >= len(clips):
            raise OpError(f"scene {i} refers to clip {sc.clip}, but only {len(clips)} clip(s) are connected",
                          param="scenes")
        nar = sc.narration if sc.narration is not None else (i if i < len(narrations) else None)
        if sc.narration is not None and nar is not None and nar >= len(narrations):
            raise OpError(f"scene {i} refers to narration {nar}, but only {len(narrations)} narration(s) are "
                          "connected", param="scenes")
        if sc.duration_s is not None:
            dur = sc.duration_s
        elif nar is not None:
            dur = lead_s + narrations[nar].duration_s + tail_s
        else:
            raise OpError(f"scene {i} has neither duration_s nor a narration to take its length from",
                          param="scenes")
        if sc.clip is not None:
            shots.append(_retimed(clips[sc.clip], sc.clip, dur, width, height, fps))
        else:
            img = images[sc.image]  # type: ignore[index]
            start, end = camera_rects(img.width, img.height, width, height, sc.move, sc.zoom, sc.start_rect,
                                      sc.end_rect)
            shots.append(Shot((Layer(img),), dur, start, end, sc.easing))
        placed.append(nar)
    for i in range(1, len(shots)):
        if d > min(shots[i - 1].duration_s, shots[i].duration_s):
            raise OpError(f"the {d} s transition is longer than scene {i - 1} or {i}; shorten transition_s",
                          param="transition_s")
    clip = Clip(width, height, fps, tuple(shots), tuple(Transition(transition, d) for _ in shots[1:]))

    rate = narrations[0].sample_rate_hz if narrations else 48000
    total = round(clip.num_frames / fps * rate)
    track = np.zeros(total, np.float32)
    timed: list[TimedText] = []
    for i, (start_s, nar) in enumerate(zip(clip.starts_s, placed)):
        if nar is None:
            continue
        if scenes[i].duration_s is not None and narrations[nar].duration_s > scenes[i].duration_s - lead_s + 1e-6:
            raise OpError(f"scene {i} lasts {scenes[i].duration_s} s but its narration needs "
                          f"{narrations[nar].duration_s + lead_s:.2f} s (with lead_s); lengthen it or leave "
                          "duration_s empty", param="scenes")
        x = resample(narrations[nar], rate).samples.mean(axis=0)
        off = round((start_s + lead_s) * rate)
        take = max(0, min(len(x), total - off))
        track[off : off + take] += x[:take]
        if words:
            timed += list(words[nar].shifted(start_s + lead_s).items)
    return {"clip": clip, "narration": Audio.mono(track, rate), "words": Words(tuple(timed))}


def _retimed(clip: Clip, index: int, duration_s: float, width: int, height: int, fps: int) -> Shot:
    """The single shot of ``clip``, lasting ``duration_s`` (its move spans the new length)."""
    if len(clip.shots) != 1:
        raise OpError(f"clip {index} has {len(clip.shots)} shots; a scene takes a one-shot clip "
                      "(motion.camera or motion.parallax), not a sequence", param="scenes")
    if (clip.width, clip.height, clip.fps) != (width, height, fps):
        raise OpError(f"clip {index} is {clip.width}×{clip.height} @ {clip.fps} fps but the timeline is "
                      f"{width}×{height} @ {fps} fps; make them match", param="scenes")
    s = clip.shots[0]
    return Shot(s.layers, duration_s, s.start, s.end, s.easing, s.parallax_px)


@node("video.render", layer="video", version=2)
def render(
    clip: Clip,
    audio: Audio | None = None,
    *,
    crf: Annotated[int, Field(ge=0, le=51, description="H.264 quality: lower = better and bigger (18–23 is typical)")] = 20,
    preset: Annotated[Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow"],
                      Field(description="x264 speed/compression trade-off")] = "veryfast",
    audio_overrun: Annotated[Literal["error", "trim", "hold"],
                             Field(description="audio longer than the video: error, trim it, or hold the last frame")] = "error",
    watermark: Annotated[bool, Field(description="strata's invisible watermark in a few frames (≥ 128 px videos)")] = True,
    progress: Callable[[int, int], None] | None = None,
) -> Video:
    """Encode a clip and its sound to an MP4 (H.264 yuv420p + AAC, web-playable).

    The audio is resampled to 48 kHz and padded with silence to the video's length, so both
    streams end on the same frame.

    Args:
        clip: frames (rendered lazily, one at a time).
        audio: optional sound (e.g. sound.mix).
        crf: [0, 51] (default 20).
        preset: x264 preset (default veryfast).
        audio_overrun: "error" (default), "trim" or "hold" — see the module docstring.
        watermark: embed strata's invisible watermark (default on) in up to four frames, at
            most one a second (``strata.provenance.watermark.video_mark_times``; ~1 s each).
            Its payload's hint is the first 16 bits of the timeline's content hash.
    """
    check_size(clip.width, clip.height)
    bits = None
    if watermark:
        from strata.media.codec import encode_value
        from strata.provenance.watermark import payload_bits
        from strata.store.blobs import sha256_bytes

        bits = payload_bits(sha256_bytes(encode_value(clip)[1]))
    try:
        return Video(encode_mp4(clip, audio, crf=crf, preset=preset, audio_overrun=audio_overrun, progress=progress,
                                watermark_bits=bits))
    except MediaError as e:
        if "longer than the video" in str(e):
            raise OpError(str(e), param="audio_overrun") from e
        raise


@node("video.poster", layer="video", version=1)
def poster(
    clip: Clip,
    *,
    time_s: Annotated[float | None, Field(ge=0, le=36_000, description="when, s; empty = the middle of the first scene")] = None,
) -> Image:
    """One frame of a clip as an image (for a poster PNG or a thumbnail).

    Args:
        clip: the clip.
        time_s: the moment to show (default: halfway through the first scene, past any
            transition); must lie within the clip.
    """
    t = clip.shots[0].duration_s / 2 if time_s is None else time_s
    if t > clip.duration_s:
        raise OpError(f"time_s {t} s is past the end of the clip ({clip.duration_s:.2f} s)", param="time_s")
    from strata.media.video import FrameRenderer

    return Image.from_array(FrameRenderer(clip).frame(t))


__all__ = ["poster", "render", "timeline"]
