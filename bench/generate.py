"""Generation speed of the built-in text-to-image model on this machine.

    python bench/generate.py [--repeats 10]      → bench/results/generate.json

Median of ``repeats`` runs after a warm-up: one 64×64 image (20 DPM-Solver++ steps, the default guidance)
and a batch of 8, with a breakdown (text encode / denoise / decode) and the UNet's achieved
GFLOP/s beside a plain fp32 matmul's GFLOP/s measured in the same run (how close the model
gets to what the CPU can do). Targets: 1 image ≤ 0.4 s, 8 images ≤ 2 s.

Uses the shipped weights when present, else the training recipe's architecture with random
weights (speed depends on the architecture only; the JSON says which).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402

from strata.models.builtin import image_model_dir  # noqa: E402
from strata.models.image_autoencoder import PatchAutoencoder  # noqa: E402
from strata.models.image_diffusion import ImageDiffusionModel  # noqa: E402
from strata.models.samplers import DEFAULT_GUIDANCE  # noqa: E402
from strata.models.image_pipeline import generate  # noqa: E402
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

    cfg = model.cfg
    x = torch.randn(batch, cfg.unet_in_channels, cfg.latent_size, cfg.latent_size)
    ctx, mask = model.text_encoder().encode(["a red apple"] * batch)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.unet(x, torch.tensor(500), encoder_hidden_states=ctx, encoder_attention_mask=mask)
    return int(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model()
    enc = model.text_encoder()
    cfg = model.cfg

    results: dict = {"model": source, "threads": args.threads, "steps": 20, "guidance": DEFAULT_GUIDANCE, "sampler": "dpmpp"}
    for count in (1, 8):
        total = median_time(lambda: generate(model, "a red apple", count=count, seed=0, steps=20, guidance=DEFAULT_GUIDANCE),
                            args.repeats)
        encode = median_time(lambda: enc.encode(["", "a red apple"]), args.repeats)
        latents = torch.randn(count, cfg.latent_channels, cfg.latent_size, cfg.latent_size)
        decode = median_time(lambda: model.decode_latents(latents), args.repeats)
        # Guidance runs the UNet on the conditional and unconditional halves: 2·count per step.
        flops = unet_flops(model, 2 * count) * 20
        denoise = max(total - encode - decode, 1e-9)
        results[f"images_{count}"] = {
            "total_s": round(total, 4), "text_encode_s": round(encode, 4), "denoise_s": round(denoise, 4),
            "decode_s": round(decode, 5), "unet_gflop": round(flops / 1e9, 3),
            "unet_gflops_per_s": round(flops / denoise / 1e9, 2),
        }
    results["matmul_gflops_per_s"] = round(matmul_gflops(), 2)
    results["targets"] = {"images_1_s": 0.4, "images_8_s": 2.0}
    results["meets_targets"] = {"images_1": results["images_1"]["total_s"] <= 0.4,
                                "images_8": results["images_8"]["total_s"] <= 2.0}
    path = write_result("generate", results)
    print(f"1 image {results['images_1']['total_s']:.3f} s, 8 images {results['images_8']['total_s']:.3f} s; "
          f"UNet {results['images_8']['unet_gflops_per_s']} GFLOP/s vs matmul {results['matmul_gflops_per_s']} GFLOP/s "
          f"→ {path}")


if __name__ == "__main__":
    main()
