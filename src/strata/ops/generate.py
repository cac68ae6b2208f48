"""Generate layer: text → new pixels with a diffusion model reached by capability.

``image.generate`` runs the registry's "text-to-image" model: strata's built-in model, or a
user's own Stable Diffusion 1.x / SDXL model (``strata models add``), which runs through the
matching diffusers pipeline. ``image.variation`` (image-to-image) and ``image.inpaint`` need a
user model with those capabilities. All return opaque-or-alpha RGBA :class:`Image` lists, take
``model`` to pick a registered model, and (for diffusers models) ``lora``, ``precision`` and
``attention_slicing``. Torch is imported only when a node actually runs.
"""

from __future__ import annotations

import inspect
import warnings
from typing import Annotated, Any, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

import numpy as np

from strata.errors import ModelError, OpError, StrataError, StrataWarning
from strata.media.image import Image, Mask
from strata.models.samplers import DEFAULT_GUIDANCE, SAMPLER_NAMES, SHORT_NAMES, Sampling
from strata.ops.composite import composite_over
from strata.ops.edit import Color, parse_color
from strata.workflow.node import node

Sampler = Literal[SAMPLER_NAMES]  # type: ignore[valid-type]


class LoraRef(BaseModel):
    """A LoRA to apply for this run: a local ``.safetensors`` file and its strength."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, description="LoRA .safetensors file")
    scale: float = Field(1.0, ge=-4, le=4, description="strength (1 = as trained, 0 = off)")


# Params shared by the generation ops, declared once.
Prompt = Annotated[str, Field(min_length=1, max_length=2000, description="what to draw")]
Negative = Annotated[str, Field(max_length=2000, description="what to steer away from")]
Count = Annotated[int, Field(ge=1, le=64, description="images to make; image i uses seed + i")]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1, description="seed of the first image")]
Steps = Annotated[int, Field(ge=1, le=200, description="denoising steps")]
Guidance = Annotated[float, Field(ge=0, le=30, description="classifier-free guidance scale (1 = none)")]
GuidanceStop = Annotated[float | None, Field(ge=0, le=1, description="share of the steps, from the first, that are "
                                             "guided; the rest cost one call (default: the model's)")]
SamplerParam = Annotated[Sampler, Field(description="dpmpp/euler/ddim, or an A1111 sampler name "
                                                    "('Euler a', 'DPM++ 2M Karras', ...)")]
Side = Annotated[int | None, Field(ge=8, le=4096, description="px, multiple of 8 (default: the model's native size)")]
ModelId = Annotated[str | None, Field(description="registered model id (default: the first installed)")]
Loras = Annotated[list[LoraRef], Field(max_length=8, description="LoRAs [{path, scale}] (diffusers models)")]
Precision = Annotated[Literal["fp32", "bf16"], Field(description="bf16 = bfloat16 autocast (diffusers models)")]
Slicing = Annotated[bool, Field(description="attention slicing: less peak memory (diffusers models)")]
Strength = Annotated[float, Field(ge=0, le=1, description="how far to move from the input image (1 = ignore it)")]

_BUILTIN_FAMILY = {"DPM++": "dpmpp", "Euler": "euler", "DDIM": "ddim"}


def sampling_params(
    *,
    prompt: Prompt,
    negative: Negative = Sampling.negative_prompt,
    count: Count = Sampling.count,
    seed: Seed = Sampling.seed,
    steps: Steps = Sampling.steps,
    guidance: Guidance = Sampling.guidance,
    sampler: SamplerParam = Sampling.sampler,
    guidance_stop: GuidanceStop = Sampling.guidance_stop,
) -> None:
    """What and how to sample: the params every generation op starts with, declared once
    (``@node(..., params=(sampling_params, model_params))``), with the pipelines' defaults."""


def model_params(
    *,
    model: ModelId = None,
    lora: Loras = [],  # noqa: B006 - pydantic copies defaults; never mutated
    precision: Precision = "fp32",
    attention_slicing: Slicing = False,
) -> None:
    """Which model and how to run it: the params every generation op ends with. ``model`` picks
    the registered model the engine loads (``loaded_model``); the ops themselves ignore it."""


