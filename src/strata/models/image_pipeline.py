"""Text-to-image sampling: one pipeline for the tiny test model and the shipped one.

``generate()`` reads as numbered steps, like a diffusers pipeline: check inputs → encode the
prompt → prepare latents (one CPU generator per image seed) → set timesteps → denoise with
classifier-free guidance and a progress callback → decode to RGBA → return ``Image`` values.

Samplers are diffusers schedulers configured from the model's training schedule, chosen by
name from ``SAMPLERS`` (a dict, so adding one is one line).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from strata.errors import ModelError, StrataError
from strata.media.image import Image
from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel

# Limits checked at the boundary (the node schema for image.generate should read these).
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_COUNT = 64


def _dpmpp(cfg: ImageDiffusionConfig, thresholding: bool):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        **_schedule(cfg), algorithm_type="dpmsolver++", solver_order=2,
        thresholding=thresholding, sample_max_value=1.0, lower_order_final=True,
    )


def _euler(cfg: ImageDiffusionConfig, thresholding: bool):
    from diffusers import EulerDiscreteScheduler

    # Euler works in sigma space and has no thresholding option; it is ignored here.
    return EulerDiscreteScheduler(**_schedule(cfg), timestep_spacing="trailing")


def _ddim(cfg: ImageDiffusionConfig, thresholding: bool):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        **_schedule(cfg), thresholding=thresholding, sample_max_value=1.0,
        clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing",
    )


def _schedule(cfg: ImageDiffusionConfig) -> dict:
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_schedule": cfg.beta_schedule,
        "prediction_type": cfg.prediction_type,
    }


SAMPLERS: dict[str, Callable] = {"dpmpp": _dpmpp, "euler": _euler, "ddim": _ddim}


@dataclass(frozen=True)
class Progress:
    """One denoising step done: ``step`` of ``total`` (1-based)."""

    step: int
    total: int


@dataclass(frozen=True)
class GenerateResult:
    """Images (straight-alpha RGBA at the model's size) and the seed each came from."""

    images: list[Image]
    seeds: list[int]


def check_args(*, count: int, steps: int, guidance: float, sampler: str, seed: int, size: int,
               cfg: ImageDiffusionConfig) -> None:
    """Raise StrataError naming the parameter, its value and the allowed range if any is bad."""
    if not 1 <= count <= MAX_COUNT:
        raise StrataError(f"count must be between 1 and {MAX_COUNT}, got {count}")
    if not 1 <= steps <= MAX_STEPS:
        raise StrataError(f"steps must be between 1 and {MAX_STEPS}, got {steps}")
    if not 0.0 <= guidance <= MAX_GUIDANCE:
        raise StrataError(f"guidance must be between 0 and {MAX_GUIDANCE}, got {guidance}")
    if sampler not in SAMPLERS:
        raise StrataError(f"unknown sampler {sampler!r}; choose one of {sorted(SAMPLERS)}")
    if seed < 0:
        raise StrataError(f"seed must be ≥ 0, got {seed}")
    if size != cfg.image_size:
        raise StrataError(f"size must be {cfg.image_size} for this model (it generates {cfg.image_size}×"
                          f"{cfg.image_size}); got {size}. Resize afterwards with an enhance op.")


@torch.no_grad()
def generate(
    model: ImageDiffusionModel,
    prompt: str,
    *,
    negative_prompt: str = "",
    count: int = 1,
    seed: int = 0,
    steps: int = 20,
    guidance: float = 4.0,
    sampler: str = "dpmpp",
    size: int | None = None,
    thresholding: bool | None = None,
    callback: Callable[[Progress], None] | None = None,
) -> GenerateResult:
    """Generate ``count`` images for ``prompt``.

    Args:
        model: the model (its text encoder is loaded on first use).
        prompt: what to draw; longer than the encoder's token limit → truncated with a warning.
        negative_prompt: what to steer away from (replaces the empty prompt in guidance); default "".
        count: images to make, 1..64; image i uses seed ``seed + i``, so one image from a batch
            can be remade alone.
        seed: ≥ 0, default 0.
        steps: denoising steps, 1..200, default 20.
        guidance: classifier-free guidance scale, 0..30 (1 = no guidance, 0 = unconditional),
            default 4.
        sampler: "dpmpp" (DPM-Solver++ 2M, default), "euler" or "ddim".
        size: output side in pixels; only the model's native size is accepted (default).
        thresholding: dynamic thresholding of the predicted clean latent to [-1, 1] (dpmpp and
            ddim). Default: on for the pixel (unshuffle) latent, whose values are pixels in
            [-1, 1]; off for the autoencoder latent, which is normalized to unit variance and
            would be flattened by the clamp.
        callback: called after every step with ``Progress(step, total)``.
    """
    cfg = model.cfg
    size = cfg.image_size if size is None else size
    # 1. check inputs
    check_args(count=count, steps=steps, guidance=guidance, sampler=sampler, seed=seed, size=size, cfg=cfg)
    seeds = [seed + i for i in range(count)]

    # 2. encode the prompt once for the whole batch (and the negative prompt for guidance)
    use_cfg = guidance != 1.0
    texts = [negative_prompt, prompt] if use_cfg else [prompt]
    context, mask = model.text_encoder().encode(texts)
    context = context.repeat_interleave(count, dim=0)
    mask = mask.repeat_interleave(count, dim=0)

    # 3. prepare latents: one CPU generator per image, so image i depends only on seeds[i]
    shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    latents = torch.stack([torch.randn(shape, generator=torch.Generator("cpu").manual_seed(s)) for s in seeds])

    # 4. timesteps
    if thresholding is None:
        thresholding = cfg.latent == "unshuffle"
    scheduler = SAMPLERS[sampler](cfg, thresholding)
    scheduler.set_timesteps(steps)
    latents = latents * scheduler.init_noise_sigma

    # 5. denoise
    unet = model.unet
    for i, t in enumerate(scheduler.timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        if use_cfg:
            x_in = torch.cat([x_in, x_in])
        out = unet(x_in, t, encoder_hidden_states=context, encoder_attention_mask=mask).sample
        if use_cfg:
            uncond, cond = out.chunk(2)
            out = uncond + guidance * (cond - uncond)
        latents = scheduler.step(out, t, latents).prev_sample
        if not torch.isfinite(latents).all():
            raise ModelError(f"sampling diverged at step {i + 1} (non-finite values); try fewer steps or lower guidance")
        if callback is not None:
            callback(Progress(i + 1, steps))

    # 6. decode
    rgba = model.decode_latents(latents)
    images = [Image(x.permute(1, 2, 0).contiguous().numpy()) for x in rgba]
    return GenerateResult(images=images, seeds=seeds)
