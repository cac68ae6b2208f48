"""Learned super-resolution vs bicubic and Lanczos: quality and speed.

    python bench/upscale.py [--repeats 3] [--weights DIR]      → bench/results/upscale.json

Quality: PSNR (dB) and SSIM of ×4 and ×2 restorations of images shrunk with antialiased bicubic
(Pillow, premultiplied, as ``edit.resize``), for the learned model, bicubic and Lanczos, with
``scale`` px shaved off each border (as SR papers do):

- held-out dataset images: the 256 px Fluent renders of the SR dataset's held-out emoji groups,
  measured on premultiplied RGBA (color under transparent pixels does not count);
  target: learned ≥ bicubic + 1.5 dB at ×4;
- real photographs bundled with scikit-image (never trained on), RGB; target: learned > bicubic.

Speed: ×4 of a 256×256 RGBA image through the op's code path (target ≤ 1 s), and seconds per
output megapixel next to an ESRGAN generator (RRDB network, 23 blocks, Wang et al. 2018) with
random weights at the same input size — target ≥ 10× faster. Median of ``repeats`` runs after a
warm-up; the machine's load average is recorded (other jobs share the CPU).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timed, write_result  # noqa: E402

from strata.media.image import Image  # noqa: E402
from strata.models.builtin import upscale_model_dir  # noqa: E402
from strata.models.upscale import UpscaleModel  # noqa: E402
from strata.ops.edit import premultiply, resample  # noqa: E402
from strata.train import data_sr  # noqa: E402
from strata.train.upscale import UpscaleTrainConfig  # noqa: E402

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera")


# ---- ESRGAN's generator, from the paper (Wang et al. 2018, "ESRGAN", §3.1 and Fig. 4) -------


class _DenseBlock(nn.Module):
    """Residual dense block: 5 convs, each seeing all earlier features (growth 32), LeakyReLU 0.2,
    output scaled by β = 0.2 and added to the input."""

    def __init__(self, nf: int = 64, gc: int = 32):
        super().__init__()
        self.convs = nn.ModuleList([nn.Conv2d(nf + i * gc, gc if i < 4 else nf, 3, padding=1) for i in range(5)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, 1))
            if i < 4:
                feats.append(F.leaky_relu(out, 0.2))
        return x + 0.2 * out


class _RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks, residual scaled by β = 0.2."""

    def __init__(self, nf: int = 64):
        super().__init__()
        self.blocks = nn.Sequential(_DenseBlock(nf), _DenseBlock(nf), _DenseBlock(nf))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 0.2 * self.blocks(x)


