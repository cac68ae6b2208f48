"""motion.*: easing curves, camera rectangles and their rendering, parallax, transitions, captions."""

from __future__ import annotations

import numpy as np
import pytest

from strata.errors import OpError
from strata.media.image import Image
from strata.media.timed_text import Subtitles, TimedText
from strata.media.video import EASINGS, Clip, FrameRenderer, Layer, Shot, Transition, ease, transition_mix
from strata.ops.motion import camera, camera_rects, captions, cover_rect, flipbook, parallax, sequence

U = np.linspace(0, 1, 101)


def test_easing_curves_match_their_formulas():
    np.testing.assert_allclose(EASINGS["linear"](U), U)
    np.testing.assert_allclose(EASINGS["ease_in"](U), U**2)
    np.testing.assert_allclose(EASINGS["ease_out"](U), 1 - (1 - U) ** 2)
    np.testing.assert_allclose(EASINGS["ease_in_out"](U), (1 - np.cos(np.pi * U)) / 2)
    np.testing.assert_allclose(EASINGS["smoothstep"](U), 3 * U**2 - 2 * U**3)
    for name, f in EASINGS.items():
        assert f(0.0) == pytest.approx(0) and f(1.0) == pytest.approx(1), name
        assert np.all(np.diff(f(U)) >= 0), name
    assert ease("ease_in", 2.0) == 1.0 and ease("ease_in", -1.0) == 0.0  # clamped


def test_camera_rectangles_keep_the_frame_aspect():
    full = cover_rect(600, 400, 16 / 9)
    assert full == pytest.approx((0, (400 - 600 * 9 / 16) / 2, 600, 600 * 9 / 16))
    start, end = camera_rects(600, 400, 1280, 720, "zoom_in", 1.5)
    assert start == pytest.approx(full)
    assert end[2] == pytest.approx(600 / 1.5) and end[3] == pytest.approx(full[3] / 1.5)
    assert end[0] + end[2] / 2 == pytest.approx(300) and end[1] + end[3] / 2 == pytest.approx(200)  # centered
    left, right = camera_rects(600, 400, 1280, 720, "pan_right", 1.25)
    assert left[0] == 0 and right[0] + right[2] == pytest.approx(600) and left[1] == right[1]
    a, b = camera_rects(600, 400, 1280, 720, "ken_burns", 1, [0, 0, 1, 1], [0.5, 0.5, 0.25, 0.25])
    for r in (a, b):
        assert r[2] / r[3] == pytest.approx(16 / 9)  # reshaped to the frame, same area
    assert b[2] * b[3] == pytest.approx(150 * 100)
    assert (b[0] + b[2] / 2, b[1] + b[3] / 2) == pytest.approx((375, 250))


def test_rendered_frame_shows_the_interpolated_rectangle():
    # pixel value encodes the source column: a frame shows x0 + X·w/W at output column X
    w_img, h_img = 256, 144
    ramp = np.tile(np.arange(w_img, dtype=np.float32) / 255, (h_img, 1))
    img = Image.from_array(ramp)
    shot = Shot((Layer(img),), 2.0, (0, 0, 256, 144), (64, 36, 128, 72), "ease_in_out")
    clip = Clip(128, 72, 10, (shot,))
    r = FrameRenderer(clip)
    for t in (0.0, 0.5, 1.0, 2.0):
        u = (1 - np.cos(np.pi * t / 2)) / 2
        x0, w = 64 * u, 256 + (128 - 256) * u
        cols = r.frame(t)[36, :, 0].astype(float)
        expected = np.clip(x0 + np.arange(128) * w / 128, 0, 255)
        # the renderer shrinks 2:1 views with area averaging first: compare away from the edges
        np.testing.assert_allclose(cols[2:-2], expected[2:-2], atol=1.6)


def test_parallax_moves_layers_inversely_to_depth():
    base = Image.solid(320, 180, (0, 0, 0, 1))
    dot = Image.solid(8, 8, (1, 1, 1, 1))
    clip = parallax(base, [dot, dot], settings=[{"x": 60, "y": 40, "depth": 1}, {"x": 200, "y": 120, "depth": 2}],
                    base_depth=4, travel_px=40, duration_s=1.0, easing="linear", width=320, height=180, fps=10)
    r = FrameRenderer(clip)

    def centroid_x(frame: np.ndarray, rows: slice) -> float:
        m = frame[rows, :, 0].astype(float)
        return float((m.sum(axis=0) * np.arange(m.shape[1])).sum() / m.sum())

    a, b = r.frame(0.0), r.frame(1.0)
    near = centroid_x(b, slice(0, 90)) - centroid_x(a, slice(0, 90))
    far = centroid_x(b, slice(90, 180)) - centroid_x(a, slice(90, 180))
    assert near == pytest.approx(40, abs=0.5) and far == pytest.approx(20, abs=0.5)
    # the base never shows its edge (it is black everywhere, the border replicates nothing brighter)
    assert a[:, :2].max() == 0 and b[:, -2:].max() == 0


def _solid_clip(rgb: tuple[float, float, float], seconds: float = 2.0) -> Clip:
    return camera(Image.solid(64, 36, (*rgb, 1)), move="still", duration_s=seconds, width=64, height=36, fps=10)


