"""Generation speed of the built-in text-to-image model on this machine.

    python bench/generate.py [--repeats 10]      → bench/results/generate.json

Median of ``repeats`` runs after a warm-up: one 64×64 image (20 DPM-Solver++ steps, the default guidance
7.5 on the default share of the steps, ``guidance_stop``) and a batch of 8, with a breakdown (text encode / denoise / decode) and the UNet's achieved
GFLOP/s beside a plain fp32 matmul's GFLOP/s measured in the same run (how close the model
gets to what the CPU can do). Targets: 1 image ≤ 0.4 s, 8 images ≤ 2 s.

``unet_call``: one UNet call at the batch sizes the pipeline runs for 1 and 8 images (2 and 16
rows with two-call guidance; 1 and 8 for a model that reads the guidance scale) on ONNX Runtime
(for loaded weights), beside eager PyTorch on the same weights and inputs, and the one-time cost
of the ONNX graph (export + session on first use; session only in a later process).

Uses the shipped weights when present, else the training recipe's architecture with random
weights (speed depends on the architecture only; the JSON says which).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from strata.models.builtin import image_model_dir  # noqa: E402
from strata.models.image_autoencoder import PatchAutoencoder  # noqa: E402
from strata.models.image_diffusion import ImageDiffusionModel, guidance_features  # noqa: E402
from strata.models.samplers import BUILTIN_GUIDANCE_STOP, DEFAULT_GUIDANCE, Sampling  # noqa: E402
from strata.models.image_pipeline import generate, guided_steps, two_calls  # noqa: E402
from strata.train.image import TrainConfig  # noqa: E402


def load_model() -> tuple[ImageDiffusionModel, str]:
    directory = image_model_dir()
    if (directory / "unet.safetensors").is_file():
        return ImageDiffusionModel.from_pretrained(directory), f"shipped weights ({directory})"
    cfg = TrainConfig.load()
    ae = None
    if cfg.model.latent == "autoencoder":
        from strata.train.autoencoder import AutoencoderTrainConfig

        ae = PatchAutoencoder(AutoencoderTrainConfig.load().model).eval()
    return ImageDiffusionModel.random(cfg.model, seed=0, autoencoder=ae), "recipe architecture, random weights"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, one-time kernel selection)
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def matmul_gflops(n: int = 1024, repeats: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = median_time(lambda: a @ b, repeats)
    return 2 * n**3 / seconds / 1e9


def unet_flops(model: ImageDiffusionModel, batch: int) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x, t, ctx, mask, scale = unet_inputs(model, batch)
    guide = guide_of(model, scale, batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.unet(x, t, encoder_hidden_states=ctx, encoder_attention_mask=mask, timestep_cond=guide)
    return int(counter.get_total_flops())


def unet_inputs(model: ImageDiffusionModel, batch: int) -> tuple[torch.Tensor, ...]:
    """A UNet call's inputs at ``batch`` rows: latents, timestep, text states, mask, guidance scale."""
    cfg = model.cfg
    x = torch.randn(batch, cfg.unet_in_channels, cfg.latent_size, cfg.latent_size)
    ctx, mask = model.text_encoder().encode(["a red apple"] * batch)
    return x, torch.tensor(500), ctx, mask, torch.tensor([DEFAULT_GUIDANCE])


def guide_of(model: ImageDiffusionModel, scale: torch.Tensor, batch: int) -> torch.Tensor | None:
    """The guidance features a model that reads the scale gets (None for the others)."""
    return guidance_features(scale.expand(batch), model.cfg.guidance_embedding) if model.cfg.guidance_embedding else None


def rows_per_image(model: ImageDiffusionModel) -> int:
    """UNet rows per image and step at the default guidance: 2 with two-call guidance, else 1."""
    return 2 if two_calls(model, "", DEFAULT_GUIDANCE) else 1


