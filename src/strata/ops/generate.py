"""Generate layer: text → new pixels with a diffusion model reached by capability.

``image.generate`` runs the registry's "text-to-image" model (strata's built-in model, or a
user's own). Torch is imported only when a node actually runs.
"""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal

from pydantic import Field

import numpy as np

from strata.errors import OpError, StrataError
from strata.media.image import Image
from strata.ops.composite import composite_over
from strata.ops.edit import Color, parse_color
from strata.workflow.node import node

Sampler = Literal["dpmpp", "euler", "ddim"]


@node("image.generate", layer="generate", version=1, model="text-to-image")
def generate(
    *,
    prompt: Annotated[str, Field(min_length=1, max_length=2000, description="what to draw")],
    negative: Annotated[str, Field(max_length=2000, description="what to steer away from")] = "",
    count: Annotated[int, Field(ge=1, le=64, description="images to make; image i uses seed + i")] = 4,
    seed: Annotated[int, Field(ge=0, le=2**63 - 1, description="seed of the first image")] = 0,
    steps: Annotated[int, Field(ge=1, le=200, description="denoising steps")] = 20,
    guidance: Annotated[float, Field(ge=0, le=30, description="classifier-free guidance scale (1 = none)")] = 4.0,
    sampler: Annotated[Sampler, Field(description="dpmpp = DPM-Solver++ 2M; euler; ddim")] = "dpmpp",
    size: Annotated[int | None, Field(ge=8, le=4096, description="output side, px (default: the model's native size)")] = None,
    background: Annotated[Color | None, Field(description="'#rrggbb' to render onto a color; empty keeps transparency")] = None,
    model: Annotated[str | None, Field(description="registered model id (default: the built-in model)")] = None,
    loaded_model: Any = None,
    progress: Callable[..., None] | None = None,
) -> list[Image]:
    """Generate ``count`` new images for ``prompt`` (RGBA; transparent background by default).

    Args:
        prompt: the text (1..2000 chars); longer than the text encoder's limit → truncated
            with a warning.
        negative: negative prompt (default none).
        count: 1..64 (default 4); the text is encoded once for the whole batch.
        seed: ≥ 0 (default: the workflow's seed); image i uses ``seed + i``.
        steps: 1..200 (default 20).
        guidance: 0..30 (default 4).
        sampler: dpmpp (default), euler or ddim.
        size: output side; the built-in model makes 64×64 only (upscale afterwards).
        background: '#rrggbb' to flatten onto a color (default: keep alpha).
        model: id of a registered text-to-image model (default: the first installed, strata's own).
    """
    from strata.models.image_pipeline import generate as run_pipeline

    if loaded_model is None:
        raise OpError("no text-to-image model was loaded; run this op through a workflow (the engine loads "
                      "the model) or pass loaded_model=", param="model")
    try:
        result = run_pipeline(
            loaded_model, prompt, negative_prompt=negative, count=count, seed=seed, steps=steps, guidance=guidance,
            sampler=sampler, size=size,
            callback=(lambda p: progress(p.step, p.total)) if progress else None,
        )
    except StrataError as exc:
        raise OpError(str(exc), param=_param_named_in(str(exc))) from None
    if not background:
        return result.images
    backdrop = np.broadcast_to(parse_color(background)[None, None, :3], result.images[0].pixels.shape[:2] + (3,))
    opaque = np.concatenate([backdrop, np.ones(backdrop.shape[:2] + (1,), np.float32)], axis=2)
    return [Image(composite_over(opaque, im.pixels, "normal")) for im in result.images]


def _param_named_in(message: str) -> str | None:
    head = message.split(" ", 1)[0]
    return head if head in {"count", "steps", "guidance", "sampler", "seed", "size", "background"} else None
