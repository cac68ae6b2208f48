"""Train strata's built-in text-to-image model (read top to bottom).

    config (YAML) ─► dataset (images.npz + manifest) ─► latents (the trained autoencoder's, computed
    once at start) ─► loop:
        sample batch (weighted) → captions (cached text encodings, 10% dropped)
        → noise at random t → UNet predicts v → min-SNR-weighted MSE → AdamW → EMA
    every few minutes: atomic checkpoint (model, EMA, optimizer, step, RNG states)
    every N steps: sample grid PNG for fixed prompts × seeds;  always: log.jsonl

A run lives in one directory outside the git tree; copying that directory to another machine
and running with ``--resume`` continues exactly where it stopped. ``export`` writes the EMA
weights (fp16 safetensors + config JSON) into ``weights/image/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strata.errors import StrataError
# Imported now, not when the first sample grid is drawn: a run lasts hours, and the code on disk
# may change meanwhile (a later import would mix two versions of the package).
from strata.models.image_pipeline import generate
from strata.models.image_autoencoder import AUTOENCODER_WEIGHTS, PatchAutoencoder
from strata.models.image_diffusion import (
    ImageDiffusionConfig,
    ImageDiffusionModel,
    TextEncoder,
    add_guidance_input,
    build_unet,
    guidance_features,
    inpaint_conditioning,
    param_count,
    widen_for_inpaint,
)
from strata.train import data_emoji
from strata.train.captions import caption_for
from strata.train.masks import check_mix, random_masks
from strata.train.runs import (CHECKPOINT, Recipe, load_checkpoint, optimizer_step, resolve_run_dir, run_book,
                               save_checkpoint, start_run)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "image.yaml"
REPO_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "image"


# ---- configuration --------------------------------------------------------------------------


@dataclass
class TrainConfig(Recipe[ImageDiffusionConfig]):
    """The image model's recipe (configs/image.yaml, configs/image_inpaint.yaml)."""

    @classmethod
    def load(cls, path: Path | None = None) -> "TrainConfig":
        cfg = cls.parse(path, DEFAULT_CONFIG, ImageDiffusionConfig)
        model = cfg.model
        if model.latent == "unshuffle" and model.block_channels[0] < model.latent_channels:
            # Measured: a 32-wide first level on the 64-channel latent could not represent the
            # per-pixel noise it must predict, and samples stayed noisy however long it trained.
            raise StrataError(f"{path or DEFAULT_CONFIG}: model.block_channels[0] is {model.block_channels[0]}, below the "
                              f"{model.latent_channels} latent channels; widen the first level")
        return cfg


# ---- data -----------------------------------------------------------------------------------


@dataclass
class CaptionBank:
    """Text encodings of caption variants, computed on first use and kept in memory (fp16).

    Captions are a pure function of (caption_seed, item, variant), so the cache never changes
    results: a resumed run re-encodes what it needs and gets the same numbers — on the same text
    encoder runtime (ONNX Runtime and PyTorch differ by ~3e-5, below the fp16 they are kept in
    for most values; see ``TextEncoder.token_states``).
    """

    rows: list[dict]
    encoder: TextEncoder
    seed: int
    cache: dict[tuple[int, int], tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)
    empty: tuple[torch.Tensor, torch.Tensor] | None = None

    def get(self, keys: list[tuple[int, int] | None]) -> tuple[torch.Tensor, torch.Tensor]:
        """Context and mask for each key; None means the empty prompt (guidance dropout)."""
        todo = sorted({k for k in keys if k is not None and k not in self.cache})
        if todo:
            texts = [caption_for(self.rows[i], seed=self.seed, index=i, variant=v) for i, v in todo]
            ctx, mask = self.encoder.encode(texts, warn_truncation=False)
            for k, c, m in zip(todo, ctx.half(), mask.half()):
                self.cache[k] = (c, m)
        if self.empty is None:
            c, m = self.encoder.encode([""])
            self.empty = (c[0].half(), m[0].half())
        pairs = [self.empty if k is None else self.cache[k] for k in keys]
        return torch.stack([p[0] for p in pairs]).float(), torch.stack([p[1] for p in pairs]).float()


