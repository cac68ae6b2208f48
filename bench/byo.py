"""Bring-your-own-model overhead: strata vs the same diffusers pipeline called directly.

    python bench/byo.py [--repeats 7] [--steps 10] [--size 64]      → bench/results/byo.json

Builds a small random SD 1.5-style pipeline (no downloads; the test suite's builder with wider
channels), registers it as a user model, and times, alternating A/B after a warm-up:

- direct: ``pipe(prompt, generator=[seed + i ...], output_type="np")`` with the scheduler set
  from the pipeline's own config (Euler a), the way a diffusers user calls it;
- op: ``strata.ops.generate.generate(..., model=..., loaded_model=...)`` (the op a workflow runs);
- engine: the one-node workflow through the executor (cache off; includes storing the result).

Both paths use the same pipeline object, scheduler and seeds, so the output bytes must be
identical (checked). Target: op overhead ≤ 3 % of the direct time.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _common import scratch_dir, write_result  # noqa: E402


def build(directory: Path, size: int) -> None:
    import byo_tiny
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(0)
    # wider than the tests' model so the UNet, not Python, dominates (as it does for real models)
    unet = UNet2DConditionModel(block_out_channels=(64, 128), layers_per_block=1, sample_size=size // 2,
                                in_channels=4, out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), norm_num_groups=8,
                                cross_attention_dim=16, attention_head_dim=8).eval()
    pipe = StableDiffusionPipeline(unet=unet, vae=byo_tiny.vae(), scheduler=byo_tiny.scheduler(),
                                   text_encoder=byo_tiny.text_encoder(),
                                   tokenizer=byo_tiny.tokenizer(directory.parent / "tok"), safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(directory, safe_serialization=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--size", type=int, default=64, help="output side, px")
    ap.add_argument("--count", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)  # the machine is shared; one thread keeps timings stable

    import os

    from diffusers import EulerAncestralDiscreteScheduler

    tmp = scratch_dir("strata-bench-byo-")
    os.environ["STRATA_CONFIG"] = str(tmp / "config")
    os.environ["STRATA_SIGN"] = "0"
    build(tmp / "model", args.size)

    from strata.models.registry import default_registry
    from strata.models.user_models import add_user_model
    from strata.ops.generate import generate
    from strata.store import Store
    from strata.workflow.executor import Executor
    from strata.workflow.spec import parse_workflow

    add_user_model("bench", tmp / "model")
    registry = default_registry()
    model = registry.load("text-to-image", {"model": "bench"})
    pipe = model.pipe
    prompt, seed, guidance = "a red apple", 7, 5.0

    def direct() -> np.ndarray:
        pipe.scheduler = EulerAncestralDiscreteScheduler.from_config(pipe.scheduler.config)
        gens = [torch.Generator("cpu").manual_seed(seed + i) for i in range(args.count)]
        return pipe(prompt, num_images_per_prompt=args.count, num_inference_steps=args.steps, guidance_scale=guidance,
                    generator=gens, output_type="np").images

    def op() -> np.ndarray:
        images = generate(prompt=prompt, count=args.count, seed=seed, steps=args.steps, guidance=guidance,
                          sampler="Euler a", model="bench", loaded_model=model)
        return np.stack([im.pixels[..., :3] for im in images])

    store = Store(tmp / "store")
    workflow = parse_workflow({"name": "byo", "seed": seed, "nodes": [{"id": "g", "op": "image.generate", "params": {
        "prompt": prompt, "count": args.count, "steps": args.steps, "guidance": guidance, "sampler": "Euler a",
        "model": "bench"}}], "outputs": {}})
    executor = Executor(store, models=registry)

    def engine() -> np.ndarray:
        result = executor.run(workflow, no_cache=True)
        return np.stack([im.pixels[..., :3] for im in store.get_value(result.refs["g"]["images"])])

    reference = direct()
    identical = {"op": op().tobytes() == reference.tobytes(), "engine": engine().tobytes() == reference.tobytes()}
    samples: dict[str, list[float]] = {"direct": [], "op": [], "engine": []}
    for _ in range(args.repeats):  # alternate so drift in the shared CPU hits all three alike
        for name, fn in (("direct", direct), ("op", op), ("engine", engine)):
            t = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in samples.items()}
    best = {k: min(v) for k, v in samples.items()}
    # The CPU is shared (load > cores), so a single median is noisy: the overhead is the median
    # of per-round ratios (each round runs all three back to back), with the min-time ratio beside it.
    overhead = {k: 100 * (statistics.median(a / d for a, d in zip(samples[k], samples["direct"])) - 1)
                for k in ("op", "engine")}
    overhead_min = {k: 100 * (best[k] / best["direct"] - 1) for k in ("op", "engine")}
    data = {
        "setup": {"model": "random SD 1.5-style UNet (64, 128 channels), tiny VAE + CLIP", "size_px": args.size,
                  "steps": args.steps, "count": args.count, "sampler": "Euler a", "guidance": guidance,
                  "repeats": args.repeats, "unet_params": sum(p.numel() for p in pipe.unet.parameters())},
        "median_s": med, "min_s": best, "all_s": samples, "overhead_pct": overhead,
        "overhead_pct_of_min_times": overhead_min, "identical_bytes": identical,
        "target": "op overhead ≤ 3 % of direct; identical bytes",
        "meets_target": identical["op"] and identical["engine"] and overhead["op"] <= 3.0,
    }
    path = write_result("byo", data)
    print(f"direct {med['direct']:.3f} s, op {med['op']:.3f} s ({overhead['op']:+.2f} %, min {overhead_min['op']:+.2f} %), "
          f"engine {med['engine']:.3f} s ({overhead['engine']:+.2f} %, min {overhead_min['engine']:+.2f} %); "
          f"identical bytes: {identical} → {path}")


if __name__ == "__main__":
    main()
