"""Typer sub-apps for build-time work: ``strata data ...`` and ``strata train ...``.

The main CLI mounts ``data_app`` and ``train_app``; until then run
``python -m strata.train.cli data build`` / ``python -m strata.train.cli train image``.
"""

from __future__ import annotations

from pathlib import Path

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


@train_app.command("image")
def train_image(
    config: Path = typer.Option(None, help="Recipe YAML (default: strata/train/configs/image.yaml)."),
    resume: bool = typer.Option(False, help="Continue the run in the run dir from its checkpoint."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (default 1 leaves a core free)."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    max_steps: int = typer.Option(None, help="Stop (with a checkpoint) at this global step."),
    run_dir: Path = typer.Option(None, help="Run dir (default $STRATA_TRAIN_DIR/image or ~/.cache/strata/train/image)."),
    export: bool = typer.Option(False, "--export", help="Only export the run's EMA weights (fp16) to weights/image/."),
    init_from: Path = typer.Option(None, help="Start a new run from exported weights (e.g. weights/image)."),
) -> None:
    """Train the text-to-image model (or, with --export, write its shipped weights)."""
    from strata.train import image

    try:
        if export:
            path = image.export(run_dir=run_dir, config=config)
            typer.echo(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB)")
            return
        image.train(config=config, resume=resume, threads=threads, max_minutes=max_minutes,
                    max_steps=max_steps, run_dir=run_dir, init_from=init_from)
    except StrataError as exc:
        raise _fail(exc) from exc


@train_app.command("autoencoder")
def train_autoencoder(
    config: Path = typer.Option(None, help="Recipe YAML (default: strata/train/configs/autoencoder.yaml)."),
    resume: bool = typer.Option(False, help="Continue the run in the run dir from its checkpoint."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (default 1 leaves a core free)."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    run_dir: Path = typer.Option(None, help="Run dir (default ~/.cache/strata/train/autoencoder)."),
    export: bool = typer.Option(False, "--export", help="Only export: fit latent normalization, write weights/image/."),
) -> None:
    """Train the image model's autoencoder (train and export it before `train image`)."""
    from strata.train import autoencoder

    try:
        if export:
            rec = autoencoder.export(config=config, run_dir=run_dir)
            typer.echo(f"exported {rec['weights']} (step {rec['step']}, held-out PSNR {rec['heldout_psnr_fp16']} dB "
                       f"in fp16; sheet {rec['sheet']})")
            return
        autoencoder.train(config=config, resume=resume, threads=threads, max_minutes=max_minutes, run_dir=run_dir)
    except StrataError as exc:
        raise _fail(exc) from exc


@train_app.command("music")
def train_music(
    config: Path = typer.Option(None, help="Recipe YAML (default: strata/train/configs/music.yaml)."),
    resume: bool = typer.Option(False, help="Continue the run in the run dir from its checkpoint."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (default 1 leaves a core free)."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    max_steps: int = typer.Option(None, help="Stop (with a checkpoint) at this global step."),
    run_dir: Path = typer.Option(None, help="Run dir (default $STRATA_TRAIN_DIR/music or ~/.cache/strata/train/music)."),
    export: bool = typer.Option(False, "--export", help="Only export: fp16 weights, config and model card to weights/music/."),
) -> None:
    """Train the music model on Bach chorales (or, with --export, write its shipped weights)."""
    from strata.train import music

    try:
        if export:
            rec = music.export(config=config, run_dir=run_dir)
            typer.echo(f"exported {rec['weights']} ({rec['weights_mb']} MB, step {rec['step']}, held-out loss "
                       f"{rec['heldout_loss_fp16']} nats/token in fp16)")
            return
        music.train(config=config, resume=resume, threads=threads, max_minutes=max_minutes, max_steps=max_steps,
                    run_dir=run_dir)
    except StrataError as exc:
        raise _fail(exc) from exc


@train_app.command("upscale")
def train_upscale(
    config: Path = typer.Option(None, help="Recipe YAML (default: strata/train/configs/upscale.yaml)."),
    resume: bool = typer.Option(False, help="Continue the run in the run dir from its checkpoint."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (default 1 leaves a core free)."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    max_steps: int = typer.Option(None, help="Stop (with a checkpoint) at this global step."),
    run_dir: Path = typer.Option(None, help="Run dir (default $STRATA_TRAIN_DIR/upscale or ~/.cache/strata/train/upscale)."),
    export: bool = typer.Option(False, "--export", help="Only export: fp16 weights, config and model card to weights/upscale/."),
) -> None:
    """Train the ×2/×4 upscaler (or, with --export, write its shipped weights)."""
    from strata.train import upscale

    try:
        if export:
            rec = upscale.export(config=config, run_dir=run_dir)
            typer.echo(f"exported {rec['weights']} ({rec['weights_kb']} kB, step {rec['step']}; held-out PSNR ×4 "
                       f"{rec['heldout_psnr_x4_fp16']} dB vs bicubic {rec['bicubic_psnr_x4']} dB in fp16)")
            return
        upscale.train(config=config, resume=resume, threads=threads, max_minutes=max_minutes, max_steps=max_steps,
                      run_dir=run_dir)
    except StrataError as exc:
        raise _fail(exc) from exc


@train_app.command("scorer")
def train_scorer(
    config: Path = typer.Option(None, help="Recipe YAML (default: strata/train/configs/scorer.yaml)."),
    resume: bool = typer.Option(False, help="Continue the run in the run dir from its checkpoint."),
    threads: int = typer.Option(1, min=1, help="CPU threads for torch (default 1 leaves a core free)."),
    max_minutes: float = typer.Option(None, help="Stop (with a checkpoint) after this many minutes."),
    max_steps: int = typer.Option(None, help="Stop (with a checkpoint) at this global step."),
    run_dir: Path = typer.Option(None, help="Run dir (default $STRATA_TRAIN_DIR/scorer or ~/.cache/strata/train/scorer)."),
    holdout_source: str = typer.Option(None, help="Keep this emoji source out of training (noto, twemoji, fluent3d): "
                                                  "the held-out run bench/scorer.py measures."),
    export: bool = typer.Option(False, "--export", help="Only export: fp16 weights, config and model card to weights/scorer/."),
) -> None:
    """Train the text-image scorer (or, with --export, write its shipped weights)."""
    from strata.train import scorer

    try:
        if export:
            rec = scorer.export(config=config, run_dir=run_dir)
            typer.echo(f"exported {rec['weights']} ({rec['weights_kb']} kB, step {rec['step']}; last retrieval "
                       f"{rec['last_eval']})")
            return
        scorer.train(config=config, resume=resume, threads=threads, max_minutes=max_minutes, max_steps=max_steps,
                     run_dir=run_dir, holdout_source=holdout_source)
    except StrataError as exc:
        raise _fail(exc) from exc


app = typer.Typer(no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(train_app, name="train")

if __name__ == "__main__":
    app()