def load_dataset(cfg: TrainConfig) -> tuple[torch.Tensor, list[dict], torch.Tensor]:
    """(uint8 images (N, 4, 64, 64), manifest rows, sampling weights (N,))."""
    images, rows = data_emoji.load(Path(cfg.data["dir"]).expanduser() if cfg.data.get("dir") else None)
    if images.shape[1:] != (cfg.model.image_size, cfg.model.image_size, 4):
        raise StrataError(f"dataset images are {images.shape[1:]}, model expects {cfg.model.image_size}² RGBA")
    weights = torch.tensor([float(r.get("weight", 1.0)) for r in rows], dtype=torch.float64)
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), rows, weights


def load_autoencoder(cfg: TrainConfig) -> PatchAutoencoder | None:
    """The trained autoencoder for ``latent: autoencoder`` (from ``data.autoencoder_dir``, default weights/image)."""
    if cfg.model.latent != "autoencoder":
        return None
    directory = Path(cfg.data.get("autoencoder_dir") or REPO_WEIGHTS).expanduser()
    ae = PatchAutoencoder.load(directory)
    if ae.cfg.latent_channels != cfg.model.latent_depth or ae.cfg.patch != cfg.model.unshuffle:
        raise StrataError(f"the autoencoder in {directory} makes {ae.cfg.latent_channels}-channel latents at 1/{ae.cfg.patch} "
                          f"scale; model.latent_depth/unshuffle say {cfg.model.latent_depth} and 1/{cfg.model.unshuffle}")
    return ae


@torch.no_grad()
def dataset_latents(images: torch.Tensor, model: ImageDiffusionModel, batch: int = 256) -> torch.Tensor:
    """Every image's latent, computed once (the autoencoder is frozen while the UNet trains)."""
    return torch.cat([model.encode_images(images[i:i + batch].float() / 255.0) for i in range(0, len(images), batch)])


def dataset_fingerprint(rows: list[dict]) -> str:
    """sha256 over the items' (source, codepoint, image sha256), in order: identifies the training set."""
    h = hashlib.sha256()
    for r in rows:
        h.update(f"{r['source']}|{r['codepoint']}|{r['sha256']}\n".encode())
    return h.hexdigest()


# ---- one training step ----------------------------------------------------------------------