class RRDBNet(nn.Module):
    """ESRGAN generator ×4: conv → 23 RRDB → conv (+ skip) → 2 × (nearest ×2 → conv → LReLU) → conv → conv."""

    def __init__(self, nf: int = 64, blocks: int = 23, channels: int = 3):
        super().__init__()
        self.first = nn.Conv2d(channels, nf, 3, padding=1)
        self.trunk = nn.Sequential(*[_RRDB(nf) for _ in range(blocks)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, padding=1)
        self.up1, self.up2 = nn.Conv2d(nf, nf, 3, padding=1), nn.Conv2d(nf, nf, 3, padding=1)
        self.hr, self.last = nn.Conv2d(nf, nf, 3, padding=1), nn.Conv2d(nf, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.first(x)
        f = f + self.trunk_conv(self.trunk(f))
        f = F.leaky_relu(self.up1(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
        f = F.leaky_relu(self.up2(F.interpolate(f, scale_factor=2, mode="nearest")), 0.2)
        return self.last(F.leaky_relu(self.hr(f), 0.2))


# ---- quality --------------------------------------------------------------------------------


def metrics(out: np.ndarray, ref: np.ndarray, shave: int) -> tuple[float, float]:
    """(PSNR dB, SSIM) of two (H, W, C) arrays in [0, 1], ``shave`` px off every border."""
    a, b = out[shave:-shave, shave:-shave], ref[shave:-shave, shave:-shave]
    mse = float(np.mean((np.clip(a, 0, 1) - b) ** 2))
    return -10 * np.log10(max(mse, 1e-12)), float(structural_similarity(a, b, channel_axis=2, data_range=1.0))


def restorations(model: UpscaleModel, hr: np.ndarray, scale: int) -> dict[str, np.ndarray]:
    """Straight RGBA ``hr`` shrunk by ``scale`` (bicubic, antialiased), enlarged back three ways."""
    h, w = hr.shape[:2]
    lr = resample(hr, (w // scale, h // scale), "bicubic")
    return {"learned": model.upscale(lr, scale), "bicubic": resample(lr, (w, h), "bicubic"),
            "lanczos": resample(lr, (w, h), "lanczos")}


def evaluate(model: UpscaleModel, images: list[np.ndarray], scale: int, *, rgba: bool) -> dict:
    """Mean PSNR/SSIM per method over ``images`` (premultiplied RGBA if ``rgba`` else RGB)."""
    view = (lambda p: premultiply(p)) if rgba else (lambda p: p[:, :, :3])
    scores: dict[str, list[tuple[float, float]]] = {"learned": [], "bicubic": [], "lanczos": []}
    for hr in images:
        for method, out in restorations(model, hr, scale).items():
            scores[method].append(metrics(view(out), view(hr), scale))
    result = {m: {"psnr_db": round(float(np.mean([s[0] for s in v])), 3), "ssim": round(float(np.mean([s[1] for s in v])), 4)}
              for m, v in scores.items()}
    result["learned_minus_bicubic_db"] = round(result["learned"]["psnr_db"] - result["bicubic"]["psnr_db"], 3)
    result["learned_minus_lanczos_db"] = round(result["learned"]["psnr_db"] - result["lanczos"]["psnr_db"], 3)
    result["images_better_than_bicubic"] = int(sum(a[0] > b[0] for a, b in zip(scores["learned"], scores["bicubic"])))
    result["images"] = len(images)
    return result


def photos() -> dict[str, np.ndarray]:
    import skimage.data

    out = {}
    for name in PHOTOS:
        px = Image.from_array(np.asarray(getattr(skimage.data, name)())).pixels
        h, w = (s - s % 4 for s in px.shape[:2])
        out[name] = np.ascontiguousarray(px[:h, :w])
    return out


# ---- speed ----------------------------------------------------------------------------------


def speed(model: UpscaleModel, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    img256 = rng.random((256, 256, 4), dtype=np.float32)
    img64 = np.ascontiguousarray(img256[:64, :64])
    rrdb = RRDBNet().eval()
    x64 = torch.from_numpy(img64[:, :, :3].transpose(2, 0, 1).copy())[None]
    with torch.no_grad():
        t256 = timed(lambda: model.upscale(img256, 4), repeats=repeats)["median_s"]
        t64 = timed(lambda: model.upscale(img64, 4), repeats=max(repeats, 5))["median_s"]
        t_rrdb = timed(lambda: rrdb(x64), repeats=repeats)["median_s"]
    lanczos = timed(lambda: resample(img256, (1024, 1024), "lanczos"), repeats=repeats)["median_s"]
    mpx64 = 256 * 256 / 1e6  # output of a 64×64 input at ×4
    return {
        "learned_x4_256px_s": round(t256, 4),
        "learned_s_per_output_mpx": round(t256 / (1024 * 1024 / 1e6), 4),
        "lanczos_x4_256px_s": round(lanczos, 4),
        "same_input_64px": {"learned_s": round(t64, 5), "rrdb_s": round(t_rrdb, 4),
                            "learned_s_per_output_mpx": round(t64 / mpx64, 4),
                            "rrdb_s_per_output_mpx": round(t_rrdb / mpx64, 3),
                            "rrdb_over_learned": round(t_rrdb / t64, 1)},
        "params": {"learned": model.param_count(), "rrdb": sum(p.numel() for p in rrdb.parameters())},
    }


def load_model(weights: Path | None) -> tuple[UpscaleModel, dict]:
    directory = weights or upscale_model_dir()
    if (directory / "model.safetensors").is_file():
        digest = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
        return UpscaleModel.from_pretrained(directory), {"source": str(directory), "weights_sha256": digest}
    return (UpscaleModel.random(UpscaleTrainConfig.load().model, seed=0),
            {"source": "recipe architecture, random weights (quality numbers are meaningless)"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--weights", type=Path, default=None, help="export dir (default: weights/upscale)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, source = load_model(args.weights)

    data = data_sr.load()
    held = [np.asarray(data.hr256[i], np.float32) / 255.0 for i in data.split(256)[1]]
    pics = photos()
    results: dict = {"model": source, "threads": args.threads, "load_average": list(os.getloadavg()),
                     "degradation": "antialiased bicubic shrink (Pillow), no noise", "shave_px": "scale"}
    for scale in (4, 2):
        results[f"x{scale}"] = {"heldout_dataset": evaluate(model, held, scale, rgba=True),
                                "photographs": evaluate(model, list(pics.values()), scale, rgba=False)}
    results["photographs"] = {name: list(p.shape[:2]) for name, p in pics.items()}
    results["speed"] = speed(model, args.repeats)
    x4, sp = results["x4"], results["speed"]
    results["targets"] = {"heldout_gain_db": 1.5, "photo_gain_db": 0.0, "rrdb_speedup": 10, "x4_256px_s": 1.0}
    results["meets_targets"] = {
        "heldout_gain": x4["heldout_dataset"]["learned_minus_bicubic_db"] >= 1.5,
        "photos_better_than_bicubic": x4["photographs"]["learned_minus_bicubic_db"] > 0,
        "rrdb_speedup": sp["same_input_64px"]["rrdb_over_learned"] >= 10,
        "x4_256px": sp["learned_x4_256px_s"] <= 1.0,
    }
    path = write_result("upscale", results)
    print(f"×4 held-out: learned {x4['heldout_dataset']['learned']['psnr_db']} dB vs bicubic "
          f"{x4['heldout_dataset']['bicubic']['psnr_db']} ({x4['heldout_dataset']['learned_minus_bicubic_db']:+} dB); "
          f"photos {x4['photographs']['learned_minus_bicubic_db']:+} dB; ×4 256px {sp['learned_x4_256px_s']} s; "
          f"RRDB {sp['same_input_64px']['rrdb_over_learned']}× slower → {path}")


if __name__ == "__main__":
    main()
