"""Sampler names strata accepts, and the diffusers scheduler each one is.

One table for the whole project: the ``sampler`` param of the generation ops, the A1111
endpoints and diffusers-format models all read it. Names are AUTOMATIC1111's (what users of
Stable Diffusion know), plus strata's three short names, which the built-in model has always
used. Each A1111 name maps to a diffusers scheduler class and the config overrides that make
it that sampler (diffusers' documented A1111 correspondence); the scheduler is built from the
model's own scheduler config, so the training schedule (betas, prediction type) is kept.

This module does not import torch or diffusers: the server reads it to validate requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

# A1111 name → (diffusers scheduler class, config overrides).
A1111_SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {
    "DPM++ 2M": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "use_karras_sigmas": True}),
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": False}),
    "DPM++ 2M SDE Karras": ("DPMSolverMultistepScheduler", {"algorithm_type": "sde-dpmsolver++",
                                                             "use_karras_sigmas": True}),
    "DPM++ SDE": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": False}),
    "DPM++ SDE Karras": ("DPMSolverSinglestepScheduler", {"use_karras_sigmas": True}),
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {"use_karras_sigmas": False}),
    "LMS Karras": ("LMSDiscreteScheduler", {"use_karras_sigmas": True}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {}),
    "UniPC": ("UniPCMultistepScheduler", {}),
}

#: Classifier-free guidance scale every generation entry point defaults to (ops, pipeline, CLI,
#: server, studio). Measured on the built-in model at step 6,408 (quality.py's sweep, 100 images
#: per value): adherence top-5 18 % at 4, 25 % at 6, 27 % at 8, then flat (27 / 29 / 30 % at
#: 10 / 12 / 15 in a one-off run of the same sweep) while the images get harsher; 7.5 sits at
#: that knee, and is what Stable Diffusion models expect too (diffusers' default; A1111's is 7).
DEFAULT_GUIDANCE = 7.5

#: Share of the denoising steps, from the first, that the built-in model runs guidance on
#: (``guidance_stop``); the later, low-noise steps run the prompt alone — one UNet call instead
#: of two. Guidance decides what is drawn while the layout forms; near the end it only sharpens
#: and saturates (Kynkäänniemi et al. 2024 guide a middle interval only; A1111's "negative
#: guidance minimum sigma" and diffusers' guider ``stop`` skip the end for speed). Measured on
#: the weights of step 13,710 (quality.py's 100 concepts × 4 seeds, 20 steps, guidance 7.5): adherence
#: top-5 31.0 % guiding every step, 31.3 % the first 16, 30.3 % the first 13, 30.3 % the first
#: 10 — within 3 of 400 images — while the 10 single calls cut a generation's time by 10 % (one
#: image: 0.477 → 0.431 s) to 17 % (eight: 2.11 → 1.75 s), measured in one process, 2 threads.
BUILTIN_GUIDANCE_STOP = 0.5

# strata's short names (the built-in model's samplers) and the A1111 sampler each one is.
SHORT_NAMES: dict[str, str] = {"dpmpp": "DPM++ 2M", "euler": "Euler", "ddim": "DDIM"}

SAMPLER_NAMES: tuple[str, ...] = tuple(SHORT_NAMES) + tuple(A1111_SCHEDULERS)


def a1111_name(sampler: str) -> str:
    """The A1111 name of ``sampler`` (a short name or an A1111 name).

    Raises:
        KeyError: not a sampler strata knows (use :func:`check_sampler` for a user-facing error).
    """
    name = SHORT_NAMES.get(sampler, sampler)
    if name not in A1111_SCHEDULERS:
        raise KeyError(sampler)
    return name


class SamplingArgs(TypedDict, total=False):
    """The sampling keyword arguments every diffusion entry point takes (the built-in pipeline's
    ``generate``/``variation`` and a diffusers model's ``run``), typed for ``**kwargs``
    (``Unpack[SamplingArgs]``); their defaults and meaning are :class:`Sampling`'s."""

    negative_prompt: str
    count: int
    seed: int
    steps: int
    guidance: float
    sampler: str
    guidance_stop: float | None


@dataclass(frozen=True)
class Sampling:
    """How to sample, with the defaults every entry point shares.

    Args:
        negative_prompt: what to steer away from (replaces the empty prompt in guidance).
        count: images to make; image i uses seed ``seed + i``, so one image of a batch can be
            remade alone.
        seed: seed of the first image.
        steps: denoising steps.
        guidance: classifier-free guidance scale (1 = no guidance, 0 = unconditional).
        sampler: a short name ("dpmpp" = DPM-Solver++ 2M, "euler", "ddim") or an A1111 name.
        guidance_stop: share of the steps, from the first, that run guidance (0..1; 1 = every
            step; of the steps that run — image-to-image runs fewer); the rest run the prompt
            alone, one UNet call instead of two. None = the
            model's default: :data:`BUILTIN_GUIDANCE_STOP` for the built-in model, every step
            for a diffusers model (which takes no other value).
    """

    negative_prompt: str = ""
    count: int = 1
    seed: int = 0
    steps: int = 20
    guidance: float = DEFAULT_GUIDANCE
    sampler: str = "dpmpp"
    guidance_stop: float | None = None

    @property
    def seeds(self) -> list[int]:
        """The seed of each image: ``seed, seed + 1, ...``."""
        return [self.seed + i for i in range(self.count)]


def unknown_sampler_message(name: str) -> str:
    """What to tell a user who asked for a sampler strata does not have."""
    return f"unknown sampler {name!r}; supported: {', '.join(SAMPLER_NAMES)}"