@node("image.generate", layer="generate", version=3, model="text-to-image", params=(sampling_params, model_params))
def generate(
    *,
    count: Count = 4,
    size: Annotated[int | None, Field(ge=8, le=4096, description="output side, px (default: the model's native size)")] = None,
    width: Side = None,
    height: Side = None,
    background: Annotated[Color | None, Field(description="'#rrggbb' to render onto a color; empty keeps transparency")] = None,
    loaded_model: Any = None,
    progress: Callable[..., None] | None = None,
    **sampling: Any,
) -> list[Image]:
    """Generate ``count`` new images for ``prompt`` (RGBA; transparent background by default).

    Args:
        prompt: the text (1..2000 chars); longer than the text encoder's limit → truncated
            with a warning.
        negative: negative prompt (default none).
        count: 1..64 (default 4); the text is encoded once for the whole batch.
        seed: ≥ 0 (default: the workflow's seed); image i uses ``seed + i``.
        steps: 1..200 (default 20).
        guidance: 0..30 (default 7.5: where the built-in model's adherence stops rising; what
            Stable Diffusion models expect too).
        guidance_stop: 0..1, the share of the steps, from the first, that run guidance; the
            later ones run the prompt alone, one UNet call instead of two (default: the model's —
            0.5 for the built-in model, where adherence stays the same; every step for a user model,
            which takes no other value).
        sampler: dpmpp (default), euler, ddim, or an A1111 name (user models take them all;
            the built-in model uses its sampler of the same family and says so).
        size: square output side (default: the model's native size; the built-in model makes
            64×64 only — upscale afterwards).
        width, height: output size of a user model, multiples of 8 (default: ``size``, else native).
        background: '#rrggbb' to flatten onto a color (default: keep alpha).
        model: id of a registered text-to-image model (default: the first installed, strata's own).
        lora: LoRA files ``[{path, scale}]`` applied for this run only (user models).
        precision: fp32 (default) or bf16 autocast (user models).
        attention_slicing: lower peak memory (user models).
    """
    if loaded_model is None:
        raise OpError("no text-to-image model was loaded; run this op through a workflow (the engine loads "
                      "the model) or pass loaded_model=", param="model")
    if _is_diffusers(loaded_model):
        images = _run_diffusers(loaded_model, "text-to-image", count=count, width=width or size,
                                height=height or size, progress=progress, **sampling)
    else:
        images = _run_builtin(loaded_model, count=count, size=size, width=width, height=height, progress=progress,
                              **sampling)
    if not background:
        return images
    backdrop = np.broadcast_to(parse_color(background)[None, None, :3], images[0].pixels.shape[:2] + (3,))
    opaque = np.concatenate([backdrop, np.ones(backdrop.shape[:2] + (1,), np.float32)], axis=2)
    return [Image(composite_over(opaque, im.pixels, "normal")) for im in images]


@node("image.variation", layer="generate", version=3, model="image-to-image", params=(sampling_params, model_params))
def variation(
    image: Image,
    *,
    strength: Strength = 0.6,
    loaded_model: Any = None,
    progress: Callable[..., None] | None = None,
    **sampling: Any,
) -> list[Image]:
    """Image-to-image: ``count`` variations of ``image`` steered by ``prompt``.

    With the built-in model the image is brought into its 64×64 domain (the result is 64×64;
    strength 0 returns that resized input, 1 equals ``image.generate`` with the same seed).
    With a user model the image's size (a multiple of 8) is the output size.

    Args:
        image: the starting image.
        strength: 0..1 (default 0.6): how much of the denoising to redo; 1 ignores the image.
        prompt, negative, count, seed, steps, guidance, guidance_stop, sampler, model, lora, precision,
            attention_slicing: as for ``image.generate``. Runs ``round(steps × strength)`` steps.
    """
    return _image_to_image("image-to-image", image, None, loaded_model=loaded_model, strength=strength,
                           progress=progress, **sampling)


