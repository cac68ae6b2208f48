"""Text-to-image sampling: one pipeline for the tiny test model and the shipped one.

``generate()`` reads as numbered steps, like a diffusers pipeline: check inputs → encode the
prompt → prepare latents (one CPU generator per image seed) → set timesteps → denoise with
classifier-free guidance and a progress callback → decode to RGBA → return ``Image`` values.

Samplers are diffusers schedulers configured from the model's training schedule, chosen by
name from ``SAMPLERS`` (a dict, so adding one is one line).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch

from strata.errors import ModelError, StrataError
from strata.media.image import Image
from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel, inpaint_conditioning
from strata.models.samplers import BUILTIN_GUIDANCE_STOP, DEFAULT_GUIDANCE, Sampling, SamplingArgs

if TYPE_CHECKING:  # **kwargs typing only (PEP 692)
    from typing_extensions import Unpack

# Limits checked at the boundary (the node schema for image.generate should read these).
MAX_STEPS = 200
MAX_GUIDANCE = 30.0
MAX_COUNT = 64


def _dpmpp(schedule: dict, thresholding: bool):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        **schedule, algorithm_type="dpmsolver++", solver_order=2,
        thresholding=thresholding, sample_max_value=1.0, lower_order_final=True,
    )


def _euler(schedule: dict, thresholding: bool):
    from diffusers import EulerDiscreteScheduler

    # Euler works in sigma space and has no thresholding option; it is ignored here.
    return EulerDiscreteScheduler(**schedule, timestep_spacing="trailing")


def _ddim(schedule: dict, thresholding: bool):
    from diffusers import DDIMScheduler

    return DDIMScheduler(
        **schedule, thresholding=thresholding, sample_max_value=1.0,
        clip_sample=False, set_alpha_to_one=True, timestep_spacing="trailing",
    )


def _schedule(cfg: ImageDiffusionConfig) -> dict:
    """The model's training noise schedule, as a diffusers scheduler's config takes it."""
    return {
        "num_train_timesteps": cfg.num_train_timesteps,
        "beta_schedule": cfg.beta_schedule,
        "prediction_type": cfg.prediction_type,
    }


SAMPLERS: dict[str, Callable] = {"dpmpp": _dpmpp, "euler": _euler, "ddim": _ddim}


@dataclass(frozen=True)
class Progress:
    """One denoising step done: ``step`` of ``total`` (1-based); ``message`` says what a long
    pause before a step is (step 0: the model is being prepared)."""

    step: int
    total: int
    message: str | None = None


@dataclass(frozen=True)
class GenerateResult:
    """Images (straight-alpha RGBA at the model's size) and the seed each came from."""

    images: list[Image]
    seeds: list[int]


def guided_steps(s: Sampling, steps: int | None = None) -> int:
    """How many of the first of ``steps`` steps that run (default ``s.steps``; image-to-image
    runs fewer) are guided (``guidance_stop``, a share of them, as diffusers' guiders count it);
    at least one when the share is above 0, so a one-step run with guidance is guided."""
    stop = BUILTIN_GUIDANCE_STOP if s.guidance_stop is None else s.guidance_stop
    # Rounded first: 0.3 × 10 is 3.0000000000000004 in floating point, and is 3 steps.
    return math.ceil(round(stop * (s.steps if steps is None else steps), 9))


def check_args(s: Sampling, *, size: int, cfg: ImageDiffusionConfig) -> None:
    """Raise StrataError naming the parameter, its value and the allowed range if any is bad."""
    if not 1 <= s.count <= MAX_COUNT:
        raise StrataError(f"count must be between 1 and {MAX_COUNT}, got {s.count}")
    if not 1 <= s.steps <= MAX_STEPS:
        raise StrataError(f"steps must be between 1 and {MAX_STEPS}, got {s.steps}")
    if not 0.0 <= s.guidance <= MAX_GUIDANCE:
        raise StrataError(f"guidance must be between 0 and {MAX_GUIDANCE}, got {s.guidance}")
    if s.sampler not in SAMPLERS:
        raise StrataError(f"unknown sampler {s.sampler!r}; choose one of {sorted(SAMPLERS)}")
    if s.seed < 0:
        raise StrataError(f"seed must be ≥ 0, got {s.seed}")
    if s.guidance_stop is not None and not 0.0 <= s.guidance_stop <= 1.0:
        raise StrataError(f"guidance_stop must be between 0 and 1 (the share of steps guided), got {s.guidance_stop}")
    if size != cfg.image_size:
        raise StrataError(f"size must be {cfg.image_size} for this model (it generates {cfg.image_size}×"
                          f"{cfg.image_size}); got {size}. Resize afterwards with an enhance op.")


@torch.no_grad()
def generate(
    model: ImageDiffusionModel,
    prompt: str,
    *,
    size: int | None = None,
    thresholding: bool | None = None,
    callback: Callable[[Progress], None] | None = None,
    **sampling: Unpack[SamplingArgs],
) -> GenerateResult:
    """Generate ``count`` images for ``prompt``.

    Args:
        model: the model (its text encoder is loaded on first use).
        prompt: what to draw; longer than the encoder's token limit → truncated with a warning.
        size: output side in pixels; only the model's native size is accepted (default).
        thresholding: dynamic thresholding of the predicted clean latent to [-1, 1] (dpmpp and
            ddim). Default: on for the pixel (unshuffle) latent, whose values are pixels in
            [-1, 1]; off for the autoencoder latent, which is normalized to unit variance and
            would be flattened by the clamp.
        callback: called after every step with ``Progress(step, total)``.
        **sampling: :class:`~strata.models.samplers.Sampling`'s settings — negative_prompt,
            count (1..64), seed (≥ 0), steps (1..200), guidance (0..30, default
            :data:`~strata.models.samplers.DEFAULT_GUIDANCE`) and sampler ("dpmpp" =
            DPM-Solver++ 2M, default; "euler"; "ddim") and guidance_stop (0..1, the share of
            steps guided; default :data:`~strata.models.samplers.BUILTIN_GUIDANCE_STOP`).
    """
    s = Sampling(**sampling)
    cfg = model.cfg
    size = cfg.image_size if size is None else size
    # 1. check inputs
    check_args(s, size=size, cfg=cfg)
    # 2. encode the prompt once for the whole batch (and the negative prompt for guidance)
    context, mask = _encode(model, prompt, s.negative_prompt, s.guidance, s.count, callback, s.steps)
    # 3. prepare latents: one CPU generator per image, so image i depends only on its seed
    noise = torch.stack([seed_noise(cfg, seed) for seed in s.seeds])
    # 4. timesteps, 5. denoise, 6. decode
    scheduler = _scheduler(cfg, s.sampler, s.steps, thresholding)
    latents = _denoise(model, scheduler, noise * scheduler.init_noise_sigma, scheduler.timesteps, context, mask,
                       s.guidance, guided_steps(s), callback, inpaint_conditioning(model, None, None, s.count))
    return GenerateResult(images=_decode(model, latents), seeds=s.seeds)


def seed_noise(cfg: ImageDiffusionConfig, seed: int) -> torch.Tensor:
    """The initial latent noise of one image: a function of ``seed`` alone."""
    shape = (cfg.latent_channels, cfg.latent_size, cfg.latent_size)
    return torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed))


