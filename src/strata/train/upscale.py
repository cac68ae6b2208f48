"""Train the built-in upscaler (read top to bottom).

    config (YAML) ─► SR dataset (256 px Fluent renders + 64 px Noto/Twemoji, held-out groups out)
    ─► loop: pick ×4 or ×2 → crop sharp patches (premultiplied RGBA, random flips/rotations)
        → degrade (blur? → shrink with a random kernel → noise? → JPEG? → 8-bit)
        → network → L1 against the sharp patch → Adam (cosine lr)
    every eval_every steps: held-out PSNR at ×4 and ×2 next to bicubic → log.jsonl
    every few minutes, on SIGTERM/Ctrl-C and at the end: atomic checkpoint

``export`` writes fp16 ``model.safetensors`` + ``config.json`` + ``MODEL_CARD.md`` into
``weights/upscale/`` and re-measures the held-out PSNR with the reloaded fp16 weights.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strata.errors import StrataError
from strata.models.upscale import MODEL_ID, UpscaleConfig, UpscaleModel, UpscaleNet
from strata.ops.edit import gaussian_blur
from strata.train import data_sr
from strata.train.data_emoji import OptOut
from strata.train.runs import (CHECKPOINT, Recipe, evaluating, load_checkpoint, optimizer_step, resolve_run_dir,
                               restore, run_book, save_checkpoint, start_run, warmup_cosine)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "upscale.yaml"
REPO_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "upscale"


@dataclass
class UpscaleTrainConfig(Recipe[UpscaleConfig]):
    """The upscaler's recipe (configs/upscale.yaml), with its ``degrade`` section: how training
    pairs are degraded."""

    degrade: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "UpscaleTrainConfig":
        return cls.parse(path, DEFAULT_CONFIG, UpscaleConfig, extra=("degrade",))


def load_data(cfg: UpscaleTrainConfig) -> data_sr.SRData:
    """The SR dataset, built from the cached emoji packages on first use."""
    directory = Path(cfg.data["dir"]).expanduser() if cfg.data.get("dir") else data_sr.sr_dir()
    if not (directory / "manifest.jsonl").is_file():
        print(f"building the super-resolution dataset in {directory} ...", flush=True)
        optout = OptOut.load(Path(cfg.data["optout"]).expanduser() if cfg.data.get("optout") else None)
        print(data_sr.build(out_dir=directory, optout=optout), flush=True)
    return data_sr.load(directory)


# ---- degradations ---------------------------------------------------------------------------


def premultiplied(rgba_u8: np.ndarray) -> np.ndarray:
    """uint8 straight RGBA (..., 4) → float32 premultiplied RGBA in [0, 1]."""
    x = rgba_u8.astype(np.float32) / 255.0
    x[..., :3] *= x[..., 3:4]
    return x


def shrink(hr: torch.Tensor, scale: int, method: str) -> torch.Tensor:
    """Premultiplied (B, 4, H, W) → (B, 4, H/s, W/s): ``area`` = s×s block mean; ``bicubic`` and
    ``bilinear`` antialiased (kernel widened by s, as Pillow and MATLAB's imresize do)."""
    if method == "area":
        return F.avg_pool2d(hr, scale)
    if method not in ("bicubic", "bilinear"):
        raise StrataError(f"degrade.downscale: unknown method {method!r}; use bicubic, area or bilinear")
    size = (hr.shape[2] // scale, hr.shape[3] // scale)
    return F.interpolate(hr, size=size, mode=method, antialias=True, align_corners=False).clamp(0.0, 1.0)


def _jpeg(premul: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip of the (premultiplied) color at ``quality``; alpha kept."""
    from PIL import Image as PILImage

    buf = io.BytesIO()
    rgb8 = np.clip(np.rint(premul[..., :3] * 255), 0, 255).astype(np.uint8)
    PILImage.fromarray(rgb8).save(buf, format="JPEG", quality=int(quality))
    out = premul.copy()
    out[..., :3] = np.asarray(PILImage.open(buf), np.float32) / 255.0
    return out


def degrade(hr: torch.Tensor, scale: int, dc: dict, rng: np.random.Generator) -> torch.Tensor:
    """Sharp premultiplied patches (B, 4, H, W) → degraded 8-bit inputs (B, 4, H/s, W/s)."""
    out = []
    for x in hr:
        if rng.random() < dc["blur_p"]:
            sigma = rng.uniform(*dc["blur_sigma_lr"]) * scale
            x = torch.from_numpy(gaussian_blur(x.permute(1, 2, 0).numpy(), sigma)).permute(2, 0, 1)
        lr = shrink(x[None], scale, str(rng.choice(dc["downscale"])))[0].permute(1, 2, 0).numpy().copy()
        if rng.random() < dc["noise_p"]:
            lr[..., :3] += rng.normal(0.0, rng.uniform(*dc["noise_sigma"]), lr[..., :3].shape).astype(np.float32)
        if rng.random() < dc["jpeg_p"]:
            lr = _jpeg(np.clip(lr, 0.0, 1.0), int(rng.integers(dc["jpeg_quality"][0], dc["jpeg_quality"][1] + 1)))
        lr = np.rint(np.clip(lr, 0.0, 1.0) * 255) / 255  # inputs are 8-bit files
        lr[..., :3] = np.minimum(lr[..., :3], lr[..., 3:4])  # stay a valid premultiplied color
        out.append(torch.from_numpy(lr.astype(np.float32)).permute(2, 0, 1))
    return torch.stack(out)


def sample_batch(data: data_sr.SRData, idx256: np.ndarray, idx64: np.ndarray, scale: int, cfg: UpscaleTrainConfig,
                 rng: np.random.Generator) -> torch.Tensor:
    """Sharp premultiplied patches (B, 4, P, P) with random dihedral augmentation."""
    tc = cfg.train
    flat = len(idx64) > 0 and rng.random() < float(cfg.data["flat_fraction"])
    pool, images = (idx64, data.hr64) if flat else (idx256, data.hr256)
    side = images.shape[1]
    patch = min(side, int(tc["lr_patch"]) * scale)
    patches = []
    for _ in range(int(tc["batch_size"])):
        for _attempt in range(4):
            img = images[pool[rng.integers(len(pool))]]
            y, x = rng.integers(0, side - patch + 1, size=2)
            crop = img[y:y + patch, x:x + patch]
            if crop[..., 3].mean() >= float(tc["min_alpha"]) * 255:
                break
        crop = np.rot90(crop, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        patches.append(premultiplied(np.ascontiguousarray(crop)))
    return torch.from_numpy(np.stack(patches)).permute(0, 3, 1, 2).contiguous()


# ---- evaluation -----------------------------------------------------------------------------


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR (dB) of two premultiplied RGBA tensors in [0, 1]."""
    return -10.0 * math.log10(max(float((a.clamp(0, 1) - b).pow(2).mean()), 1e-12))


@torch.no_grad()
def heldout_psnr(net: UpscaleNet, data: data_sr.SRData, held: np.ndarray, scale: int) -> dict[str, float]:
    """Held-out 256 px images shrunk (clean bicubic) by ``scale`` and restored: model vs bicubic."""
    model_se, bicubic_se = [], []
    for i in held:
        hr = torch.from_numpy(premultiplied(np.asarray(data.hr256[i]))).permute(2, 0, 1)[None]
        lr = torch.round(shrink(hr, scale, "bicubic") * 255) / 255
        model_se.append(float((net(lr, scale).clamp(0, 1) - hr).pow(2).mean()))
        up = F.interpolate(lr, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
        bicubic_se.append(float((up - hr).pow(2).mean()))
    # mean of per-image PSNR, as SR papers report it
    return {"model": float(np.mean([-10 * math.log10(max(e, 1e-12)) for e in model_se])),
            "bicubic": float(np.mean([-10 * math.log10(max(e, 1e-12)) for e in bicubic_se]))}


def lr_at(step: int, tc: dict) -> float:
    """Cosine from ``lr`` to ``lr_final`` over ``steps``."""
    return warmup_cosine(step, lr=float(tc["lr"]), lr_final=float(tc["lr_final"]), steps=int(tc["steps"]))


# ---- the loop -------------------------------------------------------------------------------


def train(*, config: Path | None = None, resume: bool = False, threads: int = 1, max_minutes: float | None = None,
          max_steps: int | None = None, run_dir: Path | None = None) -> Path:
    """Train (or resume) the upscaler until ``train.steps`` (or ``max_steps``); returns the run dir."""
    cfg, rdir, state = start_run(UpscaleTrainConfig.load(config), "upscale", model_class=UpscaleConfig, config=config,
                                 resume=resume, threads=threads, run_dir=run_dir)
    ckpt_path = rdir / CHECKPOINT
    tc, end = cfg.train, min(int(cfg.train["steps"]), max_steps or int(cfg.train["steps"]))
    data = load_data(cfg)
    (train256, held256), (train64, _) = data.split(256), data.split(64)

    torch.manual_seed(int(tc["seed"]))
    net = UpscaleNet(cfg.model).train()
    opt = torch.optim.Adam(net.parameters(), lr=float(tc["lr"]))
    rng = np.random.default_rng(int(tc["seed"]))
    step, train_seconds = restore(state, net, opt)
    if state is not None:
        rng.bit_generator.state = json.loads(state["rng"])
    print(f"run dir {rdir} | step {step}/{end} | upscaler {sum(p.numel() for p in net.parameters()) / 1e3:.0f} k params "
          f"| {len(train256)} + {len(train64)} train / {len(held256)} held-out images | {threads} thread(s)", flush=True)

    t_start = time.time()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": json.dumps(rng.bit_generator.state), "model_config": asdict(cfg.model),
                                    "train": tc, "degrade": cfg.degrade, "data": cfg.data,
                                    "train_seconds": train_seconds + time.time() - t_start, "saved_at": time.time()})

    def evaluate() -> dict:
        measures = {}
        with evaluating(net):
            for s in (4, 2):
                p = heldout_psnr(net, data, held256, s)
                measures[f"heldout_psnr_x{s}"], measures[f"bicubic_psnr_x{s}"] = round(p["model"], 2), round(p["bicubic"], 2)
        return measures

    with run_book(rdir, step=step, total=end, checkpoint=checkpoint,
                  checkpoint_minutes=float(cfg.run["checkpoint_minutes"]), max_minutes=max_minutes) as book:
        while book.running(step, end):
            scale = 4 if rng.random() < float(tc["x4_fraction"]) else 2
            hr = sample_batch(data, train256, train64, scale, cfg, rng)
            lr = degrade(hr, scale, cfg.degrade, rng)
            loss = (net(lr, scale) - hr).abs().mean()
            optimizer_step(opt, loss, lr_at(step, tc))
            step += 1
            book.add(step, loss.item())
            book.log_step(step, lr_at(step, tc), evaluate, every=int(cfg.run["log_every"]),
                          eval_every=int(cfg.run["eval_every"]), last=end)
    print(f"checkpoint at step {step} in {ckpt_path}", flush=True)
    return rdir


# ---- export ---------------------------------------------------------------------------------


def export(*, config: Path | None = None, run_dir: Path | None = None, out_dir: Path = REPO_WEIGHTS) -> dict:
    """Write fp16 weights, config.json and MODEL_CARD.md; returns the export record."""
    cfg = UpscaleTrainConfig.load(config)
    rdir = resolve_run_dir(cfg.run, "upscale", run_dir)
    state = load_checkpoint(rdir / CHECKPOINT)
    mcfg = UpscaleConfig.from_dict(state["model_config"])
    net = UpscaleNet(mcfg)
    net.load_state_dict(state["model"])
    net.eval()
    data = load_data(cfg)
    held = data.split(256)[1]
    record: dict = {"step": int(state["step"]), "train_minutes": round(float(state["train_seconds"]) / 60, 1),
                    "heldout_images": len(held)}
    for s in mcfg.scales:
        p = heldout_psnr(net, data, held, s)
        record[f"heldout_psnr_x{s}_fp32"], record[f"bicubic_psnr_x{s}"] = round(p["model"], 2), round(p["bicubic"], 2)
    extra = {"training": {**record, "train": state["train"], "degrade": state["degrade"]}}
    path = UpscaleModel(mcfg, net).save_pretrained(Path(out_dir), dtype=torch.float16, extra=extra)
    reloaded = UpscaleModel.from_pretrained(Path(out_dir))
    for s in mcfg.scales:
        record[f"heldout_psnr_x{s}_fp16"] = round(heldout_psnr(reloaded.net, data, held, s)["model"], 2)
    record["weights"] = str(path)
    record["weights_kb"] = round(path.stat().st_size / 1e3, 1)
    record["params_k"] = round(reloaded.param_count() / 1e3, 1)
    (Path(out_dir) / "MODEL_CARD.md").write_text(model_card(record, mcfg, state), encoding="utf-8")
    (rdir / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def model_card(record: dict, mcfg: UpscaleConfig, state: dict) -> str:
    """MODEL_CARD.md: what the upscaler is, what it learned from, how, and how well."""
    from strata.train.data_emoji import SOURCES

    rows = "\n".join(f"| ×{s} | {record[f'heldout_psnr_x{s}_fp16']} | {record[f'bicubic_psnr_x{s}']} | "
                     f"{record[f'heldout_psnr_x{s}_fp16'] - record[f'bicubic_psnr_x{s}']:+.2f} |" for s in mcfg.scales)
    attributions = "\n".join(f"- {SOURCES[k].attribution}" for k in data_sr.HR_SOURCES)
    return f"""# {MODEL_ID}

Learned ×2 / ×4 super-resolution for RGBA images, used by the `image.upscale` op (capability
"upscale"). EDSR-lite: {mcfg.channels} channels, {mcfg.blocks} residual blocks at the input resolution, one
sub-pixel tail per scale, predicting a residual over bicubic; {record['params_k']} k parameters, fp16
({record['weights_kb']} kB). Premultiplied RGBA in and out (alpha is upscaled, edges do not fringe).

## Training data

The 256×256 Fluent Emoji 3D renders and the 64×64 Noto and Twemoji drawings of strata's emoji
dataset, at their native sizes (`strata.train.data_sr`); {data_sr.HOLDOUT_GROUPS} emoji groups held
out in every source. Licenses: MIT (Fluent), Apache-2.0 (Noto), CC-BY-4.0 (Twemoji). Keep:

{attributions}

No photographs were used in training; the photographs in `bench/upscale.py` are evaluation only.

## Training

`strata train upscale` (recipe `strata/train/configs/upscale.yaml`): {record['step']} steps,
{record['train_minutes']} min on a 2-core CPU (1 thread), L1 loss, Adam with cosine decay, batches of
{state['train']['batch_size']} patches of {state['train']['lr_patch']} px input. Inputs degraded at random: shrink
with bicubic / area / bilinear, optional blur, noise and JPEG (see the recipe).

## Evaluation

Held-out 256 px renders ({record['heldout_images']} images), shrunk with antialiased bicubic and
restored; mean PSNR (dB) over premultiplied RGBA, fp16 weights:

| scale | this model | bicubic | gain |
|---|---|---|---|
{rows}

`python bench/upscale.py` adds SSIM, Lanczos, photographs and speed (`bench/results/upscale.json`).

## Limits

Trained on emoji art only: on photographs it sharpens edges a little more than bicubic but does
not invent texture; it does not remove heavy noise or strong JPEG blocking.
"""
