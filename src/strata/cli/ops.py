"""``strata ops``: list op schemas by layer, show one, export them as JSON Schema."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from strata.cli.main import console, handle_errors
from strata.errors import StrataError

ops_app = typer.Typer(help="list, show and export op schemas", invoke_without_command=True)


@ops_app.callback()
def list_ops(ctx: typer.Context, layer: Optional[str] = typer.Option(None, "--layer", help="only this layer")) -> None:
    """List every op, grouped by layer."""
    if ctx.invoked_subcommand is not None:
        return
    from strata.workflow.node import LAYERS, load_builtin_ops

    registry = load_builtin_ops()
    table = Table("layer", "op", "inputs → outputs", "summary", box=None)
    for lay in LAYERS:
        if layer and lay != layer:
            continue
        for spec in sorted((s for s in registry.values() if s.layer == lay), key=lambda s: s.op):
            ports = ", ".join(f"{p.name}:{p.type_name}" for p in spec.inputs) or "—"
            outs = ", ".join(f"{p.name}:{p.type_name}" for p in spec.outputs)
            table.add_row(lay, spec.op, f"{ports} → {outs}", (spec.doc.splitlines() or [""])[0])
    console.print(table)


@ops_app.command("show")
@handle_errors
def show(name: str = typer.Argument(..., help="op id, e.g. composite.blend")) -> None:
    """Print one op's inputs, outputs and params with defaults, bounds and docs."""
    import difflib

    from strata.workflow.node import load_builtin_ops

    registry = load_builtin_ops()
    spec = registry.get(name)
    if spec is None:
        near = difflib.get_close_matches(name, list(registry), n=3)
        raise StrataError(f"unknown op '{name}'" + (f"; did you mean {', '.join(near)}?" if near else ""))
    console.print(f"[bold]{spec.op}[/] (layer {spec.layer}, version {spec.version})\n{spec.doc}\n")
    for p in spec.inputs:
        console.print(f"  input  [cyan]{p.name}[/]: {p.type_name}{' (optional)' if p.optional else ''}")
    for p in spec.outputs:
        console.print(f"  output [cyan]{p.name}[/]: {p.type_name}")
    schema = spec.params_schema()
    table = Table("param", "type", "default", "range / choices", "description", box=None)
    for pname, prop in schema.get("properties", {}).items():
        rng = _range(prop)
        table.add_row(pname, str(prop.get("type", prop.get("$ref", "object"))), json.dumps(prop.get("default", "required")),
                      rng, prop.get("description", ""))
    console.print(table)


def _range(prop: dict) -> str:
    if "enum" in prop:
        return " | ".join(map(str, prop["enum"]))
    lo = prop.get("minimum", prop.get("exclusiveMinimum"))
    hi = prop.get("maximum", prop.get("exclusiveMaximum"))
    if lo is None and hi is None:
        return ""
    return f"{'' if lo is None else lo} … {'' if hi is None else hi}"


@ops_app.command("schema")
def schema(out: Optional[Path] = typer.Option(None, "--out", help="write to this file instead of stdout")) -> None:
    """Export every op's schema as JSON Schema (what the server and studio build forms from)."""
    from strata.workflow.node import load_builtin_ops

    data = {op: spec.json_schema() for op, spec in sorted(load_builtin_ops().items())}
    text = json.dumps(data, indent=2)
    if out:
        from strata.files import atomic_write_bytes

        atomic_write_bytes(out, text.encode())
        console.print(f"wrote {len(data)} op schemas to {out}")
    else:
        print(text)
