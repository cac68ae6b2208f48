"""``strata edit``: learned edits of an existing picture — inpaint (repaint a masked area) and outpaint."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from strata.cli.main import StoreOpt, _execute, handle_errors
from strata.models.samplers import DEFAULT_GUIDANCE

edit_app = typer.Typer(help="repaint part of a picture (inpaint) or extend it (outpaint)", no_args_is_help=True)


def _inpaint_params(prompt: str, count: int, seed: int, steps: int, guidance: float, strength: float,
                    negative: str, model: Optional[str]) -> dict:
    params = dict(prompt=prompt, count=count, seed=seed, steps=steps, guidance=guidance, strength=strength,
                  negative=negative)
    if model:
        params["model"] = model
    return params


# Options shared by both commands (typer reads them from the signature).
COUNT = typer.Option(1, "-n", "--count", help="how many results (seeds seed, seed+1, ...)")
SEED = typer.Option(0, "--seed", help="seed of the first result")
STEPS = typer.Option(20, "--steps", help="denoising steps")
GUIDANCE = typer.Option(DEFAULT_GUIDANCE, "--guidance", help="classifier-free guidance scale")
STRENGTH = typer.Option(1.0, "--strength", help="0..1: how much of the masked area to redo (1 = from scratch)")
NEGATIVE = typer.Option("", "--negative", help="what to steer away from")
MODEL = typer.Option(None, "--model", help="registered inpainting model id (default: built-in)")
OUT = typer.Option(Path("out"), "--out", "-o", help="folder for the results")
JSON = typer.Option(False, "--json", help="events as JSON lines")


@edit_app.command("inpaint")
@handle_errors
def inpaint(
    image: Path = typer.Argument(..., help="the picture (PNG, JPEG, WebP, TIFF; any size)"),
    prompt: str = typer.Argument(..., help="what to paint in the masked area"),
    mask: Path = typer.Option(..., "--mask", "-m", help="grayscale image of the same size: white = repaint"),
    count: int = COUNT, seed: int = SEED, steps: int = STEPS, guidance: float = GUIDANCE, strength: float = STRENGTH,
    negative: str = NEGATIVE, model: Optional[str] = MODEL, out: Path = OUT, as_json: bool = JSON,
    store: Optional[Path] = StoreOpt,
) -> None:
    """Repaint the white part of MASK in IMAGE with PROMPT; the rest of the picture is kept exactly."""
    from strata.workflow.builder import WorkflowBuilder

    b = WorkflowBuilder(name="inpaint", seed=seed)
    src = b.add("io.load_image", id="image", path=str(image.resolve()))
    hole = b.add("io.load_mask", id="mask", path=str(mask.resolve()))
    result = b.add("image.inpaint", id="inpaint", image=src, mask=hole,
                   **_inpaint_params(prompt, count, seed, steps, guidance, strength, negative, model))
    b.output(f"{image.stem}_inpainted.png", result)
    _execute(b.build(), store=store, out=out, no_cache=False, as_json=as_json)


@edit_app.command("outpaint")
@handle_errors
def outpaint(
    image: Path = typer.Argument(..., help="the picture to extend"),
    prompt: str = typer.Argument(..., help="what the new area shows"),
    left: int = typer.Option(0, "--left", help="px added on the left"),
    right: int = typer.Option(0, "--right", help="px added on the right"),
    top: int = typer.Option(0, "--top", help="px added on the top"),
    bottom: int = typer.Option(0, "--bottom", help="px added at the bottom"),
    count: int = COUNT, seed: int = SEED, steps: int = STEPS, guidance: float = GUIDANCE,
    negative: str = NEGATIVE, model: Optional[str] = MODEL, out: Path = OUT, as_json: bool = JSON,
    store: Optional[Path] = StoreOpt,
) -> None:
    """Extend IMAGE by the given margins and paint them with PROMPT (pad + inpaint of the new area)."""
    from strata.errors import StrataError
    from strata.workflow.builder import WorkflowBuilder

    if left + right + top + bottom == 0:
        raise StrataError("nothing to outpaint: give at least one of --left, --right, --top, --bottom (px)")
    b = WorkflowBuilder(name="outpaint", seed=seed)
    src = b.add("io.load_image", id="image", path=str(image.resolve()))
    canvas = b.add("edit.pad", id="pad", image=src, left=left, right=right, top=top, bottom=bottom, mode="edge")
    result = b.add("image.inpaint", id="outpaint", image=canvas.image, mask=canvas.mask,
                   **_inpaint_params(prompt, count, seed, steps, guidance, 1.0, negative, model))
    b.output(f"{image.stem}_outpainted.png", result)
    _execute(b.build(), store=store, out=out, no_cache=False, as_json=as_json)
