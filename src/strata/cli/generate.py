"""``strata generate``: text → images with the built-in (or a registered) model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from strata.cli.main import StoreOpt, _execute, err, handle_errors
from strata.errors import StrataError
from strata.models.samplers import DEFAULT_GUIDANCE


def _slug(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")
    return (words[:40].rstrip("_") or "image")


def _lora_ref(item: str) -> dict:
    path, sep, scale = item.rpartition(":")
    if sep and path and scale.replace(".", "", 1).lstrip("-").isdigit():
        return {"path": str(Path(path).resolve()), "scale": float(scale)}
    return {"path": str(Path(item).resolve()), "scale": 1.0}


def _announce_estimate(params: dict) -> None:
    """Before a user model spends minutes of CPU, say roughly how many (before starting)."""
    from strata.models.registry import default_registry

    try:
        entry = default_registry().find("text-to-image", params.get("model"))
    except StrataError:
        return  # the run reports it
    if not entry.info.get("unet_params"):
        return
    from strata.models.diffusers_models import estimate_seconds

    native = 1024 if entry.info.get("arch", "").startswith("sdxl") else 512
    low, high = estimate_seconds(entry.info["unet_params"], width=params.get("width") or native,
                                 height=params.get("height") or native, steps=params["steps"],
                                 count=params["count"], guidance=params["guidance"])
    if high >= 10:
        err.print(f"[dim]{entry.id}: roughly {low / 60:.1f}–{high / 60:.1f} min on this CPU "
                  f"({params['count']} image(s), {params['steps']} steps); progress shows the time left[/]")


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def generate(
        prompt: str = typer.Argument(..., help="what to draw, e.g. \"a red apple, 3d\""),
        count: int = typer.Option(4, "-n", "--count", help="how many images (seeds seed, seed+1, ...)"),
        seed: int = typer.Option(0, "--seed", help="seed of the first image"),
        steps: int = typer.Option(20, "--steps", help="denoising steps"),
        guidance: float = typer.Option(DEFAULT_GUIDANCE, "--guidance", help="classifier-free guidance scale"),
        guidance_stop: Optional[float] = typer.Option(
            None, "--guidance-stop", help="share of the steps guided, 0..1 (default: the model's; built-in 0.5)"),
        sampler: str = typer.Option("dpmpp", "--sampler", help="dpmpp | euler | ddim, or an A1111 name ('Euler a', ...)"),
        width: Optional[int] = typer.Option(None, "--width", help="px (your own models; default: native)"),
        height: Optional[int] = typer.Option(None, "--height", help="px (your own models; default: native)"),
        lora: list[str] = typer.Option([], "--lora", help="LoRA file[:scale] for your own models (repeatable)"),
        negative: str = typer.Option("", "--negative", help="what to steer away from"),
        background: Optional[str] = typer.Option(None, "--background", help="'#rrggbb' instead of transparency"),
        model: Optional[str] = typer.Option(None, "--model", help="registered model id (default: built-in)"),
        fmt: str = typer.Option("png", "--format", help="png | webp | jpg (jpg needs --background)"),
        out: Path = typer.Option(Path("out"), "--out", "-o", help="folder for the images"),
        as_json: bool = typer.Option(False, "--json", help="events as JSON lines"),
        no_lint: bool = typer.Option(False, "--no-lint", help="skip the prompt lint (known failure modes)"),
        store: Optional[Path] = StoreOpt,
    ) -> None:
        """Generate images from a prompt; each file carries its prompt, seed, model hash and sampler."""
        from strata.lint import lint_prompt
        from strata.workflow.builder import WorkflowBuilder

        if not no_lint:
            # Before spending minutes of CPU: say what such models are known to get wrong.
            for w in lint_prompt(prompt):
                err.print(f"[yellow]lint {w.code}[/] {escape(repr(w.span))}: {escape(w.message)}")
                err.print(f"  instead: {w.suggestion}", markup=False)

        params = dict(prompt=prompt, count=count, seed=seed, steps=steps, guidance=guidance, sampler=sampler,
                      negative=negative)
        if background:
            params["background"] = background
        if model:
            params["model"] = model
        for name, value in (("width", width), ("height", height), ("guidance_stop", guidance_stop)):
            if value is not None:
                params[name] = value
        if lora:
            params["lora"] = [_lora_ref(item) for item in lora]
        _announce_estimate(params)
        b = WorkflowBuilder(name="generate", seed=seed)
        images = b.add("image.generate", id="generate", **params)
        b.output(f"{_slug(prompt)}.{fmt}", images)
        _execute(b.build(), store=store, out=out, no_cache=False, as_json=as_json)
