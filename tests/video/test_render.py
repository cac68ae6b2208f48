"""video.*: timelines from narration, MP4 encoding read back with PyAV, poster, outputs, codecs."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest

from strata.errors import OpError
from strata.media.audio import Audio, encode_wav, read_riff_chunk
from strata.media.codec import decode_value, encode_value
from strata.media.image import Image
from strata.media.timed_text import Subtitles, TimedText, Words
from strata.media.mp4 import Video, probe_mp4
from strata.media.video import Clip
from strata.media.writers import encode_file
from strata.ops.motion import camera, sequence
from strata.ops.video import poster, render, timeline
from strata.store import Store
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow

W, H, FPS = 128, 72, 24


def tone(seconds: float, rate: int = 22050) -> Audio:
    t = np.arange(int(seconds * rate)) / rate
    return Audio.mono(0.3 * np.sin(2 * np.pi * 330 * t), rate)


def still(rgb=(0.8, 0.5, 0.2), seconds=2.0) -> Clip:
    return camera(Image.solid(160, 90, (*rgb, 1)), move="zoom_in", duration_s=seconds, width=W, height=H, fps=FPS)


def read_back(data: bytes) -> dict:
    info = probe_mp4(data)
    return info["streams"]


def test_render_gives_web_playable_mp4_with_streams_ending_together():
    clip = sequence([still(), still((0.1, 0.3, 0.9), 1.5)], transition="fade_black", transition_s=0.5)
    video = render(clip, tone(2.2))
    s = read_back(video.data)
    v, a = s["video"], s["audio"]
    assert (v["codec"], v["pix_fmt"], v["width"], v["height"]) == ("h264", "yuv420p", W, H)
    assert a["codec"] == "aac" and a["sample_rate_hz"] == 48000
    assert v["frames"] == clip.num_frames == 72
    assert abs(v["duration_s"] - a["duration_s"]) <= 1 / FPS  # equal within one frame
    assert video.data.index(b"moov") < video.data.index(b"mdat")  # faststart: playable while downloading
    with av.open(__import__("io").BytesIO(video.data)) as c:  # decodes, and the picture is there
        frame = next(c.decode(video=0)).to_ndarray(format="rgb24")
    assert abs(int(frame[H // 2, W // 2, 0]) - 204) < 12  # 0.8 × 255, through BT.709 and back


def test_audio_longer_than_the_video_follows_the_documented_policy():
    clip = still(seconds=1.0)
    with pytest.raises(OpError, match="audio .* is longer than the video") as e:
        render(clip, tone(2.0))
    assert e.value.param == "audio_overrun"
    trimmed = read_back(render(clip, tone(2.0), audio_overrun="trim").data)
    assert trimmed["video"]["frames"] == 24 and abs(trimmed["audio"]["duration_s"] - 1.0) <= 1 / FPS
    held = read_back(render(clip, tone(2.0), audio_overrun="hold").data)
    assert held["video"]["frames"] == 48 and abs(held["audio"]["duration_s"] - held["video"]["duration_s"]) <= 1 / FPS


def test_timeline_takes_scene_lengths_from_narration():
    imgs = [Image.solid(160, 90, (1, 0, 0, 1)), Image.solid(160, 90, (0, 0, 1, 1))]
    nar = [tone(1.0), tone(1.5)]
    words = [Words((TimedText("one", 0.1, 0.5),)), Words((TimedText("two", 0.2, 0.9),))]
    out = timeline(imgs, nar, words, scenes=[{"image": 0}, {"image": 1, "move": "pan_left"}],
                   transition="crossfade", transition_s=0.5, lead_s=0.5, tail_s=0.5, width=W, height=H, fps=FPS)
    clip, track, timed = out["clip"], out["narration"], out["words"]
    assert [s.duration_s for s in clip.shots] == pytest.approx([2.0, 2.5])  # lead + narration + tail
    assert clip.duration_s == pytest.approx(4.0)  # minus the 0.5 s overlap
    assert track.duration_s == pytest.approx(clip.num_frames / FPS)
    x = np.abs(track.samples[0])
    first = np.argmax(x > 1e-4) / track.sample_rate_hz
    assert first == pytest.approx(0.5, abs=0.01)  # narration 0 starts lead_s into scene 0
    second_start = 2.0 - 0.5 + 0.5  # scene 1 starts at 1.5 s; its narration lead_s later (2.0 s)
    assert np.all(x[int(1.5 * 22050) + 10 : int(second_start * 22050) - 10] < 1e-4)  # silent in between
    assert [(w.text, w.start_s) for w in timed.items] == [("one", pytest.approx(0.6)), ("two", pytest.approx(2.2))]


def test_bad_timelines_are_refused_clearly():
    imgs = [Image.solid(160, 90, (1, 0, 0, 1))]
    with pytest.raises(OpError, match=r"scene 1 refers to image 3, but only 1 image\(s\) are connected"):
        timeline(imgs, scenes=[{"image": 0, "duration_s": 1}, {"image": 3, "duration_s": 1}], width=W, height=H)
    with pytest.raises(OpError, match="neither duration_s nor a narration"):
        timeline(imgs, scenes=[{"image": 0}], width=W, height=H)
    with pytest.raises(OpError, match="refers to narration 2"):
        timeline(imgs, [tone(1)], scenes=[{"image": 0, "narration": 2}], width=W, height=H)
    with pytest.raises(OpError, match="height 71 is odd"):
        timeline(imgs, scenes=[{"image": 0, "duration_s": 1}], width=W, height=71)
    with pytest.raises(OpError, match="narration needs"):
        timeline(imgs, [tone(2)], scenes=[{"image": 0, "duration_s": 1}], width=W, height=H)
    with pytest.raises(OpError, match="past the end"):
        poster(still(seconds=1.0), time_s=5)


def test_poster_and_codecs_round_trip():
    clip = still()
    img = poster(clip)
    assert img.size == (W, H)
    subs = Subtitles((TimedText("hi", 0.0, 1.0),))
    clip = clip.with_captions(subs, clip.caption_style)
    for value in (tone(0.5), Words((TimedText("a", 0, 0.25),)), subs, clip, Video(b"\x00\x01")):
        kind, data = encode_value(value)
        back = decode_value(kind, data)
        assert encode_value(back) == (kind, data), kind  # lossless and deterministic
    np.testing.assert_array_equal(poster(decode_value(*encode_value(clip))).pixels,
                                  poster(clip).pixels)


def test_workflow_writes_mp4_wav_srt_vtt_with_provenance(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_SIGN", "0")  # signing is tested where it lives; here: our own metadata
    wav = tmp_path / "tone.wav"
    wav.write_bytes(encode_wav(tone(1.5)))
    wf = parse_workflow({"name": "av", "seed": 0, "nodes": [
        {"id": "pic", "op": "io.sample_image", "params": {"name": "coffee"}},
        {"id": "cam", "op": "motion.camera", "inputs": {"image": "pic"},
         "params": {"move": "pan_right", "duration_s": 2, "width": W, "height": H, "fps": FPS}},
        {"id": "snd", "op": "sound.load_audio", "params": {"path": str(wav)}},
        {"id": "mix", "op": "sound.mix", "inputs": {"tracks": ["snd"]}, "params": {"target_lufs": -16}},
        {"id": "film", "op": "video.render", "inputs": {"clip": "cam", "audio": "mix"}},
    ], "outputs": {"film.mp4": "film", "mix.wav": "mix"}}, base_dir=tmp_path)
    result = Executor(Store(tmp_path / "store")).run(wf, out_dir=tmp_path / "out")
    assert result.ok, result.failed
    meta = probe_mp4(tmp_path / "out" / "film.mp4")["metadata"]
    prov = json.loads(meta["comment"])
    assert prov["op"] == "video.render" and prov["workflow"]["name"] == "av" and "strata" in meta["description"]
    wav_prov = json.loads(read_riff_chunk(tmp_path / "out" / "mix.wav", b"strt"))
    assert wav_prov["op"] == "sound.mix" and wav_prov["params"]["target_lufs"] == -16

    from strata.provenance.metadata import Provenance

    p = Provenance(source="generated", created=None)
    subs = Subtitles((TimedText("Hello --> there", 0.5, 1.25),))
    assert encode_file(".srt", subs, p).decode() == "1\n00:00:00,500 --> 00:00:01,250\nHello --> there\n"
    vtt = encode_file(".vtt", subs, p).decode()
    assert vtt.startswith("WEBVTT\n\nNOTE strata provenance {") and "00:00:00.500 --> 00:00:01.250" in vtt
    with pytest.raises(Exception, match="holds Subtitles"):
        encode_file(".srt", tone(1), p)


def test_odd_size_and_wrong_output_type_fail_at_validation():
    from strata.errors import WorkflowError
    from strata.workflow.validate import validate

    wf = parse_workflow({"name": "odd", "nodes": [
        {"id": "pic", "op": "io.sample_image"},
        {"id": "cam", "op": "motion.camera", "inputs": {"image": "pic"}, "params": {"width": 641, "height": 360}},
    ]})
    with pytest.raises(WorkflowError, match="node 'cam', 'width': Input should be a multiple of 2"):
        validate(wf)
    wf = parse_workflow({"name": "clip-as-mp4", "nodes": [
        {"id": "pic", "op": "io.sample_image"},
        {"id": "cam", "op": "motion.camera", "inputs": {"image": "pic"}},
    ], "outputs": {"film.mp4": "cam"}})
    with pytest.raises(WorkflowError, match="'film.mp4' holds Video, but 'cam' gives Clip; connect a node that makes Video"):
        validate(wf)


def test_mp4_sound_meets_loudness_and_true_peak_after_aac():
    """The acceptance numbers, measured on what a viewer hears: the MP4's decoded AAC."""
    import io

    import pyloudnorm
    from scipy.signal import resample as fft_resample

    from strata.ops.sound import mix

    rate = 48000
    rng = np.random.default_rng(3)
    t = np.arange(8 * rate) / rate
    from scipy.signal import butter, sosfilt

    # syllable-shaped noise band-limited like speech (AAC drops the top octave of white noise,
    # which would change the loudness for a reason no narration has)
    band = sosfilt(butter(4, [100, 4000], "bandpass", fs=rate, output="sos"), rng.standard_normal(len(t)))
    voice = 0.6 * np.clip(np.sin(2 * np.pi * 4 * t), 0, None) * band
    music = 0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 331 * t)
    final = mix([Audio.mono(voice, rate), Audio.mono(music, rate)], target_lufs=-14.0, true_peak_dbtp=-1.0)
    video = render(still(seconds=8.0), final)
    with av.open(io.BytesIO(video.data)) as c:
        heard = np.concatenate([f.to_ndarray() for f in c.decode(audio=0)], axis=1)
    lufs = pyloudnorm.Meter(rate).integrated_loudness(heard.T.astype(np.float64))
    tp = 20 * np.log10(np.abs(fft_resample(heard, heard.shape[1] * 4, axis=1)).max())
    assert abs(lufs - (-14.0)) <= 0.5 and tp <= -1.0, (lufs, tp)