@node("image.inpaint", layer="generate", version=4, model="inpaint", params=(sampling_params, model_params))
def inpaint(
    image: Image,
    mask: Mask,
    *,
    strength: Strength = 1.0,
    loaded_model: Any = None,
    progress: Callable[..., None] | None = None,
    **sampling: Any,
) -> list[Image]:
    """Repaint the masked part of ``image`` (mask 1 = repaint) with an inpainting model.

    The built-in model inpaints any image at any size: it works on the whole picture brought to
    its 64×64 domain and pastes the repainted area back at full size; pixels away from the mask
    keep their exact values. A user model (UNet with 9 input channels, `strata models add`)
    works at the image's size, which must then be a multiple of 8. Outpainting: ``edit.pad``, then
    inpaint its ``image`` with its ``mask`` (the added pixels).

    Args:
        image, mask: the picture and what to repaint (same size; soft edges blend).
        strength: 0..1 (default 1): how much of the masked area to redo; lower keeps its colors.
        prompt, negative, count, seed, steps, guidance, guidance_stop, sampler, model, lora, precision,
            attention_slicing: as for ``image.generate``.
    """
    if mask.size != image.size:
        raise OpError(f"mask is {mask.width}×{mask.height} but the image is {image.width}×{image.height}; "
                      "they must match", param="mask")
    return _image_to_image("inpaint", image, mask, loaded_model=loaded_model, strength=strength, progress=progress,
                           **sampling)


def _image_to_image(capability: str, image: Image, mask: Mask | None, *, loaded_model: Any, progress: Any,
                    **sampling: Any) -> list[Image]:
    """image.variation and image.inpaint: the built-in pipeline's ``variation()`` (with the mask, if
    any, it inpaints) or a user model's diffusers pipeline for ``capability``."""
    if loaded_model is not None and not _is_diffusers(loaded_model):
        from strata.models.image_pipeline import variation as run_variation

        prompt, settings = _builtin_settings(sampling)
        return _builtin_call(run_variation, loaded_model, image, prompt, mask=None if mask is None else mask.values,
                             callback=_reporter(progress), **settings)
    with_mask = {} if mask is None else {"mask": mask}
    return _run_diffusers(_require_diffusers(loaded_model, capability), capability, image=image, progress=progress,
                          **with_mask, **sampling)


def _is_diffusers(loaded_model: Any) -> bool:
    from strata.models.diffusers_models import DiffusersModel

    return isinstance(loaded_model, DiffusersModel)


def _require_diffusers(loaded_model: Any, capability: str) -> Any:
    if loaded_model is None or not _is_diffusers(loaded_model):
        raise OpError(f"no {capability} model was loaded; register one with `strata models add NAME PATH` and run "
                      "this op through a workflow (the engine loads the model)", param="model")
    return loaded_model


def _run_diffusers(loaded_model: Any, capability: str, *, lora: list[Any], progress: Callable[..., None] | None,
                   negative: str, model: str | None = None, **kwargs: Any) -> list[Image]:
    """Run a user model's diffusers pipeline (``model`` only named which one the engine loaded)."""
    from pathlib import Path

    from strata.models.diffusers_models import Lora, run

    loras = [Lora(Path(x["path"] if isinstance(x, dict) else x.path),
                  float(x.get("scale", 1.0) if isinstance(x, dict) else x.scale)) for x in lora]
    try:
        return run(loaded_model, capability, negative_prompt=negative, loras=loras,
                   callback=(lambda step, total: progress(step, total)) if progress else None, **kwargs)
    except ModelError as exc:
        raise OpError(str(exc), param=_param_named_in(str(exc)) or ("lora" if "LoRA" in str(exc) else None)) from None


def _run_builtin(loaded_model: Any, *, size: int | None, width: int | None, height: int | None,
                 progress: Callable[..., None] | None, **sampling: Any) -> list[Image]:
    from strata.models.image_pipeline import generate as run_pipeline

    if width is not None or height is not None:
        if width != height or (size is not None and size != width):
            raise OpError("the built-in model makes square images; give size (or equal width and height)",
                          param="width")
        size = width
    prompt, settings = _builtin_settings(sampling)
    return _builtin_call(run_pipeline, loaded_model, prompt, size=size, callback=_reporter(progress), **settings)


