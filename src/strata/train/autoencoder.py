"""Train the image model's autoencoder (read top to bottom).

    config (YAML) ─► dataset minus a held-out set ─► loop:
        batch → premultiplied RGBA → encode → + latent noise → decode
        → L1(pixels) + edge_weight·L1(finite differences) + latent_l2·|z|² → Adam (cosine lr)
    every eval_every steps: held-out PSNR → log.jsonl;  every few minutes: atomic checkpoint
    export: per-channel latent normalization measured on the whole dataset, fp16 weights and a
    reconstruction sheet (held-out originals over their reconstructions) into weights/image/.

The diffusion model (strata.train.image) trains on this autoencoder's latents, so train and
export it first.

A recipe with ``train.init_from`` (an exported autoencoder) and ``train.freeze_encoder`` trains the
decoder alone (configs/autoencoder_decoder.yaml): the encoder, and so every latent and the
latent normalization the diffusion model was trained on, stay exactly as they are — only the
pictures drawn from latents get better (what Stable Diffusion's fine-tuned VAE decoders do).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from strata.errors import StrataError
from strata.models.image_autoencoder import AutoencoderConfig, PatchAutoencoder, premultiply
from strata.train import data_emoji
from strata.train.image import REPO_WEIGHTS
from strata.train.runs import (CHECKPOINT, Recipe, evaluating, load_checkpoint, optimizer_step, resolve_run_dir,
                               restore, run_book, save_checkpoint, start_run, warmup_cosine)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "autoencoder.yaml"


@dataclass
class AutoencoderTrainConfig(Recipe[AutoencoderConfig]):
    """The image autoencoder's recipe (configs/autoencoder.yaml)."""

    @classmethod
    def load(cls, path: Path | None = None) -> "AutoencoderTrainConfig":
        return cls.parse(path, DEFAULT_CONFIG, AutoencoderConfig)


def split_dataset(cfg: AutoencoderTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """(train images, held-out images) as uint8 (N, 4, H, W); the split is fixed by ``train.seed``."""
    images, _rows = data_emoji.load(Path(cfg.data["dir"]).expanduser() if cfg.data.get("dir") else None)
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(int(cfg.train["seed"])))
    n_hold = int(cfg.data["holdout"])
    if not 0 < n_hold < len(x) // 2:
        raise StrataError(f"data.holdout must be between 1 and {len(x) // 2 - 1}, got {n_hold}")
    return x[order[n_hold:]], x[order[:n_hold]]


def reconstruction_loss(ae: PatchAutoencoder, x: torch.Tensor, tc: dict, g: torch.Generator) -> torch.Tensor:
    """The training objective for one batch of premultiplied RGBA ``x`` in [-1, 1]."""
    with torch.set_grad_enabled(not tc.get("freeze_encoder", False)):
        z = ae.encode_raw(x)
    rec = ae.decode_raw(z + float(tc["latent_noise"]) * torch.randn(z.shape, generator=g))
    edges = sum((torch.diff(rec, dim=d) - torch.diff(x, dim=d)).abs().mean() for d in (2, 3))
    return (rec - x).abs().mean() + float(tc["edge_weight"]) * edges + float(tc["latent_l2"]) * z.pow(2).mean()


@torch.no_grad()
def psnr(ae: PatchAutoencoder, images: torch.Tensor, batch: int = 128) -> float:
    """Reconstruction PSNR (dB) over premultiplied RGBA in [0, 1], without latent noise."""
    se, n = 0.0, 0
    for i in range(0, len(images), batch):
        x = premultiply(images[i:i + batch].float() / 255.0)
        rec = ae.decode_raw(ae.encode_raw(x)).clamp(-1, 1)
        se += float(((rec - x) / 2).pow(2).sum())
        n += x.numel()
    return -10.0 * math.log10(max(se / n, 1e-12))


def lr_at(step: int, tc: dict) -> float:
    """Cosine from ``lr`` to ``lr_final`` over ``steps``."""
    return warmup_cosine(step, lr=float(tc["lr"]), lr_final=float(tc["lr_final"]), steps=int(tc["steps"]))


def _repo_path(path: str) -> Path:
    """A recipe's path: absolute or ``~``, else relative to the repository (like ``weights/image``)."""
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_WEIGHTS.parents[1] / p


def _heldout_psnr(ae: PatchAutoencoder, held_x: torch.Tensor) -> float:
    with evaluating(ae):
        return round(psnr(ae, held_x), 2)