def _noised_batch(noise_sched, x0: torch.Tensor, g: torch.Generator, cond: torch.Tensor | None):
    """(t, noise, UNet input) for a batch: a random timestep per sample, x_t, and an inpainting
    model's extra input (masked latent + mask) concatenated to it."""
    t = torch.randint(0, noise_sched.config.num_train_timesteps, (x0.shape[0],), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    x_t = noise_sched.add_noise(x0, noise, t)
    return t, noise, (x_t if cond is None else torch.cat([x_t, cond], dim=1))


def _weighted_mse(noise_sched, t: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, min_snr_gamma: float) -> torch.Tensor:
    """Min-SNR-γ weighted MSE (Hang et al. 2023, eq. 8 for v)."""
    ab = noise_sched.alphas_cumprod[t]
    snr = ab / (1 - ab)
    # For v-targets the MSE already carries a factor (SNR + 1); min-SNR weight = min(SNR, γ) / (SNR + 1).
    w = torch.clamp(snr, max=min_snr_gamma) / (snr + 1) if min_snr_gamma > 0 else torch.ones_like(snr)
    return (w * F.mse_loss(pred, target, reduction="none").mean(dim=(1, 2, 3))).mean()


def training_step(unet, noise_sched, x0, context, mask, g: torch.Generator, min_snr_gamma: float,
                  cond: torch.Tensor | None = None) -> torch.Tensor:
    """v-prediction loss for one batch (min-SNR-γ weighted).

    ``cond``: an inpainting model's extra input (masked latent + mask), concatenated to x_t.
    """
    t, noise, x_in = _noised_batch(noise_sched, x0, g, cond)
    target = noise_sched.get_velocity(x0, noise, t)
    pred = unet(x_in, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
    return _weighted_mse(noise_sched, t, pred, target, min_snr_gamma)


@dataclass
class GuidanceTeacher:
    """What a guidance-distillation run learns from (recipe ``data.distill_guidance``): a frozen
    model whose two-call classifier-free guidance the student learns to give in one call."""

    unet: torch.nn.Module
    empty: tuple[torch.Tensor, torch.Tensor]  # the empty prompt's context and mask (the unguided half)
    w_min: float  # the scales the student learns (model.guidance_range)
    w_max: float


def distillation_step(student, teacher: GuidanceTeacher, noise_sched, x0, context, mask, g: torch.Generator,
                      min_snr_gamma: float, guidance_dim: int, cond: torch.Tensor | None = None) -> torch.Tensor:
    """Guidance-distillation loss for one batch (Meng et al. 2023, stage one, in v-space).

    Each sample gets a scale w ~ U[w_min, w_max] (``model.guidance_range``); the target is the teacher's guided prediction
    ``u + w·(c − u)`` (unguided u from the empty prompt, c from the sample's prompt — a dropped
    prompt thus gives u: the student keeps the unguided model two-call guidance needs). The
    student reads w as features and is trained to match in one call; same min-SNR weights as
    :func:`training_step`.
    """
    b = x0.shape[0]
    t, _, x_in = _noised_batch(noise_sched, x0, g, cond)
    scale = teacher.w_min + (teacher.w_max - teacher.w_min) * torch.rand(b, generator=g)
    with torch.no_grad():
        empty_ctx = teacher.empty[0].expand(b, -1, -1)
        empty_mask = teacher.empty[1].expand(b, -1)
        both = teacher.unet(torch.cat([x_in, x_in]), torch.cat([t, t]), encoder_hidden_states=torch.cat([empty_ctx, context]),
                            encoder_attention_mask=torch.cat([empty_mask, mask])).sample
        unguided, guided = both.chunk(2)
        target = unguided + scale[:, None, None, None] * (guided - unguided)
    pred = student(x_in, t, encoder_hidden_states=context, encoder_attention_mask=mask,
                   timestep_cond=guidance_features(scale, guidance_dim)).sample
    return _weighted_mse(noise_sched, t, pred, target, min_snr_gamma)


def load_teacher(cfg: TrainConfig, bank: "CaptionBank") -> tuple[GuidanceTeacher | None, str]:
    """The recipe's guidance teacher (``data.distill_guidance``) and its weights hash; (None, "") without one."""
    spec = cfg.data.get("distill_guidance")
    if not spec:
        return None, ""
    if not cfg.model.guidance_embedding:
        raise StrataError("data.distill_guidance needs model.guidance_embedding > 0 (the student reads the scale)")
    directory = Path(spec["teacher"]).expanduser()
    if not directory.is_absolute():
        directory = REPO_WEIGHTS.parents[1] / directory
    teacher = ImageDiffusionModel.from_pretrained(directory)
    if dataclasses.replace(cfg.model, guidance_embedding=0, guidance_range=teacher.cfg.guidance_range) != teacher.cfg:
        raise StrataError(f"the teacher in {directory} has another architecture than the student minus its guidance "
                          "input; distill from the model this recipe's model section was copied from")
    teacher.unet.float().eval().requires_grad_(False)
    empty = bank.get([None])
    w_min, w_max = cfg.model.guidance_range
    return GuidanceTeacher(teacher.unet, (empty[0][0], empty[1][0]), float(w_min), float(w_max)), teacher.weights_sha256


def lr_at(step: int, tc: dict, cooldown_from: int | None = None) -> float:
    """Linear warmup, then constant: the run is open-ended (resumed many times) and EMA averages.

    A cool-down recipe (``cooldown_steps``) then decays it linearly to ``lr_final`` over that many
    steps from ``cooldown_from`` (the step the run was resumed at with that recipe) — the
    "warmup-stable-decay" schedule: a constant rate for as long as the run goes on, and a short
    decay whenever weights are to be shipped (Hägele et al. 2024 found it matches a cosine
    schedule of the same length).
    """
    if step < tc["warmup_steps"]:
        return tc["lr"] * (step + 1) / tc["warmup_steps"]
    if tc.get("cooldown_steps") and cooldown_from is not None:
        done = min(max(step - cooldown_from, 0) / int(tc["cooldown_steps"]), 1.0)
        return tc["lr"] + (float(tc.get("lr_final", 0.0)) - tc["lr"]) * done
    return tc["lr"]


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> None:
    """EMA with warmup: early on the average follows the model closely ((1+n)/(10+n))."""
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - d)


# ---- sample grids ---------------------------------------------------------------------------


def sample_grid(model: ImageDiffusionModel, cfg: TrainConfig, out: Path) -> Path:
    """Render fixed prompts (rows) × fixed seeds (columns) on a light gray checker, as PNG."""
    from PIL import Image as PILImage

    rc = cfg.run
    prompts, n, s = rc["sample_prompts"], int(rc["sample_count"]), cfg.model.image_size
    canvas = np.zeros((len(prompts) * s, n * s, 3), np.float32)
    yy, xx = np.mgrid[0:s, 0:s]
    checker = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 0.92, 0.78).astype(np.float32)
    for r, prompt in enumerate(prompts):
        result = generate(model, prompt, count=n, seed=int(rc["sample_seed"]), steps=rc["sample_steps"],
                          guidance=rc["sample_guidance"])
        for c, img in enumerate(result.images):
            a = img.alpha[..., None]
            canvas[r * s:(r + 1) * s, c * s:(c + 1) * s] = img.rgb * a + checker * (1 - a)
    out.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)).save(out)
    return out