def two_calls(model: ImageDiffusionModel, negative: str, guidance: float) -> bool:
    """Whether guidance runs the UNet twice per step (unguided + guided, then mixed).

    Not at guidance 1 (the plain conditional model), nor for a model that reads the scale
    (``guidance_embedding``) within the scales it learned — unless a negative prompt is given:
    it learned the direction away from the empty prompt only.
    """
    if guidance == 1.0:
        return False
    lo, hi = model.cfg.guidance_range
    return not (model.cfg.guidance_embedding and not negative.strip() and lo <= guidance <= hi)


def _encode(model: ImageDiffusionModel, prompt: str, negative: str, guidance: float, count: int,
            callback: Callable[[Progress], None] | None = None, total: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-attention context and mask: [negative × count, prompt × count] when guidance takes
    two calls (:func:`two_calls`), else prompt × count. ``callback`` hears ``Progress(0, total,
    message)`` before a first-use export of the text encoder's graph."""
    texts = [negative, prompt] if two_calls(model, negative, guidance) else [prompt]
    encoder = model.text_encoder()
    if callback is not None and encoder.export_pending():  # otherwise a silent ~3 s stall before step 0
        callback(Progress(0, total, "exporting the text encoder to ONNX Runtime (first use, ~3 s)"))
    context, mask = encoder.encode(texts, remember=True)
    return context.repeat_interleave(count, dim=0), mask.repeat_interleave(count, dim=0)


def _scheduler(cfg: ImageDiffusionConfig, sampler: str, steps: int, thresholding: bool | None):
    if thresholding is None:
        thresholding = cfg.latent == "unshuffle"
    # A copy of a made one: making a scheduler integrates its noise schedule (~3 ms, each call).
    scheduler = copy.deepcopy(_scheduler_template(sampler, thresholding, **_schedule(cfg)))
    scheduler.set_timesteps(steps)
    return scheduler


@functools.lru_cache(maxsize=16)
def _scheduler_template(sampler: str, thresholding: bool, **schedule: Any):
    return SAMPLERS[sampler](schedule, thresholding)


def _denoise(model: ImageDiffusionModel, scheduler, latents: torch.Tensor, timesteps, context: torch.Tensor,
             mask: torch.Tensor, guidance: float, guided: int, callback: Callable[[Progress], None] | None,
             cond: torch.Tensor | None = None) -> torch.Tensor:
    """Run ``timesteps`` of the sampler from ``latents``, with classifier-free guidance unless it is 1:
    two calls a step when ``context`` holds [negative, prompt] rows (:func:`_encode`), else one
    (a model that reads the scale gives the guided prediction itself). Only the first ``guided``
    steps are guided (:func:`guided_steps`); the later ones run the prompt rows alone.

    ``cond``: an inpainting model's extra input (:func:`inpaint_conditioning`), the same for the
    guided and unguided halves — guidance steers by the text only.
    """
    from strata.models.unet_onnx import export_pending, one_torch_thread_while_sampling

    if callback is not None and export_pending(model):  # otherwise a silent ~5 s stall at step 0
        callback(Progress(0, len(timesteps), "exporting the UNet to ONNX Runtime (first use, ~5 s)"))
    with one_torch_thread_while_sampling() if model.runs_on_onnx() else contextlib.nullcontext():
        return _sample(model, scheduler, latents, timesteps, context, mask, guidance, guided, callback, cond)


def _sample(model: ImageDiffusionModel, scheduler, latents: torch.Tensor, timesteps, context: torch.Tensor,
            mask: torch.Tensor, guidance: float, guided: int, callback: Callable[[Progress], None] | None,
            cond: torch.Tensor | None) -> torch.Tensor:
    use_cfg = context.shape[0] == 2 * latents.shape[0]
    scale = None if use_cfg else torch.tensor([guidance])  # read by a model with guidance features only
    n = latents.shape[0]
    for i, t in enumerate(timesteps):
        x_in = scheduler.scale_model_input(latents, t)
        if cond is not None:
            x_in = torch.cat([x_in, cond], dim=1)
        if use_cfg and i < guided:
            unguided, conditional = model.denoise(torch.cat([x_in, x_in]), t, context, mask, scale).chunk(2)
            out = unguided + guidance * (conditional - unguided)
        elif use_cfg:  # past guidance_stop: the prompt rows alone
            out = model.denoise(x_in, t, context[n:], mask[n:], scale)
        else:
            out = model.denoise(x_in, t, context, mask, scale)
        latents = scheduler.step(out, t, latents).prev_sample
        if not torch.isfinite(latents).all():
            raise ModelError(f"sampling diverged at step {i + 1} (non-finite values); try fewer steps or lower guidance")
        if callback is not None:
            callback(Progress(i + 1, len(timesteps)))
    return latents


def _decode(model: ImageDiffusionModel, latents: torch.Tensor) -> list[Image]:
    # One image at a time: the decoder's convolutions pick their algorithm by batch size (last
    # bits differ), while the UNet on ONNX Runtime (loaded weights) gives each row the same bits
    # at any batch size. So image i of a batch is byte-identical to that seed generated alone —
    # a file's own metadata (its seed) remakes it exactly. (An eager PyTorch UNet — training,
    # STRATA_UNET_RUNTIME=torch — matches only to ~1e-3.) Costs ~3 ms an image.
    return [Image(model.decode_latents(x[None])[0].permute(1, 2, 0).contiguous().numpy()) for x in latents]


@torch.no_grad()
def variation(
    model: ImageDiffusionModel,
    image: Image,
    prompt: str,
    *,
    mask: np.ndarray | None = None,
    strength: float = 0.6,
    thresholding: bool | None = None,
    callback: Callable[[Progress], None] | None = None,
    **sampling: Unpack[SamplingArgs],
) -> GenerateResult:
    """Image-to-image (SDEdit, Meng et al. 2022): ``count`` variations of ``image``; with ``mask``, inpainting.

    Without a mask the whole image is redone: it is brought into the model's domain (resized to
    its side with Lanczos, alpha kept), encoded, noised to the level of the sampler's timestep
    ``len·(1 − strength)`` and denoised from there with the prompt; the result has the model's
    size. Strength 0 returns the input (resized) unchanged; 1 equals :func:`generate` with the
    same seed.

    With a mask (an inpainting model, ``cfg.inpaint``) only the masked part is repainted, and
    any image works, whatever made it: it is padded (transparent, right and bottom) to a square
    and brought to the model's side; the model sees the kept pixels and the mask — never what is
    under the hole —; the repainted pixels are scaled back and composited over the original, at
    its size. Pixels farther than the feather (~0.75 model pixels, scaled) from the mask keep
    their exact values. Outpainting is the same call on an image padded with transparency, the
    padding masked. Strength 0 returns the input; 1 fills the hole from noise.

    Args:
        image: any size.
        mask: None, or (H, W) float in [0, 1] at the image's size, 1 = repaint; soft edges blend.
        strength: [0, 1], how much of the denoising to redo (default 0.6; inpainting usually 1).
        Others as for :func:`generate`; image i uses seed ``seed + i``.

    Raises:
        ModelError: a mask for a model without the mask input.
        StrataError: bad arguments, a mask of another size, or a mask that selects nothing.
    """
    s = Sampling(**sampling)
    cfg = model.cfg
    check_args(s, size=cfg.image_size, cfg=cfg)
    if not 0.0 <= strength <= 1.0:
        raise StrataError(f"strength must be between 0 and 1, got {strength}")
    count, seeds = s.count, s.seeds
    if mask is None:
        source = _to_model_size(image, cfg.image_size)
        if strength == 0.0:
            return GenerateResult(images=[source] * count, seeds=seeds)
        rgba = torch.from_numpy(np.array(source.pixels)).permute(2, 0, 1)[None]
        cond, finish = inpaint_conditioning(model, None, None, count), (lambda out: out)
    else:
        rgba, hole_t, blend = _inpaint_inputs(model, image, mask)
        if strength == 0.0:
            return GenerateResult(images=[image] * count, seeds=seeds)
        cond = inpaint_conditioning(model, rgba, hole_t, 1).repeat(count, 1, 1, 1)
        finish = lambda out: paste_back(image, out, blend)  # noqa: E731
    noise = torch.stack([seed_noise(cfg, seed) for seed in seeds])
    scheduler = _scheduler(cfg, s.sampler, s.steps, thresholding)
    start, latents = _start_latents(model, scheduler, rgba, noise, strength, s.steps)
    run = scheduler.timesteps[start:]
    context, tmask = _encode(model, prompt, s.negative_prompt, s.guidance, count, callback, len(run))
    latents = _denoise(model, scheduler, latents, run, context, tmask, s.guidance, guided_steps(s, len(run)),
                       callback, cond)
    return GenerateResult(images=[finish(out) for out in _decode(model, latents)], seeds=seeds)


def _inpaint_inputs(model: ImageDiffusionModel, image: Image,
                    mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The padded image at model size (1, 4, s, s), its hole (1, 1, s, s), and the compositing weight
    at the image's size (see :func:`variation`)."""
    cfg = model.cfg
    if not cfg.inpaint:
        raise ModelError("this image model was trained for text-to-image only (no mask input); use a model whose "
                         "config has inpaint: true, or no mask to redo the whole picture")
    m = np.asarray(mask, np.float32)
    if m.shape != (image.height, image.width):
        raise StrataError(f"mask is {m.shape[1] if m.ndim == 2 else '?'}×{m.shape[0]} but the image is "
                          f"{image.width}×{image.height}; they must match")
    hole = m > 0.5
    if not hole.any():
        raise StrataError("the mask selects nothing (no value above 0.5); paint the area to repaint white")
    side, n = cfg.image_size, max(image.width, image.height)
    canvas = np.zeros((n, n, 4), np.float32)
    canvas[: image.height, : image.width] = image.pixels
    hole_canvas = np.zeros((n, n), np.float32)
    hole_canvas[: image.height, : image.width] = hole
    small = _to_model_size(Image(canvas), side).pixels
    # Any model pixel touched by the hole is repainted (a thin stroke must not vanish in the downscale).
    small_hole = cv2.resize(hole_canvas, (side, side), interpolation=cv2.INTER_AREA) > 0
    rgba = torch.from_numpy(np.array(small)).permute(2, 0, 1)[None]
    hole_t = torch.from_numpy(small_hole.astype(np.float32))[None, None]
    return rgba, hole_t, feather_weight(m, sigma=max(0.75, 0.75 * n / side))


def _start_latents(model: ImageDiffusionModel, scheduler, rgba: torch.Tensor, noise: torch.Tensor, strength: float,
                   steps: int) -> tuple[int, torch.Tensor]:
    """(first step, latents): pure noise at strength 1, else the image's latent noised to the
    level of step ``steps·(1 − strength)`` (SDEdit)."""
    if strength == 1.0:
        return 0, noise * scheduler.init_noise_sigma
    start = min(steps - 1, int(round(steps * (1.0 - strength))))
    x0 = model.encode_images(rgba)
    if hasattr(scheduler, "set_begin_index"):  # samplers count their steps (and sigmas) from here
        scheduler.set_begin_index(start)
    t_start = scheduler.timesteps[start : start + 1]
    return start, scheduler.add_noise(x0.repeat(len(noise), 1, 1, 1), noise, t_start.repeat(len(noise)))


def feather_weight(mask: np.ndarray, sigma: float) -> np.ndarray:
    """The compositing weight: 1 on the mask, a Gaussian falloff of ``sigma`` pixels outside it."""
    from strata.ops.edit import gaussian_blur

    return np.maximum(mask, np.clip(gaussian_blur(mask, sigma), 0.0, 1.0))[:, :, None]


def paste_back(original: Image, generated: Image, weight: np.ndarray) -> Image:
    """Scale the model-size result to the padded square, crop it to the original, blend premultiplied."""
    from strata.ops.edit import premultiply, resample, unpremultiply

    n = max(original.width, original.height)
    up = generated.pixels if generated.width == n else resample(generated.pixels, (n, n), "lanczos")
    up = up[: original.height, : original.width]
    out = premultiply(original.pixels) * (1 - weight) + premultiply(np.ascontiguousarray(up)) * weight
    # Untouched pixels are copied, not round-tripped through premultiplication (not exact in floats).
    return Image(np.where(weight > 0, unpremultiply(out.astype(np.float32)), original.pixels))


def _to_model_size(image: Image, side: int) -> Image:
    if image.width == side and image.height == side:
        return image
    from strata.ops.edit import resample

    return Image(resample(image.pixels, (side, side), "lanczos"))


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between two noise tensors (keeps the noise's norm, unlike a lerp)."""
    af, bf = a.flatten(), b.flatten()
    omega = torch.arccos(torch.clamp(torch.dot(af / af.norm(), bf / bf.norm()), -1.0, 1.0))
    if float(omega) < 1e-6:
        return (1 - t) * a + t * b
    so = torch.sin(omega)
    return (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b


@torch.no_grad()
def interpolate(
    model: ImageDiffusionModel,
    prompt_a: str,
    prompt_b: str,
    *,
    seed_a: int = 0,
    seed_b: int = 1,
    frames: int = 8,
    negative_prompt: str = "",
    steps: int = 20,
    guidance: float = DEFAULT_GUIDANCE,
    sampler: str = "dpmpp",
    guidance_stop: float | None = None,
    thresholding: bool | None = None,
    callback: Callable[[Progress], None] | None = None,
) -> GenerateResult:
    """A morph: frame k of ``frames`` uses slerp(noise(seed_a), noise(seed_b), k/(frames−1)) and the
    linear mix of the two prompts' text conditioning.

    Each frame is denoised on its own, exactly as :func:`generate` does one image, so the first
    and last frames equal ``generate(prompt_a, seed=seed_a)`` and ``generate(prompt_b,
    seed=seed_b)`` byte for byte. ``seeds`` in the result holds seed_a for every frame (the
    frames have no seed of their own).
    """
    cfg = model.cfg
    s = Sampling(negative_prompt, 1, min(seed_a, seed_b), steps, guidance, sampler, guidance_stop)
    check_args(s, size=cfg.image_size, cfg=cfg)
    if not 2 <= frames <= 240:
        raise StrataError(f"frames must be between 2 and 240, got {frames}")
    ctx_a, mask_a = _encode(model, prompt_a, negative_prompt, guidance, 1, callback, frames)
    ctx_b, mask_b = _encode(model, prompt_b, negative_prompt, guidance, 1)
    # Both prompts' tokens stay visible in between (a padded position of one is a real token
    # of the other); the ends use their own masks, so they match plain generation exactly.
    mask_mid = torch.maximum(mask_a, mask_b)
    noise_a, noise_b = seed_noise(cfg, seed_a), seed_noise(cfg, seed_b)
    images: list[Image] = []
    for k in range(frames):
        u = k / (frames - 1)
        context = ctx_a if k == 0 else ctx_b if k == frames - 1 else (1 - u) * ctx_a + u * ctx_b
        mask = mask_a if k == 0 else mask_b if k == frames - 1 else mask_mid
        noise = noise_a if k == 0 else noise_b if k == frames - 1 else slerp(noise_a, noise_b, u)
        scheduler = _scheduler(cfg, sampler, steps, thresholding)
        latents = _denoise(model, scheduler, noise[None] * scheduler.init_noise_sigma, scheduler.timesteps, context,
                           mask, guidance, guided_steps(s), None, inpaint_conditioning(model, None, None, 1))
        images += _decode(model, latents)
        if callback is not None:
            callback(Progress(k + 1, frames))
    return GenerateResult(images=images, seeds=[seed_a] * frames)