def test_transitions_and_sequence_timing():
    red, blue = _solid_clip((1, 0, 0)), _solid_clip((0, 0, 1), 3.0)
    seq = sequence([red, blue], transition="crossfade", transition_s=1.0)
    assert seq.duration_s == pytest.approx(4.0) and seq.num_frames == 40
    assert sequence([red, blue], transition="cut").duration_s == pytest.approx(5.0)
    mid = FrameRenderer(seq).frame(1.5)  # half-way through the crossfade
    assert tuple(mid[10, 10]) == pytest.approx((128, 0, 128), abs=1)
    a = np.full((4, 8, 3), 200, np.uint8)
    b = np.full((4, 8, 3), 40, np.uint8)
    assert transition_mix("fade_black", a, b, 0.5).max() == 0
    assert transition_mix("fade_black", a, b, 0.25).max() == 100
    wipe = transition_mix("wipe_right", a, b, 0.5)
    assert (wipe[:, :4] == 40).all() and (wipe[:, 4:] == 200).all()
    assert (transition_mix("cut", a, b, 0.3) == b).all()  # a cut shows the next shot at once


def test_captions_are_burned_inside_the_safe_area():
    clip = _solid_clip((0.2, 0.4, 0.6), 3.0)
    clip = Clip(640, 360, 10, (Shot(clip.shots[0].layers, 3.0, (0, 0, 64, 36), (0, 0, 64, 36)),))
    subs = Subtitles((TimedText("Once upon a time there was a fox who could not sleep at all", 1.0, 2.0),))
    r0, r1 = FrameRenderer(clip), FrameRenderer(captions(clip, subs, style="outline"))
    plain, burned = r0.frame(1.5), r1.frame(1.5)
    changed = np.argwhere(np.any(plain != burned, axis=2))
    assert len(changed) > 500
    assert changed[:, 1].min() >= 0.05 * 640 and changed[:, 1].max() < 0.95 * 640  # side margins
    assert changed[:, 0].max() < 360 * (1 - 0.08)  # above the bottom margin
    assert (r1.frame(0.5) == r0.frame(0.5)).all() and (r1.frame(2.5) == r0.frame(2.5)).all()  # only during the cue
    boxed = FrameRenderer(captions(clip, subs, style="box")).frame(1.5)
    assert np.any(boxed != burned)


def test_bad_motion_input_is_refused_clearly():
    img = Image.solid(64, 36, (1, 1, 1, 1))
    with pytest.raises(OpError, match="width 641 is odd.*even") as e:
        camera(img, width=641, height=360)
    assert e.value.param == "width"
    with pytest.raises(OpError, match="ken_burns needs start_rect and end_rect"):
        camera(img, move="ken_burns")
    with pytest.raises(OpError, match="must lie inside the image"):
        camera(img, move="ken_burns", start_rect=[0, 0, 1, 1], end_rect=[0.8, 0.8, 0.5, 0.5])
    small = camera(img, width=32, height=18)
    with pytest.raises(OpError, match="clip 1 is 32×18"):
        sequence([_solid_clip((1, 1, 1)), small])
    with pytest.raises(OpError, match="longer than the shots"):
        sequence([_solid_clip((1, 1, 1), 1.0), _solid_clip((1, 1, 1))], transition_s=2.0)
    with pytest.raises(Exception, match="transitions"):
        Clip(64, 36, 10, (_solid_clip((1, 1, 1)).shots[0],) * 2, (Transition(), Transition()))


def test_layers_land_in_the_same_place_when_large_stills_are_prefiltered():
    # a 4× larger base is shrunk (area average) before warping; layer placement must not move
    def frame(scale: int) -> np.ndarray:
        base = Image.solid(320 * scale, 180 * scale, (0, 0, 0, 1))
        dot = Image.solid(10 * scale, 10 * scale, (1, 1, 1, 1))
        clip = parallax(base, [dot], settings=[{"x": 100 * scale, "y": 60 * scale, "depth": 1}], travel_px=0,
                        duration_s=1.0, width=320, height=180, fps=10)
        return FrameRenderer(clip).frame(0.5)[:, :, 0].astype(float)

    small, large = frame(1), frame(4)
    ys, xs = np.nonzero(small > 127)
    yl, xl = np.nonzero(large > 127)
    assert (xs.mean(), ys.mean()) == pytest.approx((xl.mean(), yl.mean()), abs=0.5)


@pytest.mark.parametrize("crossfade", [True, False])
def test_flipbook_shows_each_image_at_the_center_of_its_slot(crossfade):
    colors = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]
    images = [Image.solid(80, 60, (*c, 1)) for c in colors]
    clip = flipbook(images, duration_s=1.0, crossfade=crossfade, width=64, height=48, fps=24)
    assert abs(clip.duration_s - 1.0) < 1e-9 and clip.num_frames == 24
    renderer = FrameRenderer(clip)
    for k, c in enumerate(colors):
        frame = renderer.frame((k + 0.5) * 0.25)
        assert np.abs(frame[24, 32].astype(int) - np.array(c) * 255).max() <= 2, (k, frame[24, 32])
    if crossfade:  # between two slot centers the frames blend
        mid = renderer.frame(0.25).astype(int)[24, 32]
        assert 100 < mid[0] < 155 and 100 < mid[1] < 155
    with pytest.raises(OpError, match="at least 2 images"):
        flipbook(images[:1])
    with pytest.raises(OpError, match="less than one frame"):
        flipbook(images, duration_s=0.1, fps=24)