def train(*, config: Path | None = None, resume: bool = False, threads: int = 1,
          max_minutes: float | None = None, run_dir: Path | None = None) -> Path:
    """Train (or resume) the autoencoder until ``train.steps``; returns the run directory."""
    cfg, rdir, state = start_run(AutoencoderTrainConfig.load(config), "autoencoder", model_class=AutoencoderConfig,
                                 config=config, resume=resume, threads=threads, run_dir=run_dir)
    ckpt_path = rdir / CHECKPOINT
    tc = cfg.train
    train_x, held_x = split_dataset(cfg)

    torch.manual_seed(int(tc["seed"]))
    ae = PatchAutoencoder(cfg.model).train()
    if tc.get("init_from") and state is None:
        start = PatchAutoencoder.load(_repo_path(tc["init_from"]))
        if start.cfg != cfg.model:
            raise StrataError(f"train.init_from {tc['init_from']}: its autoencoder config differs from the recipe's "
                              "model section; copy its model section into the recipe")
        ae.load_state_dict(start.state_dict())  # weights and the fitted latent normalization
    trained = ae.decoder if tc.get("freeze_encoder", False) else ae
    if tc.get("freeze_encoder", False) and not tc.get("init_from"):
        raise StrataError("train.freeze_encoder needs train.init_from: the exported autoencoder whose encoder to keep")
    opt = torch.optim.Adam(trained.parameters(), lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
    g = torch.Generator().manual_seed(int(tc["seed"]))
    step, _ = restore(state, ae, opt)
    if state is not None:
        g.set_state(state["generator"])
    print(f"run dir {rdir} | step {step}/{tc['steps']} | autoencoder "
          f"{sum(p.numel() for p in ae.parameters()) / 1e6:.2f} M params | {len(train_x)} train / {len(held_x)} "
          f"held-out images | {threads} thread(s)", flush=True)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {"model": ae.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "generator": g.get_state(), "model_config": cfg.model.__dict__,
                                    "train": tc, "saved_at": time.time()})

    with run_book(rdir, step=step, total=int(tc["steps"]), checkpoint=checkpoint,
                  checkpoint_minutes=float(cfg.run["checkpoint_minutes"]), max_minutes=max_minutes) as book:
        while book.running(step, int(tc["steps"])):
            idx = torch.randint(0, len(train_x), (int(tc["batch_size"]),), generator=g)
            x = premultiply(train_x[idx].float() / 255.0)
            loss = reconstruction_loss(ae, x, tc, g)
            optimizer_step(opt, loss, lr_at(step, tc))
            step += 1
            book.add(step, loss.item())
            book.log_step(step, lr_at(step, tc), lambda: {"heldout_psnr": _heldout_psnr(ae, held_x)},
                          every=int(cfg.run["log_every"]), eval_every=int(cfg.run["eval_every"]))
    print(f"checkpoint at step {step} in {ckpt_path}", flush=True)
    return rdir


def export(*, config: Path | None = None, run_dir: Path | None = None, out_dir: Path = REPO_WEIGHTS) -> dict:
    """Fit latent normalization on the whole dataset, write fp16 weights + a reconstruction sheet.

    Returns the export record (held-out PSNR before and after fp16, step, sheet path).
    """
    cfg = AutoencoderTrainConfig.load(config)
    rdir = resolve_run_dir(cfg.run, "autoencoder", run_dir)
    state = load_checkpoint(rdir / CHECKPOINT)
    ae = PatchAutoencoder(AutoencoderConfig.from_dict(state["model_config"]))
    ae.load_state_dict(state["model"])
    ae.eval()
    train_x, held_x = split_dataset(cfg)
    if not state["train"].get("freeze_encoder", False):  # a frozen encoder keeps the normalization it came with
        with torch.no_grad():
            raw = torch.cat([ae.encode_raw(premultiply(train_x[i:i + 256].float() / 255.0))
                             for i in range(0, len(train_x), 256)])
        ae.fit_normalization(raw)
    record = {"step": int(state["step"]), "heldout_psnr_fp32": round(psnr(ae, held_x), 2)}
    training = {**record, "train": state["train"]}
    if state["train"].get("init_from"):  # keep the history: how the weights it started from were trained
        training["started_from"] = PatchAutoencoder.load(_repo_path(state["train"]["init_from"])).record.get("training")
    path = ae.save(Path(out_dir), extra={"training": training})
    reloaded = PatchAutoencoder.load(Path(out_dir))
    record["heldout_psnr_fp16"] = round(psnr(reloaded, held_x), 2)
    record["sheet"] = str(reconstruction_sheet(reloaded, held_x[:16], rdir / "reconstructions.png"))
    record["weights"] = str(path)
    (rdir / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


@torch.no_grad()
def reconstruction_sheet(ae: PatchAutoencoder, images: torch.Tensor, out: Path) -> Path:
    """Originals (top row) over reconstructions (bottom row), on white, as a PNG."""
    from PIL import Image as PILImage

    from strata.models.image_autoencoder import unpremultiply

    x = images.float() / 255.0
    rec = unpremultiply(ae.decode(ae.encode(premultiply(x))))
    rows = []
    for t in (x, rec):
        rgb = t[:, :3] * t[:, 3:] + (1 - t[:, 3:])
        rows.append(torch.cat(list(rgb), dim=2))
    sheet = torch.cat(rows, dim=1).permute(1, 2, 0).numpy()
    out.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.clip(np.rint(sheet * 255), 0, 255).astype(np.uint8)).save(out)
    return out
