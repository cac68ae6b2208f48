"""AUTOMATIC1111 (``/sdapi/v1``) requests → strata generate requests and workflows.

Honored fields
    prompt, negative_prompt; seed (-1 = a random seed, reported back); batch_size × n_iter →
    one batch of that many images (image i uses seed + i, like A1111's batch); steps;
    cfg_scale → guidance; sampler_name (or the older sampler_index): every A1111 name in
    :data:`strata.models.samplers.A1111_SCHEDULERS` ("Euler a", "DPM++ 2M Karras", ...) maps
    to its diffusers scheduler; an unknown name is refused with the list of supported ones (the
    built-in model runs the sampler of the same family and says so in the job's warnings);
    ``override_settings.sd_model_checkpoint`` → model (a title from /sd-models works too);
    width/height for a user's own (Stable Diffusion) model;
    img2img: init_images[0], mask (→ inpainting), denoising_strength → strength.
Other fields
    accepted and ignored (hires fix, face restoration, scripts, tiling, subseeds, styles, ...);
    their names are listed in ``info.ignored`` so a client can tell. width/height are among
    them for the built-in model: A1111 clients send 512×512 by default, and it makes 64×64
    images (``/api/generate`` takes an explicit size).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, Callable

import pydantic

from strata.models.samplers import A1111_SCHEDULERS, SHORT_NAMES, a1111_name, unknown_sampler_message
from strata.server.generation import GenerateRequest, generate_params

# A1111 sampler names strata offers → the generate op's sampler value (strata's short name
# where there is one, so the built-in model runs them unchanged).
SAMPLERS: dict[str, str] = {name: next((k for k, v in SHORT_NAMES.items() if v == name), name)
                            for name in A1111_SCHEDULERS}
DEFAULT_SAMPLER = "DPM++ 2M"


class UnknownSampler(ValueError):
    """An A1111 request named a sampler strata does not have."""


class Txt2ImgRequest(pydantic.BaseModel):
    """A1111's txt2img body (defaults are A1111's); unknown fields are kept and reported as ignored."""

    model_config = pydantic.ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None
    batch_size: int = pydantic.Field(1, ge=1, le=64)
    n_iter: int = pydantic.Field(1, ge=1, le=64)
    steps: int = pydantic.Field(50, ge=1, le=200)
    cfg_scale: float = pydantic.Field(7.0, ge=0, le=30)
    width: int = pydantic.Field(512, ge=8, le=4096)
    height: int = pydantic.Field(512, ge=8, le=4096)
    send_images: bool = True
    override_settings: dict[str, Any] = pydantic.Field(default_factory=dict)


class Img2ImgRequest(Txt2ImgRequest):
    """A1111's img2img body: one init image, an optional mask (→ inpaint) and the strength."""

    init_images: list[str] = pydantic.Field(default_factory=list, max_length=1)
    mask: str | None = None
    denoising_strength: float = pydantic.Field(0.75, ge=0, le=1)


class PngInfoRequest(pydantic.BaseModel):
    image: str = pydantic.Field(description="the image file, base64 (a data: URL is fine)")


def strata_sampler(name: str | None) -> tuple[str, str | None]:
    """(the op's sampler, note) for an A1111 sampler name; the note is kept for compatibility
    and is always None now (substitutions are the model's to report).

    Raises:
        UnknownSampler: ``name`` is not a sampler strata has; the message lists them.
    """
    if name is None or name == "":
        return SAMPLERS[DEFAULT_SAMPLER], None
    if name in SAMPLERS:
        return SAMPLERS[name], None
    if name in SHORT_NAMES:
        return name, None
    raise UnknownSampler(unknown_sampler_message(name))


def _a1111_name(ours: str) -> str:
    try:
        return a1111_name(ours)
    except KeyError:
        return ours


def to_generate_request(req: Txt2ImgRequest, *, random_seed: Callable[[], int] | None = None,
                        honor_size: bool = False) -> tuple[GenerateRequest, list[str]]:
    """The strata request for an A1111 one, and notes on substitutions.

    Args:
        honor_size: pass width/height on (a user's Stable Diffusion model); else they are ignored.

    Raises:
        pydantic.ValidationError: batch_size × n_iter over 64, or a bad prompt length.
        UnknownSampler: the sampler name is not one strata has.
    """
    notes: list[str] = []
    sampler, note = strata_sampler(req.sampler_name or req.sampler_index)
    if note:
        notes.append(note)
    seed = req.seed if req.seed >= 0 else (random_seed or _random_seed)()
    model = requested_model(req)
    gen = GenerateRequest(prompt=req.prompt or " ", negative_prompt=req.negative_prompt, seed=seed,
                          count=req.batch_size * req.n_iter, steps=req.steps, guidance=req.cfg_scale,
                          sampler=sampler, model=model,
                          width=req.width if honor_size else None, height=req.height if honor_size else None)
    return gen, notes