# ---- the loop -------------------------------------------------------------------------------


def train(
    *,
    config: Path | None = None,
    resume: bool = False,
    threads: int = 1,
    max_minutes: float | None = None,
    max_steps: int | None = None,
    run_dir: Path | None = None,
    init_from: Path | None = None,
) -> Path:
    """Train (or resume) the image model; returns the run directory.

    Args:
        config: YAML recipe; default configs/image.yaml. On resume without it, the checkpoint's recipe
            is used; with it, its data/train/run values apply (the model section must match).
        resume: continue from ``run_dir/checkpoint.pt`` (error if absent).
        threads: torch CPU threads (default 1, leaving the other core free).
        max_minutes: stop (after a checkpoint) when this much wall time has passed; None = no limit.
        max_steps: stop at this global step; None = no limit.
        run_dir: overrides the config/env run directory.
        init_from: start a new run from exported weights (e.g. weights/image on a machine
            without the run's checkpoint): UNet and EMA start from them, the step count continues
            from the export's, the optimizer starts fresh (its warmup runs again).
    """
    if resume and init_from is not None:
        raise StrataError("pass either --resume (continue the run's checkpoint) or --init-from (start from an export), not both")
    cfg, rdir, state = start_run(TrainConfig.load(config), "image", model_class=ImageDiffusionConfig, config=config,
                                 resume=resume, threads=threads, run_dir=run_dir)
    ckpt_path = rdir / CHECKPOINT
    tc = cfg.train

    images, rows, weights = load_dataset(cfg)
    encoder = TextEncoder(cfg.model)
    bank = CaptionBank(rows, encoder, seed=int(cfg.data["caption_seed"]))

    from diffusers import DDPMScheduler

    noise_sched = DDPMScheduler(num_train_timesteps=cfg.model.num_train_timesteps,
                                beta_schedule=cfg.model.beta_schedule, prediction_type=cfg.model.prediction_type)
    torch.manual_seed(tc["seed"])
    unet = build_unet(cfg.model).train()
    ema = build_unet(cfg.model).eval().requires_grad_(False)
    ema.load_state_dict(unet.state_dict())
    opt = torch.optim.AdamW(unet.parameters(), lr=tc["lr"], betas=tuple(tc["betas"]), weight_decay=tc["weight_decay"])
    g = torch.Generator("cpu").manual_seed(tc["seed"])
    step = 0
    warmup_offset = 0 if state is None else int(state.get("warmup_from", 0))
    if state is not None:
        unet.load_state_dict(state["unet"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["rng"]["generator"])
        torch.set_rng_state(state["rng"]["torch"])
        random.setstate(_tuple_state(state["rng"]["python"]))
        step = int(state["step"])
    elif init_from is not None:
        step = _init_from_export(Path(init_from), cfg, unet, ema)
        warmup_offset = step  # fresh AdamW moments: warm up again from here
    cooldown_from = None
    if tc.get("cooldown_steps"):
        if state is None:
            raise StrataError(f"{config}: a cool-down recipe (train.cooldown_steps) finishes an existing run; pass "
                              "--resume (and --run-dir if the run is elsewhere) instead of starting a new one")
        # The decay starts where the run is resumed with a cool-down recipe (a later resume
        # continues it), and the run stops when it ends.
        stored = state.get("cooldown_from")
        cooldown_from = step if stored is None else int(stored)
        end = cooldown_from + int(tc["cooldown_steps"])
        max_steps = end if max_steps is None else min(max_steps, end)
    fingerprint = dataset_fingerprint(rows)
    if state is not None and state.get("dataset") not in (None, fingerprint):
        # Same npm versions give the same manifest; a mismatch means a different dataset (or an
        # opt-out), so "exactly where it stopped" no longer holds. Continue, but say so.
        warnings.warn(f"the dataset differs from the one this run started with ({fingerprint[:12]} vs "
                      f"{state['dataset'][:12]}); resuming anyway", stacklevel=2)
    autoencoder = load_autoencoder(cfg)
    sample_model = ImageDiffusionModel(cfg=cfg.model, unet=ema, text=encoder, autoencoder=autoencoder)
    latent_id = ""
    if autoencoder is not None:
        # The run learned these latents: the encoder and normalization must be the same (a
        # fine-tuned decoder is fine). Checkpoints from before recorded the whole file's sha256.
        latent_id = autoencoder.latent_fingerprint()
        changed = False
        if state is not None and "latent_encoder" in state:
            changed = state["latent_encoder"] != latent_id
        elif state is not None and state.get("autoencoder"):  # older checkpoints: the file's sha256
            changed = state["autoencoder"] != hashlib.sha256(_autoencoder_file(cfg).read_bytes()).hexdigest()
        if changed:
            raise StrataError(f"the autoencoder in {_autoencoder_file(cfg).parent} is not the one this run trained on "
                              "(its encoder makes other latents); restore it or start a new run")
    teacher, teacher_id = load_teacher(cfg, bank)
    if state is not None and state.get("teacher", "") != teacher_id:
        raise StrataError("the guidance teacher is not the one this run started with (its weights changed, or the "
                          "recipe's data.distill_guidance was added or removed); restore it (e.g. `git checkout` the "
                          "teacher's weights) or start a new run")
    if teacher is not None and state is None and init_from is None:
        raise StrataError("a guidance distillation starts from its teacher: pass --init-from with the teacher's "
                          f"folder ({cfg.data['distill_guidance']['teacher']})")
    latents = dataset_latents(images, sample_model)
    print(f"run dir {rdir} | step {step} | UNet {param_count(unet) / 1e6:.1f} M params | {len(rows)} images | "
          f"{threads} thread(s)", flush=True)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {
            "unet": unet.state_dict(), "ema": ema.state_dict(), "optimizer": opt.state_dict(), "step": step,
            "rng": {"generator": g.get_state(), "torch": torch.get_rng_state(), "python": _list_state(random.getstate())},
            "model_config": json.loads(cfg.model.to_json()), "data": cfg.data, "train": tc, "run": cfg.run,
            "config_source": cfg.source, "saved_at": time.time(), "dataset": fingerprint, "latent_encoder": latent_id,
            "warmup_from": warmup_offset, "cooldown_from": cooldown_from, "teacher": teacher_id,
        })

    def lr_now() -> float:  # warmup counts from warmup_offset (a run started from an export)
        return lr_at(step - warmup_offset, tc, None if cooldown_from is None else cooldown_from - warmup_offset)

    n_variants, dropout = int(cfg.data["caption_variants"]), float(cfg.data["prompt_dropout"])
    mask_mix = check_mix(cfg.data.get("inpaint_masks") or {"full": 1.0}) if cfg.model.inpaint else None
    with run_book(rdir, step=step, total=max_steps, checkpoint=checkpoint,
                  checkpoint_minutes=float(cfg.run["checkpoint_minutes"]), max_minutes=max_minutes) as book:
        while book.running(step, max_steps):
            # --- batch: weighted sampling, caption variant per sample, prompt dropout
            idx = torch.multinomial(weights, tc["batch_size"], replacement=True, generator=g)
            variant = torch.randint(0, n_variants, (len(idx),), generator=g)
            drop = torch.rand(len(idx), generator=g) < dropout
            keys = [None if d else (int(i), int(v)) for i, v, d in zip(idx, variant, drop)]
            context, mask = bank.get(keys)
            x0 = latents[idx]
            cond = None
            if mask_mix is not None:
                rgba = images[idx].float() / 255.0
                cond = inpaint_conditioning(sample_model, rgba, random_masks(rgba[:, 3], mask_mix, g), len(idx))
            # --- step
            lr = lr_now()
            if teacher is None:
                loss = training_step(unet, noise_sched, x0, context, mask, g, float(tc["min_snr_gamma"]), cond)
            else:
                loss = distillation_step(unet, teacher, noise_sched, x0, context, mask, g, float(tc["min_snr_gamma"]),
                                         cfg.model.guidance_embedding, cond)
            optimizer_step(opt, loss, lr, grad_clip=float(tc["grad_clip"]))
            ema_update(ema, unet, step, float(tc["ema_decay"]))
            step += 1
            book.add(step, loss.item())
            # --- bookkeeping
            book.log_step(step, lr, every=int(cfg.run["log_every"]), cached_captions=len(bank.cache))  # lr: of this step
            if step % cfg.run["sample_every"] == 0:
                with book.aside():
                    grid = sample_grid(sample_model, cfg, rdir / "samples" / f"step{step:07d}.png")
                print(f"sample grid {grid}", flush=True)
    print(f"checkpoint at step {step} in {ckpt_path}", flush=True)
    return rdir


