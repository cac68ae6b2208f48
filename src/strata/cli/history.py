"""History commands: runs, show, lineage, rerun, diff, export, gc."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Optional

import typer
from rich.table import Table
from rich.tree import Tree

from strata.cli.main import StoreOpt, _execute, console, handle_errors, open_store, parse_sets


def _when(ts: float | None) -> str:
    return "—" if ts is None else dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _fmt_params(params: dict[str, Any], limit: int = 90) -> str:
    text = ", ".join(f"{k}={v}" for k, v in params.items())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def runs(limit: int = typer.Option(20, "--limit", "-n"), store: Optional[Path] = StoreOpt) -> None:
        """List recent runs."""
        from strata.store.history import list_runs

        table = Table("run", "workflow", "started", "status", "executed", "cached", "failed", "parent", box=None)
        for r in list_runs(open_store(store), limit=limit):
            c = r.counts
            table.add_row(r.id, r.name, _when(r.created), r.status, str(c.get("executed", 0)), str(c.get("cached", 0)),
                          str(c.get("failed", 0)), r.parent or "")
        console.print(table)

    @app.command()
    @handle_errors
    def show(run: str = typer.Argument(..., help="run id, a unique prefix, or 'last'"),
             store: Optional[Path] = StoreOpt) -> None:
        """Show one run: every node with its status, time, params and assets."""
        from strata.store.history import list_runs, resolve_run, run_nodes

        st = open_store(store)
        run_id = resolve_run(st, run)
        summary = next(r for r in list_runs(st, limit=10**6) if r.id == run_id)
        console.print(f"[bold]run {run_id}[/] ({summary.name}) {summary.status}, started {_when(summary.created)}"
                      + (f", rerun of {summary.parent}" if summary.parent else ""))
        table = Table("node", "op", "status", "time", "params", "outputs", box=None)
        for n in run_nodes(st, run_id):
            outs = ", ".join(f"{k}:{','.join(a[:8] for a in v)}" for k, v in n.outputs.items())
            table.add_row(n.node_id, n.op, n.status, "" if n.duration_s is None else f"{n.duration_s:.2f}s",
                          _fmt_params(n.params), outs)
        console.print(table)
        for n in run_nodes(st, run_id):
            if n.error:
                console.print(f"[red]{n.node_id}:[/] {n.error}")

    @app.command()
    @handle_errors
    def lineage(target: str = typer.Argument(..., help="a file strata wrote, or an asset id (prefix)"),
                store: Optional[Path] = StoreOpt) -> None:
        """Which run, node, params and inputs made a file or asset."""
        from strata.errors import StoreError
        from strata.store.history import find_asset, lineage as lineage_of

        st = open_store(store)
        asset, run_hint = find_asset(st, target)
        root = lineage_of(st, asset, run_hint=run_hint)
        if root is None:
            raise StoreError(f"asset {asset[:12]}… has no recorded producer in {st.root}")
        tree = Tree(f"[bold]{target}[/] = asset {asset[:12]}…  (run {root.run_id})")

        def add(branch: Tree, node: Any, port: str | None) -> None:
            label = f"{port + ' ← ' if port else ''}[cyan]{node.node_id}[/] {node.op} {_fmt_params(node.params)}"
            sub = branch.add(label)
            for p, items in node.inputs.items():
                for item in items:
                    add(sub, item, p)

        add(tree, root, None)
        console.print(tree)

    @app.command()
    @handle_errors
    def rerun(run: str = typer.Argument(..., help="run id, prefix or 'last'"),
              set_: list[str] = typer.Option([], "--set", help="node.param=value (repeatable)"),
              out: Path = typer.Option(Path("out"), "--out", "-o"),
              no_cache: bool = typer.Option(False, "--no-cache"),
              as_json: bool = typer.Option(False, "--json"),
              store: Optional[Path] = StoreOpt) -> None:
        """Run a recorded workflow again with changes; only what depends on them executes."""
        from strata.store.history import resolve_run, run_workflow_dict
        from strata.workflow.spec import parse_workflow

        st = open_store(store)
        run_id = resolve_run(st, run)
        wf = parse_workflow(run_workflow_dict(st, run_id))
        for node, param, value in parse_sets(set_):
            wf = wf.with_param(node, param, value)
        _execute(wf, store=store, out=out, no_cache=no_cache, as_json=as_json, parent=run_id)

    @app.command()
    @handle_errors
    def diff(run_a: str, run_b: str, store: Optional[Path] = StoreOpt) -> None:
        """What changed between two runs, and what reran in the second."""
        from strata.store.history import diff_runs, resolve_run

        st = open_store(store)
        d = diff_runs(st, resolve_run(st, run_a), resolve_run(st, run_b))
        console.print(f"[bold]{d.run_a} → {d.run_b}[/]")
        if not (d.changed_params or d.added_nodes or d.removed_nodes):
            console.print("  same workflow")
        for node, params in d.changed_params.items():
            for k, (a, b) in params.items():
                console.print(f"  [cyan]{node}.{k}[/]: {a!r} → {b!r}")
        for n in d.added_nodes:
            console.print(f"  [green]+ {n}[/]")
        for n in d.removed_nodes:
            console.print(f"  [red]- {n}[/]")
        console.print(f"  reran ({len(d.reran)}): {', '.join(d.reran) or '—'}")
        console.print(f"  reused ({len(d.reused)}): {', '.join(d.reused) or '—'}")

    @app.command()
    @handle_errors
    def export(run: str = typer.Argument(..., help="run id, prefix or 'last'"),
               dest: Path = typer.Argument(..., help="folder to write the run's outputs and workflow into"),
               store: Optional[Path] = StoreOpt) -> None:
        """Write a run's output files (with provenance) and its workflow.yaml to a folder."""
        from strata.workflow.outputs import export_run

        paths = export_run(open_store(store), run, dest)
        for p in paths:
            console.print(f"  → {p}")

    @app.command()
    @handle_errors
    def gc(dry_run: bool = typer.Option(False, "--dry-run", help="only report what would be removed"),
           store: Optional[Path] = StoreOpt) -> None:
        """Remove unreferenced blobs and temp files; never a stored result or a run's lineage."""
        report = open_store(store).gc(dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        console.print(f"{verb} {report.removed_blobs} unreferenced blob(s) and {report.removed_temp_files} temp file(s), "
                      f"{report.freed_bytes / 1e6:.1f} MB")