def test_timeline_scene_can_use_a_prepared_parallax_clip():
    from strata.ops.motion import parallax

    base = Image.solid(160, 90, (0.2, 0.2, 0.2, 1))
    dot = Image.solid(8, 8, (1, 1, 1, 1))
    par = parallax(base, [dot], settings=[{"x": 40, "y": 40, "depth": 1}], travel_px=30, duration_s=1.0,
                   width=W, height=H, fps=FPS)
    out = timeline([base], [tone(1.0)], clips=[par], scenes=[{"clip": 0}, {"image": 0, "duration_s": 1.0}],
                   transition="cut", lead_s=0.5, tail_s=0.5, width=W, height=H, fps=FPS)
    shot = out["clip"].shots[0]
    assert shot.duration_s == pytest.approx(2.0) and shot.parallax_px == (30, 0.0) and len(shot.layers) == 2
    with pytest.raises(OpError, match="exactly one of image or clip"):
        timeline([base], clips=[par], scenes=[{"image": 0, "clip": 0, "duration_s": 1}], width=W, height=H, fps=FPS)
    with pytest.raises(OpError, match="clip 0 is 128×72 @ 24 fps but the timeline is 256×144"):
        timeline(clips=[par], scenes=[{"clip": 0, "duration_s": 1}], width=256, height=144, fps=FPS)
    with pytest.raises(OpError, match="refers to clip 1"):
        timeline(clips=[par], scenes=[{"clip": 1, "duration_s": 1}], width=W, height=H, fps=FPS)