def _init_from_export(directory: Path, cfg: TrainConfig, unet: torch.nn.Module, ema: torch.nn.Module) -> int:
    """Load exported weights into ``unet`` and ``ema``; returns the export's training step."""
    exported = ImageDiffusionModel.from_pretrained(directory)
    # A text-to-image export may start an inpainting run (conv_in widened with zeros), and any
    # export a guidance distillation (a zero projection of the scale): both start unchanged.
    grown = dataclasses.replace(exported.cfg, inpaint=cfg.model.inpaint, guidance_embedding=cfg.model.guidance_embedding,
                                guidance_range=cfg.model.guidance_range)
    if grown != cfg.model or (exported.cfg.guidance_embedding not in (0, cfg.model.guidance_embedding)):
        raise StrataError(f"the model in {directory} has a different architecture from the config's model section; "
                          "use the config it was trained with")
    state = add_guidance_input(widen_for_inpaint(exported.unet.state_dict(), cfg.model), cfg.model)
    unet.load_state_dict(state)
    ema.load_state_dict(state)
    return int(exported.extra.get("training", {}).get("step", 0))


def _autoencoder_file(cfg: TrainConfig) -> Path:
    return Path(cfg.data.get("autoencoder_dir") or REPO_WEIGHTS).expanduser() / AUTOENCODER_WEIGHTS