def requested_model(req: Txt2ImgRequest) -> str | None:
    """The model id a request names (``override_settings.sd_model_checkpoint``), or None for the
    default; an A1111 title ("name [hash]", as /sd-models lists it) names the model ``name``."""
    name = req.override_settings.get("sd_model_checkpoint") or None
    return re.sub(r"\s*\[[0-9a-f]{6,64}\]$", "", str(name)) if name else None


def ignored_fields(req: Txt2ImgRequest, *, honor_size: bool = False) -> list[str]:
    """Request fields strata accepts but does not use."""
    ignored = ([] if honor_size else ["width", "height"]) + sorted(req.model_extra or {})
    ignored += sorted(f"override_settings.{k}" for k in req.override_settings if k != "sd_model_checkpoint")
    return ignored


def _random_seed() -> int:
    return secrets.randbelow(2**32)


def img2img_workflow(req: Img2ImgRequest, gen: GenerateRequest, *, op: str, declared: list[str] | None,
                     init_ref: str, mask_ref: str | None) -> tuple[dict[str, Any], list[str]]:
    """The workflow for an img2img/inpaint request over uploaded assets, and ignored fields.

    Args:
        req: the A1111 request (for the strength).
        gen: its translation (:func:`to_generate_request`).
        op: the image-to-image or inpaint op id.
        declared: that op's param names (None: use every field).
        init_ref, mask_ref: ``asset:<sha256>`` of the stored init image and mask.
    """
    params, ignored = generate_params(gen, declared)
    if declared is None or "strength" in declared:
        params["strength"] = req.denoising_strength
    else:
        ignored.append("denoising_strength")
    nodes: list[dict[str, Any]] = [{"id": "init", "op": "io.load_image", "params": {"path": init_ref}}]
    inputs = {"image": "init"}
    if mask_ref is not None:
        nodes.append({"id": "mask", "op": "io.load_mask", "params": {"path": mask_ref}})
        inputs["mask"] = "mask"
    nodes.append({"id": "generate", "op": op, "inputs": inputs, "params": params})
    workflow = {"name": "img2img", "seed": gen.seed, "metadata": {"submitted_as": "a1111"}, "nodes": nodes,
                "outputs": {"image.png": "generate"}}
    return workflow, ignored


def infotext(gen: GenerateRequest, seed: int) -> str:
    """A1111's "parameters" text for one image (what its clients parse)."""
    lines = [gen.prompt]
    if gen.negative_prompt:
        lines.append(f"Negative prompt: {gen.negative_prompt}")
    size = f", Size: {gen.width}x{gen.height}" if gen.width and gen.height else ""
    lines.append(f"Steps: {gen.steps}, Sampler: {_a1111_name(gen.sampler)}, "
                 f"CFG scale: {gen.guidance:g}, Seed: {seed}{size}")
    return "\n".join(lines)


def info_json(gen: GenerateRequest, *, job_id: str, run_id: str | None, ignored: list[str],
              substitutions: list[str], infotexts: list[str] | None = None) -> dict[str, Any]:
    """The ``info`` object of A1111 responses (sent as a JSON string, as A1111 does)."""
    seeds = [gen.seed + i for i in range(gen.count)]
    return {
        "prompt": gen.prompt, "all_prompts": [gen.prompt] * gen.count, "negative_prompt": gen.negative_prompt,
        "all_negative_prompts": [gen.negative_prompt] * gen.count, "seed": gen.seed, "all_seeds": seeds,
        "subseed": -1, "all_subseeds": [-1] * gen.count, "steps": gen.steps, "cfg_scale": gen.guidance,
        "sampler_name": _a1111_name(gen.sampler), "width": gen.width, "height": gen.height,
        "batch_size": gen.count, "sd_model_name": gen.model,
        "infotexts": infotexts if infotexts is not None else [infotext(gen, s) for s in seeds],
        "strata": {"job": job_id, "run_id": run_id, "ignored": ignored, "substitutions": substitutions},
    }