def _builtin_settings(sampling: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The prompt and the built-in pipeline's keyword arguments for the ops' sampling params
    (refusing the diffusers-only ones, mapping the sampler name)."""
    values = dict(sampling)
    values.pop("model", None)  # it only named which model the engine loaded
    for name, param in inspect.signature(model_params).parameters.items():
        if name != "model" and values.pop(name, param.default) != param.default:
            raise OpError(f"the built-in model does not take {name}; it applies to user models "
                          "(`strata models add`)", param=name)
    values["negative_prompt"] = values.pop("negative")
    values["sampler"] = _builtin_sampler(values["sampler"])
    return values.pop("prompt"), values


def _reporter(progress: Callable[..., None] | None) -> Callable[[Any], None] | None:
    """The built-in pipeline's ``callback(Progress)`` as the node's ``progress(step, total)``,
    with ``message=`` when the pipeline explains a pause (the executor shows it)."""
    if progress is None:
        return None

    def report(p: Any) -> None:
        if p.message is None:
            progress(p.step, p.total)
        else:
            progress(p.step, p.total, message=p.message)

    return report


def _builtin_sampler(sampler: str) -> str:
    """The built-in model's sampler for ``sampler`` (an A1111 name maps to its family, with a warning)."""
    if sampler in SHORT_NAMES:
        return sampler
    ours = next((v for k, v in _BUILTIN_FAMILY.items() if sampler.startswith(k)), None)
    if ours is None:
        raise OpError(f"the built-in model has no {sampler!r} sampler; it has {', '.join(SHORT_NAMES)} "
                      f"({', '.join(SHORT_NAMES.values())})", param="sampler")
    if sampler != SHORT_NAMES[ours]:
        warnings.warn(StrataWarning(f"sampler {sampler!r} is not available for the built-in model; used "
                                    f"{SHORT_NAMES[ours]!r} ({ours})"), stacklevel=4)  # the op's line
    return ours


def _builtin_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Image]:
    """Run a built-in pipeline function; its errors become OpErrors naming the param."""
    try:
        return fn(*args, **kwargs).images
    except StrataError as exc:
        raise OpError(str(exc), param=_param_named_in(str(exc))) from None


@node("image.interpolate", layer="generate", version=3, model="text-to-image")
def interpolate(
    *,
    prompt: Prompt,
    prompt_b: Annotated[str, Field(max_length=2000, description="prompt of the last frame (default: prompt)")] = "",
    seed: Seed = 0,
    seed_b: Annotated[int | None, Field(ge=0, le=2**63 - 1, description="seed of the last frame (default seed+1)")] = None,
    frames: Annotated[int, Field(ge=2, le=240, description="frames, both ends included")] = 8,
    negative: Negative = "",
    steps: Steps = 20,
    guidance: Guidance = DEFAULT_GUIDANCE,
    sampler: SamplerParam = "dpmpp",
    guidance_stop: GuidanceStop = None,
    model: ModelId = None,
    loaded_model: Any = None,
    progress: Callable[..., None] | None = None,
) -> list[Image]:
    """A latent morph between two prompts and/or two seeds (built-in model): ``frames`` images.

    Frame k mixes the initial noises spherically (slerp) and the text conditioning linearly,
    at k/(frames−1); the first and last frames equal ``image.generate`` with (prompt, seed) and
    (prompt_b, seed_b). ``motion.*`` uses the frames as a morph transition.

    Args:
        prompt / prompt_b: first and last prompt (prompt_b defaults to prompt: a seed morph).
        seed / seed_b: first and last seed (seed_b defaults to seed + 1).
        frames: 2..240 (default 8).
        negative, steps, guidance, sampler, guidance_stop, model: as for ``image.generate``.
    """
    from strata.models.image_pipeline import interpolate as run_interpolate

    if loaded_model is None or _is_diffusers(loaded_model):
        raise OpError("image.interpolate runs the built-in model; user models are not supported by it yet",
                      param="model")
    return _builtin_call(run_interpolate, loaded_model, prompt, prompt_b or prompt, seed_a=seed,
                         seed_b=seed + 1 if seed_b is None else seed_b, frames=frames, negative_prompt=negative,
                         steps=steps, guidance=guidance, sampler=_builtin_sampler(sampler),
                         guidance_stop=guidance_stop, callback=_reporter(progress))


def _param_named_in(message: str) -> str | None:
    head = message.split(" ", 1)[0]
    return head if head in {"count", "steps", "guidance", "guidance_stop", "sampler", "seed", "size", "background", "width",
                            "height", "strength", "frames"} else None