def runtime_comparison(model: ImageDiffusionModel, repeats: int) -> dict:
    """One UNet call as the pipeline runs it (ONNX Runtime for loaded weights) vs eager PyTorch,
    same weights and inputs; and the one-time cost of the ONNX graph (export, session)."""
    import os
    import subprocess
    import tempfile

    out: dict = {}
    for batch in (rows_per_image(model), 8 * rows_per_image(model)):
        x, t, ctx, mask, scale = unet_inputs(model, batch)
        guide = guide_of(model, scale, batch)
        pipeline = median_time(lambda: model.denoise(x, t, ctx, mask, scale), repeats)
        with torch.no_grad():
            eager = median_time(lambda: model.unet(x, t, encoder_hidden_states=ctx, encoder_attention_mask=mask,
                                                   timestep_cond=guide).sample, repeats)
        out[f"batch_{batch}"] = {"pipeline_ms": round(pipeline * 1e3, 2), "torch_eager_ms": round(eager * 1e3, 2),
                                 "speedup": round(eager / pipeline, 2)}
    if model.weights_sha256:
        # The graph's one-time cost, in a fresh cache: the first use exports it and opens a session;
        # a later process (a new `strata generate`) finds it in the cache and only opens a session.
        with tempfile.TemporaryDirectory() as cache:
            env = {**os.environ, "STRATA_CACHE": cache}
            for label in ("first_use_export_and_open_s", "later_process_open_s"):
                probe = subprocess.run([sys.executable, __file__, "--first-call-probe", "--threads",
                                        str(torch.get_num_threads())], env=env, check=True, capture_output=True, text=True)
                out[label] = round(float(probe.stdout.strip().splitlines()[-1]), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--first-call-probe", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model()
    if args.first_call_probe:  # runtime_comparison's fresh process: seconds of the first UNet call
        inputs = unet_inputs(model, rows_per_image(model))
        start = time.perf_counter()
        model.denoise(*inputs)
        print(time.perf_counter() - start)
        return
    enc = model.text_encoder()
    cfg = model.cfg

    rows = rows_per_image(model)
    # Two-call guidance runs the UNet on the unguided and conditional halves (2·count rows) for the
    # first guided steps, then on the conditional rows alone (guidance_stop).
    guided = guided_steps(Sampling(steps=20)) if rows == 2 else 0
    results: dict = {"model": source, "threads": args.threads, "steps": 20, "guidance": DEFAULT_GUIDANCE, "sampler": "dpmpp",
                     "guidance_stop": BUILTIN_GUIDANCE_STOP, "steps_with_two_calls": guided,
                     "unet_rows_per_image_and_step": rows}
    # A new prompt every run: the pipeline remembers prompt encodings, and a remembered prompt
    # would time no text encoding. The empty negative prompt is remembered after the warm-up, as
    # in any process that has generated once.
    prompts = (f"a red apple {i}" for i in itertools.count())
    for count in (1, 8):
        total = median_time(lambda: generate(model, next(prompts), count=count, seed=0, steps=20,
                                             guidance=DEFAULT_GUIDANCE), args.repeats)
        encode = median_time(lambda: enc.encode([next(prompts)], remember=True), args.repeats)
        latents = torch.randn(count, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        # as the pipeline decodes: one image at a time (so a batch's images equal each seed alone)
        decode = median_time(lambda: [model.decode_latents(x[None]) for x in latents], args.repeats)
        flops = unet_flops(model, rows * count) * guided + unet_flops(model, count) * (20 - guided)
        denoise = max(total - encode - decode, 1e-9)
        results[f"images_{count}"] = {
            "total_s": round(total, 4), "text_encode_s": round(encode, 4), "denoise_s": round(denoise, 4),
            "decode_s": round(decode, 5), "unet_gflop": round(flops / 1e9, 3),
            "unet_gflops_per_s": round(flops / denoise / 1e9, 2),
        }
    results["matmul_gflops_per_s"] = round(matmul_gflops(), 2)
    results["unet_runtime"] = "onnxruntime" if model.weights_sha256 else "torch eager (random weights, no hash)"
    results["text_runtime"] = "onnxruntime" if enc._session is not None else "torch eager"
    results["unet_call"] = runtime_comparison(model, args.repeats)
    results["targets"] = {"images_1_s": 0.4, "images_8_s": 2.0}
    results["meets_targets"] = {"images_1": results["images_1"]["total_s"] <= 0.4,
                                "images_8": results["images_8"]["total_s"] <= 2.0}
    path = write_result("generate", results)
    print(f"1 image {results['images_1']['total_s']:.3f} s, 8 images {results['images_8']['total_s']:.3f} s; "
          f"UNet {results['images_8']['unet_gflops_per_s']} GFLOP/s vs matmul {results['matmul_gflops_per_s']} GFLOP/s; "
          "UNet call vs eager torch: " + ", ".join(f"{v['speedup']}× at {k.replace('_', ' ')}" for k, v in
                                                    results["unet_call"].items() if k.startswith("batch_")) +
          f" → {path}")


if __name__ == "__main__":
    main()
