"""Latent interpolation of the built-in image model: are the morphs smooth, do the ends match?

    python bench/interpolate.py            # the shipped weights (weights/image), ~1–2 min
    → bench/results/interpolate.json, bench/results/interpolate.png (one row per morph)

For each morph (two prompts and/or two seeds, 16 frames, ``strata.models.image_pipeline.interpolate``):

- **Smoothness.** The RMS pixel distance between adjacent frames (RGB over white, 0–255), its
  mean and max over the 15 steps, and max/mean: 1 is perfectly even; a jump shows as a large
  ratio. For scale, the same distance between the two end frames (the whole morph) and between
  two unrelated seeds of the first prompt (a hard cut).
- **Endpoints.** The first and last frames against ``generate(prompt, seed=...)``: equal bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402
from quality import save_grid  # noqa: E402

from strata.media.image import Image  # noqa: E402
from strata.models.builtin import image_model_dir  # noqa: E402
from strata.models.image_diffusion import ImageDiffusionModel  # noqa: E402
from strata.models.samplers import DEFAULT_GUIDANCE  # noqa: E402
from strata.models.image_pipeline import generate, interpolate  # noqa: E402

# (prompt_a, seed_a, prompt_b, seed_b): a seed walk, a prompt walk, and both at once.
MORPHS = (
    ("red apple", 0, "red apple", 1),
    ("cat face", 3, "dog face", 3),
    ("banana", 5, "pineapple", 6),
    ("automobile", 7, "bus", 8),
    ("sunflower", 11, "tulip", 12),
)
FRAMES = 16


def seen(image: Image) -> np.ndarray:
    """RGB over white, 0–255 float (what a viewer compares)."""
    a = image.alpha[..., None]
    return (image.rgb * a + (1 - a)) * 255.0


def rms(a: Image, b: Image) -> float:
    return float(np.sqrt(np.mean((seen(a) - seen(b)) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="exported model dir (default: the shipped weights)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    directory = Path(args.model) if args.model else image_model_dir()
    model = ImageDiffusionModel.from_pretrained(directory)
    settings = {"frames": FRAMES, "steps": 20, "guidance": DEFAULT_GUIDANCE, "sampler": "dpmpp"}
    morphs, rows = [], []
    for prompt_a, seed_a, prompt_b, seed_b in MORPHS:
        t = time.time()
        frames = interpolate(model, prompt_a, prompt_b, seed_a=seed_a, seed_b=seed_b, frames=FRAMES).images
        seconds = time.time() - t
        first = generate(model, prompt_a, seed=seed_a).images[0]
        last = generate(model, prompt_b, seed=seed_b).images[0]
        cut = generate(model, prompt_a, seed=seed_a + 1000).images[0]
        steps = [rms(a, b) for a, b in zip(frames, frames[1:])]
        mean, top = float(np.mean(steps)), float(np.max(steps))
        rec = {
            "prompt_a": prompt_a, "seed_a": seed_a, "prompt_b": prompt_b, "seed_b": seed_b,
            "step_rms": [round(s, 2) for s in steps],
            "mean_step_rms": round(mean, 2), "max_step_rms": round(top, 2), "max_over_mean": round(top / mean, 2),
            "largest_step_at": int(np.argmax(steps)),
            "end_to_end_rms": round(rms(frames[0], frames[-1]), 2),
            "cut_rms": round(rms(first, cut), 2),
            "endpoints_equal_generate": bool(frames[0].pixels.tobytes() == first.pixels.tobytes()
                                             and frames[-1].pixels.tobytes() == last.pixels.tobytes()),
            "seconds_per_frame": round(seconds / FRAMES, 3),
        }
        print(json.dumps({k: v for k, v in rec.items() if k != "step_rms"}), flush=True)
        morphs.append(rec)
        rows.append(torch.stack([torch.from_numpy(np.array(f.pixels)).permute(2, 0, 1) for f in frames]))
    strip = save_grid(torch.cat(rows), FRAMES, RESULTS / "interpolate.png", scale=1,
                      labels=[f"{m['prompt_a']} s{m['seed_a']}>s{m['seed_b']}" if m["prompt_a"] == m["prompt_b"]
                              else f"{m['prompt_a']}>{m['prompt_b']}" for m in morphs])  # the label font is ASCII
    ratios = [m["max_over_mean"] for m in morphs]
    result = {
        "model": f"{directory} (sha256 {model.weights_sha256[:12]})",
        "settings": settings,
        "distance": "RMS over pixels of RGB over white, 0–255",
        "morphs": morphs,
        "summary": {"max_over_mean_median": float(np.median(ratios)), "max_over_mean_worst": float(max(ratios)),
                    "mean_step_over_cut": round(float(np.mean([m["mean_step_rms"] / m["cut_rms"] for m in morphs])), 3),
                    "max_step_over_cut": round(float(max(m["max_step_rms"] / m["cut_rms"] for m in morphs)), 3),
                    "all_endpoints_equal": all(m["endpoints_equal_generate"] for m in morphs)},
        "strip": str(strip),
        "seconds": round(time.time() - t0, 1),
    }
    path = write_result("interpolate", result)
    print(json.dumps(result["summary"], indent=1))
    print(f"→ {path}")


if __name__ == "__main__":
    main()
