"""Provenance and responsible-generation commands: verify, lint, audit."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from strata.cli.main import StoreOpt, console, handle_errors

_STYLE = {"trusted": "green", "untrusted": "yellow", "invalid": "red", "unsigned": "dim", "unavailable": "dim"}


def register(app: typer.Typer) -> None:
    @app.command()
    @handle_errors
    def verify(
        file: Path = typer.Argument(..., help="a file to check (PNG, JPEG, WebP, TIFF, WAV, MP4)"),
        as_json: bool = typer.Option(False, "--json", help="print the report as JSON"),
        no_watermark: bool = typer.Option(False, "--no-watermark", help="skip decoding the pixels for the watermark"),
    ) -> None:
        """Check a file's content credentials, embedded provenance and watermark; tell its history.

        Exit code: 0 trusted / untrusted / unsigned, 1 invalid (changed after signing),
        2 not a media file or no such file.
        """
        from strata.provenance.verify import verify_file

        report = verify_file(file, check_watermark=not no_watermark)
        if as_json:
            console.print_json(json.dumps(report.to_dict(), default=str))
        else:
            style = _STYLE[report.credentials] if report.kind != "unknown" else "red"
            console.print(f"[bold {style}]{report.verdict}[/]")
            if report.credentials_detail and report.kind != "unknown":
                console.print(f"  credentials: {report.credentials_detail}")
            if report.kind != "unknown":
                console.print(f"  watermark: {report.watermark}"
                              + (f" (asset {report.watermark_asset_hint}…)" if report.watermark_asset_hint else ""))
            console.print("[bold]history[/]")
            for line in report.history:
                console.print(f"  {line}", markup=False)
            for problem in report.problems:
                console.print(f"[yellow]warning:[/] {problem}")
        if report.kind == "unknown":
            raise typer.Exit(2)
        if report.credentials == "invalid":
            raise typer.Exit(1)

    @app.command()
    @handle_errors
    def lint(
        prompt: str = typer.Argument(..., help="the prompt to check"),
        as_json: bool = typer.Option(False, "--json", help="print the warnings as JSON"),
    ) -> None:
        """Warn about prompts text-to-image models are known to fail at, and say what works instead."""
        from strata.lint import lint_prompt

        warnings = lint_prompt(prompt)
        if as_json:
            console.print_json(json.dumps([w.to_dict() for w in warnings]))
            return
        if not warnings:
            console.print("[green]no known failure modes in this prompt[/]")
            return
        for w in warnings:
            console.print(f"[yellow]{w.code}[/] [bold]{escape(repr(w.span))}[/]: {escape(w.message)}")
            console.print(f"  instead: {w.suggestion}", markup=False)

    @app.command()
    @handle_errors
    def audit(
        n: int = typer.Option(16, "--n", min=1, max=1000, help="images per prompt"),
        out: Path = typer.Option(Path("out/audit"), "--out", "-o", help="folder for the chart and the JSON report"),
        seed: int = typer.Option(0, "--seed", help="first seed; image i uses seed + i"),
        store: Optional[Path] = StoreOpt,
    ) -> None:
        """Skin-tone audit of the text-to-image model on person prompts, against the training data."""
        from strata.provenance.audit import run_audit

        report = run_audit(n_per_prompt=n, out_dir=out, seed=seed)
        console.print(report.summary())
        console.print(f"chart: {report.chart_path}\nreport: {report.json_path}")
