"""``strata`` commands. Every command is a few lines over the library; errors are printed as
one clear message (no traceback) and set the exit code: 1 run failed, 2 bad input, 130
interrupted."""

from __future__ import annotations

import functools
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
import yaml
from rich.console import Console

from strata.errors import RunInterrupted, StrataError, WorkflowError

app = typer.Typer(help="strata: generative media from idea to finished file.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()
err = Console(stderr=True)

StoreOpt = typer.Option(None, "--store", envvar="STRATA_DATA", help="store folder (default ./strata-data)")


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Print strata errors as one readable message and exit with a meaningful code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except RunInterrupted as exc:
            err.print(f"[yellow]{exc}[/]")
            raise typer.Exit(130) from None
        except WorkflowError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None
        except StrataError as exc:
            err.print(f"[red]error:[/] {exc}")
            raise typer.Exit(2) from None

    return wrapper


def open_store(path: Optional[Path]) -> "Store":  # noqa: F821
    from strata.store import Store

    return Store(path)


def parse_sets(sets: list[str]) -> list[tuple[str, str, Any]]:
    """``node.param=value`` → (node, param, value); the value is read as YAML (numbers, lists...)."""
    out = []
    for item in sets:
        target, eq, raw = item.partition("=")
        node, dot, param = target.partition(".")
        if not eq or not dot or not node or not param:
            raise WorkflowError(f"--set {item!r}: write node.param=value, e.g. --set grade.stops=0.5")
        out.append((node, param, yaml.safe_load(raw)))
    return out


def _load_any_workflow(path: Path) -> "Workflow":  # noqa: F821
    from strata.workflow.spec import load_workflow, parse_workflow

    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        return load_workflow(path)
    if not path.is_file():
        raise WorkflowError(f"file not found: {path}")
    from strata.provenance.metadata import read_provenance

    prov = read_provenance(path)
    if prov is None or not getattr(prov, "workflow", None):
        raise WorkflowError(f"{path} carries no strata workflow; give a .yaml/.json workflow or an image strata wrote")
    return parse_workflow(prov.workflow, base_dir=path.resolve().parent)


def _execute(workflow: "Workflow", *, store: Optional[Path], out: Path, no_cache: bool, as_json: bool,  # noqa: F821
             parent: str | None = None) -> None:
    from strata.workflow.events import JsonLinesSink
    from strata.workflow.executor import Executor
    from strata.workflow.validate import validate
    from strata.models.registry import default_registry
    from strata.cli.display import ProgressDisplay

    plan = validate(workflow)
    sink = JsonLinesSink() if as_json else ProgressDisplay()
    result = Executor(open_store(store), sinks=[sink], models=default_registry()).run(
        plan, no_cache=no_cache, out_dir=out, parent_run=parent)
    if not result.ok:
        for node, message in result.failed.items():
            err.print(f"[red]failed:[/] {message}")
        raise typer.Exit(1)


@app.command()
@handle_errors
def run(
    workflow: Path = typer.Argument(..., help="a .yaml/.json workflow, or a PNG/JPEG/WebP that strata wrote"),
    out: Path = typer.Option(Path("out"), "--out", "-o", help="folder for the workflow's output files"),
    seed: Optional[int] = typer.Option(None, "--seed", help="override the workflow's seed"),
    set_: list[str] = typer.Option([], "--set", help="change a param: node.param=value (repeatable)"),
    no_cache: bool = typer.Option(False, "--no-cache", help="execute every node even if a stored result exists"),
    as_json: bool = typer.Option(False, "--json", help="print events as JSON lines instead of progress bars"),
    store: Optional[Path] = StoreOpt,
) -> None:
    """Run a workflow; unchanged nodes are reused from the store."""
    wf = _load_any_workflow(workflow)
    for node, param, value in parse_sets(set_):
        wf = wf.with_param(node, param, value)
    if seed is not None:
        wf = wf.model_copy(update={"seed": seed})
    _execute(wf, store=store, out=out, no_cache=no_cache, as_json=as_json)


@app.command("validate")
@handle_errors
def validate_cmd(workflow: Path = typer.Argument(..., help="workflow file")) -> None:
    """Check a workflow without running it; lists every problem."""
    from strata.workflow.validate import validate

    plan = validate(_load_any_workflow(workflow))
    console.print(f"[green]ok[/]: {len(plan.nodes)} nodes, outputs: {', '.join(plan.outputs) or 'none'}")


@app.command()
@handle_errors
def info(file: Path = typer.Argument(..., help="an image (or other media file) to describe")) -> None:
    """Print a file's format and the provenance strata embedded in it."""
    from strata.provenance.metadata import describe

    data = describe(file)
    console.print_json(json.dumps(data, default=str))


# Command groups live in their own modules; each adds its commands to `app`.
from strata.cli import generate as _generate  # noqa: E402
from strata.cli import edit as _edit  # noqa: E402
from strata.cli import history as _history  # noqa: E402
from strata.cli import models as _models  # noqa: E402
from strata.cli import ops as _ops  # noqa: E402
from strata.cli import provenance as _provenance  # noqa: E402
from strata.cli import serve as _serve  # noqa: E402

app.add_typer(_ops.ops_app, name="ops")
app.add_typer(_models.models_app, name="models")
app.add_typer(_edit.edit_app, name="edit")
for _module in (_history, _generate, _provenance, _serve):
    _module.register(app)

try:  # dataset + training commands (need the model extras)
    from strata.train.cli import data_app, train_app

    app.add_typer(data_app, name="data", help="build the training datasets (build time only)")
    app.add_typer(train_app, name="train", help="train the built-in models")
except ImportError:  # pragma: no cover - extras not installed
    pass


@app.command()
@handle_errors
def demo(
    out: Path = typer.Option(Path("out/demo"), "--out", "-o", help="where the demo's files go"),
    store: Optional[Path] = StoreOpt,
) -> None:
    """The main job: run the bundled example workflow(s) on the built-in models."""
    examples = Path(__file__).resolve().parents[3] / "examples"
    # The storybook (generated pictures, narration, music) is the main job once the image and
    # music models are installed; until then the narrated photo slideshow stands in for it.
    film = "storybook" if _builtin_models_installed() else "narrated"
    for name in ("poster", "restore", film):
        path = examples / f"{name}.yaml"
        if not path.is_file():
            raise StrataError(f"example {path} is missing; run the demo from a strata checkout")
        console.print(f"[bold]{name}[/]  ({path.name} → {out / name})")
        _execute(_load_any_workflow(path), store=store, out=out / name, no_cache=False, as_json=False)
    console.print(f"\n[bold green]done[/]: files in {out.resolve()}: poster/poster.png, restore/restored.png, "
                  f"{film}/{film}.mp4 (+ .srt, .vtt, poster frame). Try `strata verify {out}/poster/poster.png` "
                  f"or `strata lineage {out}/poster/poster.png`.")


def _builtin_models_installed() -> bool:
    """Are strata's own image and music models installed (not only a user's model)?"""
    from strata.models.builtin import IMAGE_MODEL_ID
    from strata.models.music_model import MODEL_ID as MUSIC_MODEL_ID
    from strata.models.registry import default_registry

    return {IMAGE_MODEL_ID, MUSIC_MODEL_ID} <= set(default_registry().entries)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
