"""Typer sub-apps for build-time work: ``strata data ...`` and ``strata train ...``.

The main CLI mounts ``data_app`` and ``train_app``; until then run
``python -m strata.train.cli data build`` / ``python -m strata.train.cli train image``.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Annotated, Any, Callable, Optional, Sequence

import typer

from strata.errors import StrataError

data_app = typer.Typer(help="Build training datasets (build time only; needs network access to npm).", no_args_is_help=True)
train_app = typer.Typer(help="Train strata's built-in models.", no_args_is_help=True)


def _fail(exc: StrataError) -> typer.Exit:
    """Print a StrataError as one readable line (no traceback) and return the exit to raise."""
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(code=1)


@data_app.command("build")
def data_build(
    out: Path = typer.Option(None, help="Output dir (default $STRATA_DATA_DIR/emoji or ~/.cache/strata/data/emoji)."),
    sources: str = typer.Option("noto,twemoji,fluent3d", help="Comma-separated sources: noto, twemoji, fluent3d."),
    optout: Path = typer.Option(None, help="Opt-out file: lines 'codepoint:1f600', 'name:...', 'sha256:...'."),
    skin_tones: bool = typer.Option(True, help="Keep skin-tone variants (weighted as one item per group)."),
) -> None:
    """Fetch the emoji packages with npm pack and write images.npz, manifest.jsonl and card.md."""
    from strata.train import data_emoji

    try:
        report = data_emoji.build(
            out_dir=out, sources=tuple(s.strip() for s in sources.split(",") if s.strip()),
            optout=data_emoji.OptOut.load(optout), include_skin_tones=skin_tones,
        )
    except StrataError as exc:
        raise _fail(exc) from exc
    typer.echo(f"{report.n_items} images {report.per_source} → {report.out_dir} "
               f"(opted out {len(report.opted_out)}; see card.md)")


@data_app.command("optout")
def data_optout(
    entry: list[str] = typer.Argument(..., help="Entries like 'codepoint:1f600', 'name:pile of poo', 'sha256:…'."),
    file: Path = typer.Option(Path("optout.txt"), help="Opt-out file to append to (created if missing)."),
) -> None:
    """Add entries to an opt-out file (validated); rebuild with ``data build --optout FILE``."""
    from strata.train.data_emoji import OptOut

    check = OptOut()
    for e in entry:
        try:
            check.add(e)
        except StrataError as exc:
            raise _fail(exc) from exc
    with open(file, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in check.entries())
    typer.echo(f"added {len(check.entries())} entries to {file}")


def _shared_options(model: str) -> list[tuple[str, Any, Any]]:
    """The options every `strata train MODEL` command has: (name, Annotated type, default)."""
    return [
        ("config", Annotated[Optional[Path], typer.Option(help=f"Recipe YAML (default: strata/train/configs/{model}.yaml).")],
         None),
        ("resume", Annotated[bool, typer.Option(help="Continue the run in the run dir from its checkpoint.")], False),
        ("threads", Annotated[int, typer.Option(min=1, help="CPU threads for torch (default 1 leaves a core free).")], 1),
        ("max_minutes", Annotated[Optional[float], typer.Option(help="Stop (with a checkpoint) after this many minutes.")],
         None),
        ("max_steps", Annotated[Optional[int], typer.Option(help="Stop (with a checkpoint) at this global step.")], None),
        ("run_dir", Annotated[Optional[Path], typer.Option(
            help=f"Run dir (default $STRATA_TRAIN_DIR/{model} or ~/.cache/strata/train/{model}).")], None),
    ]


def _train_command(model: str, doc: str, *, export_help: str, exported: Callable[[Any], str],
                   max_steps: bool = True, extra: Sequence[tuple[str, Any, Any]] = ()) -> None:
    """Register ``strata train MODEL``: the shared options, ``extra`` ones and ``--export``.

    It runs ``strata.train.<model>.train(**options)``, or with ``--export`` that module's
    ``export`` (same recipe and run dir) and prints ``exported(what it returned)``. Commands
    are built from this one declaration (typer reads the signature set here) because the five
    trainers differ only in their extra options and their export summary.
    """

    def command(**options: Any) -> None:
        module = importlib.import_module(f"strata.train.{model}")
        try:
            if options.pop("export"):
                typer.echo(exported(module.export(config=options["config"], run_dir=options["run_dir"])))
                return
            module.train(**options)
        except StrataError as exc:
            raise _fail(exc) from exc

    export = ("export", Annotated[bool, typer.Option("--export", help=export_help)], False)
    declared = [o for o in _shared_options(model) if max_steps or o[0] != "max_steps"] + [*extra, export]
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind, default=default)
         for name, kind, default in declared])
    command.__doc__ = doc
    command.__name__ = f"train_{model}"
    train_app.command(model)(command)


_train_command(
    "image", "Train the text-to-image model (or, with --export, write its shipped weights).",
    export_help="Only export the run's EMA weights (fp16) to weights/image/.",
    exported=lambda path: f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)",
    extra=[("init_from", Annotated[Optional[Path], typer.Option(
        help="Start a new run from exported weights (e.g. weights/image).")], None)])
_train_command(
    "autoencoder", "Train the image model's autoencoder (train and export it before `train image`).",
    export_help="Only export: fit latent normalization, write weights/image/.",
    exported=lambda rec: (f"exported {rec['weights']} (step {rec['step']}, held-out PSNR {rec['heldout_psnr_fp16']} dB "
                          f"in fp16; sheet {rec['sheet']})"),
    max_steps=False)
_train_command(
    "music", "Train the music model on Bach chorales (or, with --export, write its shipped weights).",
    export_help="Only export: fp16 weights, config and model card to weights/music/.",
    exported=lambda rec: (f"exported {rec['weights']} ({rec['weights_mb']} MB, step {rec['step']}, held-out loss "
                          f"{rec['heldout_loss_fp16']} nats/token in fp16)"))
_train_command(
    "upscale", "Train the ×2/×4 upscaler (or, with --export, write its shipped weights).",
    export_help="Only export: fp16 weights, config and model card to weights/upscale/.",
    exported=lambda rec: (f"exported {rec['weights']} ({rec['weights_kb']} kB, step {rec['step']}; held-out PSNR ×4 "
                          f"{rec['heldout_psnr_x4_fp16']} dB vs bicubic {rec['bicubic_psnr_x4']} dB in fp16)"))
_train_command(
    "scorer", "Train the text-image scorer (or, with --export, write its shipped weights).",
    export_help="Only export: fp16 weights, config and model card to weights/scorer/.",
    exported=lambda rec: (f"exported {rec['weights']} ({rec['weights_kb']} kB, step {rec['step']}; last retrieval "
                          f"{rec['last_eval']})"),
    extra=[("holdout_source", Annotated[Optional[str], typer.Option(
        help="Keep this emoji source out of training (noto, twemoji, fluent3d): the held-out run bench/scorer.py "
             "measures.")], None)])


app = typer.Typer(no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

if __name__ == "__main__":
    app()