def _list_state(s):  # python RNG state → nested lists (torch.load weights_only accepts them)
    return [s[0], list(s[1]), s[2]]


def _tuple_state(s):
    return (s[0], tuple(s[1]), s[2])


def export(*, run_dir: Path | None = None, out_dir: Path = REPO_WEIGHTS, config: Path | None = None) -> Path:
    """Write the run's EMA weights as fp16 safetensors + config.json into ``out_dir`` (default weights/image)."""
    rdir = resolve_run_dir(TrainConfig.load(config).run, "image", run_dir)
    state = load_checkpoint(rdir / CHECKPOINT)
    mcfg = ImageDiffusionConfig.from_dict(state["model_config"])
    unet = build_unet(mcfg)
    unet.load_state_dict(state["ema"])
    ecfg = TrainConfig(mcfg, state["data"], state["train"], state["run"])
    model = ImageDiffusionModel(cfg=mcfg, unet=unet, autoencoder=load_autoencoder(ecfg))
    extra = {"training": {"step": int(state["step"]), "data": state["data"], "train": state["train"],
                          "exported_from": "EMA weights", "saved_at": state["saved_at"]}}
    path = model.save_pretrained(Path(out_dir), dtype=torch.float16, extra=extra)
    size_mb = path.stat().st_size / 1e6
    if size_mb > 100:
        raise StrataError(f"exported weights are {size_mb:.0f} MB, over the 100 MB budget; shrink model.block_channels")
    return path


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m strata.train.cli train image --help")
