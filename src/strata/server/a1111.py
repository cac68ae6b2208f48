"""AUTOMATIC1111 (``/sdapi/v1``) requests → strata generate requests and workflows.

Honored fields
    prompt, negative_prompt; seed (-1 = a random seed, reported back); batch_size × n_iter →
    one batch of that many images (image i uses seed + i, like A1111's batch); steps;
    cfg_scale → guidance; sampler_name (or the older sampler_index): "DPM++ 2M", "Euler",
    "DDIM" map to strata's samplers, other names of the same family ("DPM++ 2M Karras",
    "Euler a") use the family's sampler and are reported in ``info.substitutions``;
    ``override_settings.sd_model_checkpoint`` → model;
    img2img: init_images[0], mask (→ inpainting), denoising_strength → strength.
Other fields
    accepted and ignored (hires fix, face restoration, scripts, tiling, subseeds, styles, ...);
    their names are listed in ``info.ignored`` so a client can tell. width/height are among
    them: A1111 clients send 512×512 by default, and strata's models make images at their
    native size (the built-in one: 64×64), so images come at that size (``/api/generate``
    takes an explicit size).
"""

from __future__ import annotations

import secrets
from typing import Any, Callable

import pydantic

from strata.server.generation import GenerateRequest, generate_params

# A1111 sampler names strata offers, and the strata sampler each is.
SAMPLERS: dict[str, str] = {"DPM++ 2M": "dpmpp", "Euler": "euler", "DDIM": "ddim"}
_FAMILIES = (("dpm++", "dpmpp"), ("euler", "euler"), ("ddim", "ddim"))
DEFAULT_SAMPLER = "DPM++ 2M"


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
    """(strata sampler, note) for an A1111 sampler name; the note says what was substituted."""
    if name is None or name == "":
        return SAMPLERS[DEFAULT_SAMPLER], None
    if name in SAMPLERS:
        return SAMPLERS[name], None
    if name in SAMPLERS.values():
        return name, None
    for prefix, ours in _FAMILIES:
        if name.lower().startswith(prefix):
            return ours, f"sampler '{name}' is not available; used '{_a1111_name(ours)}'"
    return SAMPLERS[DEFAULT_SAMPLER], f"sampler '{name}' is not available; used '{DEFAULT_SAMPLER}'"


def _a1111_name(ours: str) -> str:
    return next(k for k, v in SAMPLERS.items() if v == ours)


def to_generate_request(req: Txt2ImgRequest, *, random_seed: Callable[[], int] | None = None) -> tuple[GenerateRequest, list[str]]:
    """The strata request for an A1111 one, and notes on substitutions.

    Raises:
        pydantic.ValidationError: batch_size × n_iter over 64, or a bad prompt length.
    """
    notes: list[str] = []
    sampler, note = strata_sampler(req.sampler_name or req.sampler_index)
    if note:
        notes.append(note)
    seed = req.seed if req.seed >= 0 else (random_seed or _random_seed)()
    model = req.override_settings.get("sd_model_checkpoint") or None
    gen = GenerateRequest(prompt=req.prompt or " ", negative_prompt=req.negative_prompt, seed=seed,
                          count=req.batch_size * req.n_iter, steps=req.steps, guidance=req.cfg_scale,
                          sampler=sampler, model=model)
    return gen, notes


def ignored_fields(req: Txt2ImgRequest) -> list[str]:
    """Request fields strata accepts but does not use."""
    ignored = ["width", "height"] + sorted(req.model_extra or {})
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
    lines.append(f"Steps: {gen.steps}, Sampler: {_a1111_name(gen.sampler) if gen.sampler in SAMPLERS.values() else gen.sampler}, "
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
