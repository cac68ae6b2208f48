"""``strata models``: list the built-in and the user's own models; ``add`` and ``rm`` the user's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from strata.cli.main import console, handle_errors

models_app = typer.Typer(help="list, add and remove models (built-in and your own SD 1.x / SDXL models)",
                         no_args_is_help=False, invoke_without_command=True)


def _gb(n: int) -> str:
    return f"{n / 2**30:.2f} GB" if n >= 2**30 else f"{n / 2**20:.1f} MB"


@models_app.callback()
@handle_errors
def list_models(ctx: typer.Context,
                as_json: bool = typer.Option(False, "--json", help="print the list as JSON")) -> None:
    """List models: id, kind, capabilities, memory when loaded, hash."""
    if ctx.invoked_subcommand is not None:
        return
    from strata.errors import ModelError
    from strata.models.registry import default_registry, reset_default_registry

    reset_default_registry()  # pick up models added since this process started
    rows = []
    for entry in default_registry().entries.values():
        try:
            digest = entry.weights_hash()
        except ModelError as exc:
            digest = f"unusable: {exc}"
        rows.append({"id": entry.id, "kind": entry.info.get("arch", "built-in"), "path": entry.info.get("path"),
                     "capabilities": sorted(entry.capabilities), "memory_bytes": entry.memory_bytes(),
                     "hash": digest})
    if as_json:
        console.print_json(json.dumps(rows))
        return
    table = Table("id", "kind", "capabilities", "memory", "hash", box=None)
    for r in rows:
        table.add_row(r["id"], r["kind"], ", ".join(r["capabilities"]), _gb(r["memory_bytes"]), r["hash"][:16])
    console.print(table if rows else "no models installed; `strata models add NAME PATH` adds your own")


@models_app.command("add")
@handle_errors
def add(
    name: str = typer.Argument(..., help="the id to use it by (e.g. sd15 → --model sd15)"),
    path: Path = typer.Argument(..., help="a diffusers pipeline folder, or a single-file SD 1.x / SDXL .safetensors"),
    trust_pickle: bool = typer.Option(False, "--trust-pickle",
                                      help="allow pickled .ckpt/.bin/.pt weights (loaded weights-only); only for "
                                           "files from a source you trust"),
    config: Optional[Path] = typer.Option(None, "--config", help="single files: a diffusers-format folder with the "
                                          "configs + tokenizer to use (default: the ones strata ships)"),
) -> None:
    """Register your own model (nothing is copied; the files must stay where they are)."""
    from strata.models.registry import default_registry
    from strata.models.user_models import add_user_model

    builtin_ids = {e.id for e in default_registry().entries.values() if not e.info.get("arch")}
    entry = add_user_model(name, path, trust_pickle=trust_pickle, config=config, builtin_ids=builtin_ids)
    console.print(f"[green]added[/] {entry.name}: {entry.arch} ({entry.format}), can do "
                  f"{', '.join(entry.capabilities)}; needs ~{_gb(entry.memory_bytes)} when loaded; hash "
                  f"{entry.hash[:16]}")


@models_app.command("rm")
@handle_errors
def rm(name: str = typer.Argument(..., help="a model you added")) -> None:
    """Forget one of your models (its files are left alone)."""
    from strata.models.user_models import remove_user_model

    entry = remove_user_model(name)
    console.print(f"removed {entry.name} ({entry.path} is untouched)")
