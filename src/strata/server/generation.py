"""Simple generate requests → workflows, behind a capability check.

The text-to-image op (``image.generate``) and its model are not part of every install (the
built-in model is trained by ``strata train image``). Until both exist, generation endpoints
answer 503 with ``no_text_to_image_model``; everything else (classical workflows, history,
assets) works. When the op lands, :data:`PARAM_NAMES` is the one place that maps request fields
to its params: the first name the op declares is used, and fields it does not declare are
reported back as ignored instead of failing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pydantic

from strata.errors import ModelError
from strata.models.samplers import DEFAULT_GUIDANCE
from strata.server.errors import ApiError
from strata.workflow.node import NodeSpec, load_builtin_ops

GENERATE_OP = "image.generate"
TEXT_TO_IMAGE = "text-to-image"
# Request field → candidate param names of the generate op (first declared wins).
PARAM_NAMES: dict[str, tuple[str, ...]] = {
    "prompt": ("prompt",),
    "negative_prompt": ("negative_prompt", "negative"),
    "seed": ("seed",),
    "count": ("count", "batch_size"),
    "steps": ("steps",),
    "guidance": ("guidance", "cfg_scale"),
    "sampler": ("sampler",),
    "width": ("width",),
    "height": ("height",),
}


class GenerateRequest(pydantic.BaseModel):
    """``POST /api/generate``: a prompt and sampling settings (defaults match the built-in model)."""

    model_config = pydantic.ConfigDict(extra="forbid")

    prompt: str = pydantic.Field(min_length=1, max_length=4000, description="what to draw")
    negative_prompt: str = pydantic.Field("", max_length=4000, description="what to steer away from")
    seed: int = pydantic.Field(0, ge=0, le=2**63 - 1, description="image i of the batch uses seed + i")
    count: int = pydantic.Field(1, ge=1, le=64, description="images in the batch")
    steps: int = pydantic.Field(20, ge=1, le=200, description="denoising steps")
    guidance: float = pydantic.Field(DEFAULT_GUIDANCE, ge=0, le=30, description="classifier-free guidance scale")
    sampler: str = pydantic.Field("dpmpp", description="dpmpp, euler, ddim or an A1111 sampler name")
    width: int | None = pydantic.Field(None, ge=8, le=4096, description="px; used if the model supports it")
    height: int | None = pydantic.Field(None, ge=8, le=4096, description="px; used if the model supports it")
    model: str | None = pydantic.Field(None, description="model id (default: the first text-to-image model)")
    priority: int = pydantic.Field(0, ge=-100, le=100, description="higher runs first")


@dataclass(frozen=True)
class Generative:
    """A generative op and the model capability it needs."""

    op: str
    capability: str
    what: str  # for messages: "text-to-image", ...

    @property
    def error_code(self) -> str:
        return "no_" + self.capability.replace("-", "_") + "_model"


TEXT_TO_IMAGE = Generative(GENERATE_OP, "text-to-image", "text-to-image")
IMG2IMG = Generative("image.variation", "image-to-image", "image-to-image")
INPAINT = Generative("image.inpaint", "inpaint", "inpainting")
# What the generation endpoints run, by kind of request; create_app(generators=...) can override it
# (a user's own op, or a stand-in in tests).
DEFAULT_GENERATORS: dict[str, Generative] = {"text-to-image": TEXT_TO_IMAGE, "img2img": IMG2IMG, "inpaint": INPAINT}


def missing(gen: Generative, models: Any) -> str | None:
    """Why ``gen`` is unavailable, or None when its op and a model for it are installed."""
    if gen.op not in load_builtin_ops():
        return f"this strata has no '{gen.op}' op yet"
    if models is None:
        return "the server has no model registry"
    try:
        models.find(gen.capability)
    except ModelError as exc:
        return str(exc)
    return None


def require(gen: Generative, models: Any) -> NodeSpec:
    """``gen``'s op spec, or a 503 :class:`ApiError` saying what is missing and what to do."""
    reason = missing(gen, models)
    if reason is not None:
        raise ApiError(503, gen.error_code,
                       f"no {gen.what} model installed ({reason}). This endpoint answers once a model with the "
                       f"'{gen.capability}' capability is installed (the built-in one: `strata train image --export`) "
                       "or a newer strata adds it; workflows of classical ops (POST /api/jobs) work meanwhile")
    return load_builtin_ops()[gen.op]


def generate_params(req: GenerateRequest, declared: list[str] | None) -> tuple[dict[str, Any], list[str]]:
    """The op params for ``req`` and the request fields the op does not take.

    Args:
        req: the request.
        declared: the op's param names, or None to use each field's first candidate name.
    """
    params: dict[str, Any] = {}
    ignored: list[str] = []
    values = req.model_dump()
    for field, names in PARAM_NAMES.items():
        value = values[field]
        if value is None:
            continue
        name = names[0] if declared is None else next((n for n in names if n in declared), None)
        if name is None:
            ignored.append(field)
        else:
            params[name] = value
    if {"width", "height"} <= set(ignored) and declared is not None and "size" in declared and req.width == req.height:
        # square-only models (the built-in one) take one side
        params["size"] = req.width
        ignored = [f for f in ignored if f not in ("width", "height")]
    if req.model is not None:
        if declared is None or "model" in declared:
            params["model"] = req.model
        else:
            ignored.append("model")
    return params, ignored


def generate_workflow(req: GenerateRequest, spec: NodeSpec | None = None) -> tuple[dict[str, Any], list[str]]:
    """A one-node workflow for ``req`` (writing ``image.png``) and the fields that were ignored.

    Args:
        req: the request.
        spec: the generate op's spec when installed (its declared params decide the names).
    """
    params, ignored = generate_params(req, spec.param_names if spec is not None else None)
    workflow = {
        "name": "generate",
        "seed": req.seed,
        "metadata": {"submitted_as": "generate"},
        "nodes": [{"id": "generate", "op": spec.op if spec is not None else GENERATE_OP, "params": params}],
        "outputs": {"image.png": "generate"},
    }
    return workflow, ignored
