"""``strata generate``: text → images with the built-in (or a registered) model."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from strata.cli.main import StoreOpt, _execute, err, handle_errors


def _slug(prompt: str) -> str:
    words = re.sub(r"[^a-z0-9]+", "_", prompt.lower()).strip("_")
    return (words[:40].rstrip("_") or "image")


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def generate(
        prompt: str = typer.Argument(..., help="what to draw, e.g. \"a red apple, 3d\""),
        count: int = typer.Option(4, "-n", "--count", help="how many images (seeds seed, seed+1, ...)"),
        seed: int = typer.Option(0, "--seed", help="seed of the first image"),
        steps: int = typer.Option(20, "--steps", help="denoising steps"),
        guidance: float = typer.Option(4.0, "--guidance", help="classifier-free guidance scale"),
        sampler: str = typer.Option("dpmpp", "--sampler", help="dpmpp | euler | ddim"),
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
        b = WorkflowBuilder(name="generate", seed=seed)
        images = b.add("image.generate", id="generate", **params)
        b.output(f"{_slug(prompt)}.{fmt}", images)
        _execute(b.build(), store=store, out=out, no_cache=False, as_json=as_json)
