"""What every trainer's run shares: its recipe, its directory, atomic checkpoints, and the loop's book.

A run lives in one directory outside the git tree (``run.dir`` in the recipe, else
``$STRATA_TRAIN_DIR/<model>``, else ``~/.cache/strata/train/<model>``): ``checkpoint.pt``
(written atomically), ``log.jsonl`` (one line per log interval) and whatever the trainer adds
(sample grids). Copying the directory to another machine and passing ``--resume`` continues
exactly where it stopped.

:class:`RunBook` is the loop's bookkeeping, the same for every model: stop cleanly on SIGTERM /
Ctrl-C / a time or step limit, the mean loss and speed per log line, a checkpoint every few
minutes, one on a crash, and one at the end.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Generic, TypeVar

import torch
import yaml

from strata.errors import StrataError

CHECKPOINT = "checkpoint.pt"


def load_recipe(path: Path | None, default: Path, sections: tuple[str, ...]) -> tuple[dict[str, Any], str]:
    """Read a training recipe (YAML); returns (the parsed sections, the file's text).

    Raises:
        StrataError: the file is missing or lacks one of ``sections``.
    """
    path = Path(path or default)
    if not path.is_file():
        raise StrataError(f"training config {path} not found; pass --config with an existing YAML file")
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text) or {}
    missing = set(sections) - set(raw)
    if missing:
        raise StrataError(f"{path}: missing sections {sorted(missing)}; start from {default}")
    return raw, text


M = TypeVar("M")


@dataclasses.dataclass
class Recipe(Generic[M]):
    """A trainer's YAML recipe, parsed: the ``model`` section as the model's config class, the
    others as dicts (each value's reason is in the YAML file). Each trainer subclasses it."""

    model: M
    data: dict
    train: dict
    run: dict
    source: str = ""  # the YAML text, stored in checkpoints so a resumed run can be audited

    @classmethod
    def parse(cls, path: Path | None, default: Path, model_class: Any, extra: tuple[str, ...] = ()) -> Any:
        """Read the recipe at ``path`` (default ``default``); ``extra`` names sections a subclass
        adds as fields of its own (after ``source``).

        Raises:
            StrataError: the file is missing or lacks a section.
        """
        raw, text = load_recipe(path, default, ("model", "data", *extra, "train", "run"))
        return cls(model_class.from_dict(raw["model"]), raw["data"], raw["train"], raw["run"], text,
                   *(raw[k] for k in extra))


def resolve_run_dir(run: dict[str, Any], model: str, override: str | os.PathLike[str] | None = None) -> Path:
    """``override`` (``--run-dir``), else the recipe's ``run.dir``, else ``$STRATA_TRAIN_DIR/<model>``,
    else ``~/.cache/strata/train/<model>``."""
    if override:
        return Path(override)
    if run.get("dir"):
        return Path(run["dir"]).expanduser()
    env = os.environ.get("STRATA_TRAIN_DIR")
    return (Path(env) if env else Path.home() / ".cache" / "strata" / "train") / model


R = TypeVar("R", bound=Recipe)


def start_run(cfg: R, model: str, *, model_class: Any, config: Path | None, resume: bool, threads: int,
              run_dir: Path | None) -> tuple[R, Path, dict | None]:
    """The start every trainer shares; returns (the recipe to train with, the run dir, the checkpoint
    to resume from or None).

    Sets torch's threads, finds the run dir (:func:`resolve_run_dir`), refuses to start over an
    existing run without ``resume`` (:func:`open_run`) and to resume with another model: the
    checkpoint's ``model_config`` (read with ``model_class.from_dict``) must equal ``cfg.model``.
    When the checkpoint stores its recipe (``config_source``, with ``data``/``train``/``run``),
    resuming without ``--config`` (``config`` None) continues exactly that recipe; with
    ``--config``, its data/train/run values apply (e.g. a lower learning rate for a cool-down).
    """
    torch.set_num_threads(threads)
    rdir = resolve_run_dir(cfg.run, model, run_dir)
    state = open_run(rdir / CHECKPOINT, resume)
    if state is not None and config is None and "config_source" in state:
        cfg = dataclasses.replace(cfg, model=model_class.from_dict(state["model_config"]),
                                  data=state["data"], train=state["train"], run=state["run"],
                                  source=state["config_source"])
    elif state is not None and model_class.from_dict(state["model_config"]) != cfg.model:
        raise StrataError(f"{config or 'the default recipe'}: its model section differs from the checkpoint's in {rdir}; "
                          "only the data/train/run sections may change on resume")
    rdir.mkdir(parents=True, exist_ok=True)
    return cfg, rdir, state


def warmup_cosine(step: int, *, lr: float, lr_final: float, steps: int, warmup: int = 0,
                  cosine_start: int = 0) -> float:
    """Learning rate at ``step``: linear warmup over ``warmup`` steps, then a cosine from ``lr`` down to
    ``lr_final``, which it reaches at ``steps`` (the cosine's clock starts at ``cosine_start``), constant after."""
    if step < warmup:
        return lr * (step + 1) / warmup
    frac = min((step - cosine_start) / max(steps - cosine_start, 1), 1.0)
    return lr_final + 0.5 * (lr - lr_final) * (1 + math.cos(math.pi * frac))


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically: a kill mid-write leaves the previous checkpoint intact."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    """Load our own checkpoint; ``weights_only`` refuses arbitrary pickled objects."""
    if not path.is_file():
        raise StrataError(f"no checkpoint at {path}; start without --resume, or point --run-dir (or the "
                          "recipe's run.dir, or STRATA_TRAIN_DIR) at the run")
    return torch.load(path, map_location="cpu", weights_only=True)


def open_run(ckpt_path: Path, resume: bool) -> dict | None:
    """The checkpoint to resume from (None for a new run); refuses to overwrite a run silently."""
    if ckpt_path.exists() and not resume:
        raise StrataError(f"{ckpt_path.parent} already holds a run; pass --resume to continue it or choose another run dir")
    return load_checkpoint(ckpt_path) if resume else None


def write_log(log: IO[str], rec: dict, bar: Any) -> None:
    """Append one record to a run's log.jsonl; in the background (no progress bar) also print it."""
    log.write(json.dumps(rec) + "\n")
    log.flush()
    if bar is None:
        print(" ".join(f"{k} {v}" for k, v in rec.items() if k != "time"), flush=True)


def restore(state: dict | None, net: torch.nn.Module, opt: torch.optim.Optimizer) -> tuple[int, float]:
    """Load a checkpoint's ``model`` and ``optimizer`` into ``net`` and ``opt``; returns (step, seconds
    trained so far) — (0, 0.0) for a new run (``state`` None). Random states are each trainer's own."""
    if state is None:
        return 0, 0.0
    net.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    return int(state["step"]), float(state.get("train_seconds", 0.0))


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, lr: float, *, grad_clip: float | None = None) -> None:
    """One training step of every trainer: backpropagate ``loss`` and step ``opt`` at learning rate
    ``lr`` (times a param group's ``lr_scale``, if it has one), with the gradients' global norm
    clipped to ``grad_clip`` first if given."""
    for group in opt.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip is not None:
        torch.nn.utils.clip_grad_norm_([p for group in opt.param_groups for p in group["params"]], grad_clip)
    opt.step()


@contextlib.contextmanager
def evaluating(net: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``net`` in eval mode for a held-out measure, back in training mode after."""
    net.eval()
    try:
        yield net
    finally:
        net.train()


def progress_bar(step: int, total: int | None) -> Any:
    """A tqdm bar (loss, it/s) when attached to a terminal; None in the background."""
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(initial=step, total=total, unit="step", dynamic_ncols=True)


class RunBook:
    """The training loop's bookkeeping (see the module docstring); made by :func:`run_book`."""

    def __init__(self, log: IO[str], bar: Any, checkpoint: Callable[[], None], checkpoint_minutes: float,
                 max_minutes: float | None):
        self.log, self.bar, self._checkpoint = log, bar, checkpoint
        self.checkpoint_s = checkpoint_minutes * 60
        self.max_s = None if max_minutes is None else max_minutes * 60
        self.stopped = False
        self.t_start = self.t_ckpt = self.t_log = time.time()
        self.loss_sum, self.n, self.paused_s = 0.0, 0, 0.0

    def running(self, step: int, max_steps: int | None) -> bool:
        """False once a signal arrived, or ``step`` reached ``max_steps``, or the time is up."""
        if self.stopped or (max_steps is not None and step >= max_steps):
            return False
        return self.max_s is None or time.time() - self.t_start <= self.max_s

    def add(self, step: int, loss: float) -> None:
        """Count one finished step (``step`` is its number, 1-based); a non-finite loss stops the run."""
        if not math.isfinite(loss):
            raise StrataError(f"loss became {loss} at step {step}; lower train.lr and resume from the checkpoint")
        self.loss_sum, self.n = self.loss_sum + loss, self.n + 1
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
        if time.time() - self.t_ckpt > self.checkpoint_s:
            self._checkpoint()
            self.t_ckpt = time.time()

    def write(self, step: int, lr: float, **extra: Any) -> dict:
        """One log line: mean loss and steps/s since the last line, ``lr`` and ``extra`` (held-out measures)."""
        now = time.time()
        rec = {"step": step, "loss": round(self.loss_sum / max(self.n, 1), 5),
               "it_s": round(self.n / max(now - self.t_log - self.paused_s, 1e-9), 3), "lr": lr, **extra,
               "time": round(now)}
        write_log(self.log, rec, self.bar)
        self.t_log, self.loss_sum, self.n, self.paused_s = time.time(), 0.0, 0, 0.0
        return rec

    def log_step(self, step: int, lr: float, evaluate: Callable[[], dict[str, Any]] | None = None, *, every: int,
                 eval_every: int | None = None, last: int | None = None, **extra: Any) -> None:
        """The logging cadence every trainer shares, after step ``step`` (1-based).

        A log line (:meth:`write`, with ``extra``) every ``every`` steps; every ``eval_every``
        steps and at ``last`` (the run's final step) also the held-out measures ``evaluate()``
        returns, computed :meth:`aside` (not counted in steps/s).
        """
        due = evaluate is not None and eval_every is not None and (step % eval_every == 0 or step == last)
        if step % every == 0 or due:
            if due:
                with self.aside():
                    extra |= evaluate()  # type: ignore[misc]
            self.write(step, lr, **extra)

    @contextlib.contextmanager
    def aside(self) -> Iterator[None]:
        """Work that is not training (a sample grid, a held-out evaluation): not counted in steps/s."""
        t = time.time()
        try:
            yield
        finally:
            self.paused_s += time.time() - t


@contextlib.contextmanager
def run_book(rdir: Path, *, step: int, total: int | None, checkpoint: Callable[[], None],
             checkpoint_minutes: float, max_minutes: float | None = None) -> Iterator[RunBook]:
    """Open ``rdir/log.jsonl`` and hand out the loop's :class:`RunBook`.

    SIGTERM and SIGINT finish the current step and leave the loop (``book.running`` turns False);
    an exception in the loop still checkpoints the steps done; leaving the block normally writes
    the final checkpoint.
    """
    bar = progress_bar(step, total)
    with open(rdir / "log.jsonl", "a", encoding="utf-8") as log:
        book = RunBook(log, bar, checkpoint, checkpoint_minutes, max_minutes)

        def on_signal(signum: int, frame: Any) -> None:
            book.stopped = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        try:
            yield book
        except BaseException:
            checkpoint()
            raise
    checkpoint()
