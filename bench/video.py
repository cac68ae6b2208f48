"""Render a 30 s 1280×720 timeline (camera moves + crossfades + audio) with strata and with moviepy.

Run: ``.venv/bin/python bench/video.py [--moviepy-python PATH] [--repeats 2] [--seconds 30]``;
writes ``bench/results/video.json``.

The timeline: six photographs (scikit-image's samples), each a 5.67 s shot with a camera move
(zoom in/out, pans, Ken Burns; sine ease-in-out), joined by 0.8 s crossfades → 30 s at 30 fps,
with a 30 s stereo soundtrack; H.264 (libx264, preset veryfast, CRF 20, yuv420p) + AAC.

moviepy renders the *same* timeline — the same camera rectangles, computed here and handed
over as JSON, cropped and resized per frame with Pillow (how moviepy's own Resize works), and
moviepy's CrossFadeIn — through its FFmpeg writer with the same codec settings. moviepy 2.2
pins an older Pillow than strata, so it lives in a separate venv (``--moviepy-python``, default
``/tmp/mpvenv/bin/python``; make it with ``python3 -m venv /tmp/mpvenv &&
/tmp/mpvenv/bin/pip install moviepy``) and runs as a subprocess, timed end to end like strata's
render (its interpreter start-up, ~0.5 s, is measured separately and subtracted).

Each side gets one short warm-up render, then ``repeats`` full renders; medians are reported.
``speedup`` = moviepy seconds / strata seconds; the target is ≥ 2.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_dir, timed, write_result  # noqa: E402

from strata.media.audio import Audio, encode_wav  # noqa: E402
from strata.media.mp4 import encode_mp4, probe_mp4  # noqa: E402
from strata.media.video import Clip, Layer, Shot, Transition  # noqa: E402
from strata.ops.io import sample_image  # noqa: E402
from strata.ops.motion import camera_rects  # noqa: E402

W, H, FPS, XFADE = 1280, 720, 30, 0.8
PHOTOS = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry"]
MOVES = [("zoom_in", None), ("pan_right", None), ("ken_burns", ([0, 0, 1, 1], [0.4, 0.1, 0.4, 0.4])),
         ("zoom_out", None), ("pan_up", None), ("zoom_in", None)]
TARGET_SPEEDUP = 2.0

MOVIEPY_SCRIPT = r'''
import json, sys, time
import numpy as np
from PIL import Image
from moviepy import AudioFileClip, CompositeVideoClip, ImageClip, vfx

spec = json.load(open(sys.argv[1]))
W, H, FPS, X = spec["width"], spec["height"], spec["fps"], spec["xfade"]

def ease(u):
    return 0.5 - 0.5 * np.cos(np.pi * min(1.0, max(0.0, u)))

def shot(sc):
    img = np.asarray(Image.open(sc["path"]).convert("RGB"))
    d, a, b = sc["duration"], sc["start"], sc["end"]
    def frame(get_frame, t):
        u = ease(t / d)
        x, y, w, h = (p + (q - p) * u for p, q in zip(a, b))
        crop = Image.fromarray(img).crop((x, y, x + w, y + h))
        return np.asarray(crop.resize((W, H), Image.BILINEAR))
    return ImageClip(img).with_duration(d).transform(frame)

clips, t = [], 0.0
for i, sc in enumerate(spec["scenes"]):
    c = shot(sc).with_start(t)
    if i:
        c = c.with_effects([vfx.CrossFadeIn(X)])
    clips.append(c)
    t += sc["duration"] - X
video = CompositeVideoClip(clips, size=(W, H)).with_duration(spec["seconds"])
video = video.with_audio(AudioFileClip(spec["audio"]).with_duration(spec["seconds"]))
video.write_videofile(spec["out"], fps=FPS, codec="libx264", audio_codec="aac", preset="veryfast",
                      ffmpeg_params=["-crf", "20", "-pix_fmt", "yuv420p"], threads=2, logger=None)
'''


def build(seconds: float) -> tuple[Clip, Audio, list[dict]]:
    """The timeline for strata, the soundtrack, and the same scenes as plain numbers for moviepy."""
    n = len(PHOTOS)
    dur = (seconds + (n - 1) * XFADE) / n
    shots, scenes = [], []
    tmp = scratch_dir("strata-bench-")
    for name, (move, rects) in zip(PHOTOS, MOVES):
        img = sample_image(name=name)
        start, end = camera_rects(img.width, img.height, W, H, move, 1.3, *(rects or (None, None)))
        shots.append(Shot((Layer(img),), dur, start, end, "ease_in_out"))
        path = tmp / f"{name}.png"
        from PIL import Image as PILImage

        PILImage.fromarray(img.to_uint8()[:, :, :3]).save(path)
        scenes.append({"path": str(path), "duration": dur, "start": list(start), "end": list(end)})
    clip = Clip(W, H, FPS, tuple(shots), tuple(Transition("crossfade", XFADE) for _ in shots[1:]))
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * 48000)) / 48000
    music = 0.2 * np.sin(2 * np.pi * 220 * t) + 0.02 * rng.standard_normal(len(t))
    return clip, Audio(np.stack([music, music]).astype(np.float32), 48000), scenes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--moviepy-python", default="/tmp/mpvenv/bin/python")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()

    load0 = __import__("os").getloadavg()[0]
    clip, audio, scenes = build(args.seconds)
    work = scratch_dir("strata-bench-")
    wav = work / "music.wav"
    wav.write_bytes(encode_wav(audio))

    # strata: warm-up on a 2 s cut of the same timeline, then full renders
    short = Clip(W, H, FPS, clip.shots[:1])
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    encode_mp4(short, None)
    result: dict = {}
    strata_t = timed(lambda: result.update(data=encode_mp4(clip, audio)), repeats=args.repeats, warmup=0)
    rss_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    streams = probe_mp4(result["data"])["streams"]

    out: dict = {
        # both renders share the machine with whatever else runs (a training job, tests): the
        # speedup is the comparable number; realtime factors depend on the load
        "load_average_1m_start": round(load0, 2),
        "timeline": {"seconds": clip.duration_s, "width": W, "height": H, "fps": FPS, "shots": len(clip.shots),
                     "crossfade_s": XFADE, "codec": "libx264 veryfast crf 20 yuv420p + aac"},
        "strata": {**strata_t, "realtime_factor": round(clip.duration_s / strata_t["median_s"], 2),
                   "peak_rss_growth_mb": round(rss_mb, 1), "frames": streams["video"]["frames"],
                   "video_s": streams["video"]["duration_s"], "audio_s": streams["audio"]["duration_s"]},
    }

    mp = Path(args.moviepy_python)
    if not mp.is_file():
        out["moviepy"] = {"skipped": f"no moviepy interpreter at {mp}; see the module docstring"}
    else:
        script = work / "moviepy_render.py"
        script.write_text(MOVIEPY_SCRIPT)

        def spec(seconds: float, scenes_: list[dict]) -> Path:
            p = work / f"spec{seconds}.json"
            p.write_text(json.dumps({"width": W, "height": H, "fps": FPS, "xfade": XFADE, "seconds": seconds,
                                     "scenes": scenes_, "audio": str(wav), "out": str(work / "moviepy.mp4")}))
            return p

        def run(p: Path) -> None:
            subprocess.run([str(mp), str(script), str(p)], check=True, capture_output=True)

        startup = timed(lambda: subprocess.run([str(mp), "-c", "import moviepy"], check=True, capture_output=True),
                        repeats=3, warmup=1)["median_s"]
        run(spec(2.0, scenes[:1]))  # warm-up
        full = spec(clip.duration_s, scenes)
        mp_t = timed(lambda: run(full), repeats=args.repeats, warmup=0)
        mp_s = mp_t["median_s"] - startup
        mstreams = probe_mp4(work / "moviepy.mp4")["streams"]
        out["moviepy"] = {**mp_t, "import_startup_s": round(startup, 3), "render_s": round(mp_s, 3),
                          "realtime_factor": round(clip.duration_s / mp_s, 2), "frames": mstreams["video"]["frames"],
                          "video_s": mstreams["video"]["duration_s"], "audio_s": mstreams["audio"]["duration_s"]}
        out["speedup"] = round(mp_s / strata_t["median_s"], 2)
        out["target_speedup"] = TARGET_SPEEDUP
        out["meets_target"] = out["speedup"] >= TARGET_SPEEDUP
    path = write_result("video", out)
    print(json.dumps(out, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"total {time.perf_counter() - t0:.1f} s")
