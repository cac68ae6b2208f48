"""The trainers' shared run machinery (strata.train.runs): schedule, recipe, book."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from strata.errors import StrataError
from strata.train.runs import (CHECKPOINT, Recipe, load_recipe, resolve_run_dir, run_book, save_checkpoint, start_run,
                               warmup_cosine)


def test_warmup_cosine_follows_its_formula() -> None:
    kw = dict(lr=1e-3, lr_final=1e-5, steps=100)
    assert warmup_cosine(0, **kw) == pytest.approx(1e-3)
    assert warmup_cosine(50, **kw) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half way down the cosine
    assert warmup_cosine(100, **kw) == warmup_cosine(500, **kw) == pytest.approx(1e-5)
    assert warmup_cosine(4, warmup=10, **kw) == pytest.approx(1e-3 * 5 / 10)  # linear warmup
    # the cosine's clock may start after the warmup (music) or at step 0 (scorer)
    after = warmup_cosine(10, warmup=10, cosine_start=10, **kw)
    from_zero = warmup_cosine(10, warmup=10, **kw)
    assert after == pytest.approx(1e-3) and from_zero == pytest.approx(1e-5 + 0.5 * 99e-5 * (1 + math.cos(math.pi * 0.1)))


def test_recipe_and_run_dir(tmp_path: Path, monkeypatch) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {}\ntrain: {}\n")
    with pytest.raises(StrataError, match=r"missing sections \['run'\]"):
        load_recipe(recipe, recipe, ("model", "train", "run"))
    with pytest.raises(StrataError, match="not found"):
        load_recipe(tmp_path / "nope.yaml", recipe, ("model",))
    raw, text = load_recipe(recipe, recipe, ("model", "train"))
    assert raw == {"model": {}, "train": {}} and text.startswith("model")
    monkeypatch.setenv("STRATA_TRAIN_DIR", str(tmp_path / "runs"))
    assert resolve_run_dir({}, "music") == tmp_path / "runs" / "music"
    assert resolve_run_dir({"dir": "~/x"}, "music") == Path.home() / "x"
    assert resolve_run_dir({"dir": "~/x"}, "music", tmp_path / "flag") == tmp_path / "flag"  # --run-dir wins


@dataclass
class _Model:
    width: int

    @classmethod
    def from_dict(cls, d: dict) -> "_Model":
        return cls(**d)


@dataclass
class _Recipe(Recipe[_Model]):
    extra: dict = field(default_factory=dict)


def test_recipe_parses_its_sections_and_keeps_the_text(tmp_path: Path) -> None:
    text = "model: {width: 8}\ndata: {}\nextra: {p: 0.5}\ntrain: {lr: 0.001}\nrun: {log_every: 5}\n"
    (tmp_path / "r.yaml").write_text(text)
    cfg = _Recipe.parse(tmp_path / "r.yaml", tmp_path / "none.yaml", _Model, extra=("extra",))
    assert cfg == _Recipe(_Model(8), {}, {"lr": 0.001}, {"log_every": 5}, text, {"p": 0.5})
    (tmp_path / "bad.yaml").write_text("model: {width: 8}\ndata: {}\ntrain: {}\nrun: {}\n")
    with pytest.raises(StrataError, match=r"missing sections \['extra'\]"):
        _Recipe.parse(tmp_path / "bad.yaml", tmp_path / "none.yaml", _Model, extra=("extra",))


def test_start_run_guards_the_run_dir_and_the_model(tmp_path: Path) -> None:
    run = {"dir": str(tmp_path / "run")}
    recipe = _Recipe(_Model(8), {}, {"lr": 1e-3}, run, "the first recipe")

    def start(cfg: _Recipe, *, resume: bool, config: Path | None = tmp_path / "r.yaml"):
        return start_run(cfg, "toy", model_class=_Model, config=config, resume=resume, threads=1, run_dir=None)

    cfg, rdir, state = start(recipe, resume=False)
    assert (cfg, rdir, state) == (recipe, tmp_path / "run", None) and rdir.is_dir()
    save_checkpoint(rdir / CHECKPOINT, {"model_config": {"width": 8}, "data": {}, "train": {"lr": 1e-3}, "run": run,
                                        "config_source": "the first recipe", "step": 5})
    with pytest.raises(StrataError, match="already holds a run; pass --resume"):
        start(recipe, resume=False)
    with pytest.raises(StrataError, match="r.yaml: its model section differs from the checkpoint's"):
        start(_Recipe(_Model(16), {}, {"lr": 1e-3}, run), resume=True)
    # --config on resume: its train values apply (a cool-down's lower lr), the model is checked.
    cooled = _Recipe(_Model(8), {}, {"lr": 1e-4}, run, "the cool-down")
    cfg, _, state = start(cooled, resume=True)
    assert cfg is cooled and state["step"] == 5
    # No --config: the recipe stored in the checkpoint continues.
    assert start(cooled, resume=True, config=None)[0] == recipe


def test_book_logs_checkpoints_and_sets_evaluations_aside(tmp_path: Path) -> None:
    saved: list[int] = []
    step = 0
    with run_book(tmp_path, step=0, total=None, checkpoint=lambda: saved.append(step), checkpoint_minutes=60) as book:
        while book.running(step, 4):
            time.sleep(0.01)
            step += 1
            book.add(step, float(step))
            if step == 2:
                with book.aside():
                    time.sleep(0.2)  # an evaluation: not training time
                book.write(step, 0.1, heldout=1.0)
    assert saved == [4]  # the final checkpoint
    rec = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[0])
    assert rec["step"] == 2 and rec["loss"] == 1.5 and rec["heldout"] == 1.0 and rec["it_s"] > 30
    # a crash inside the loop still checkpoints what was done
    with pytest.raises(ZeroDivisionError):
        with run_book(tmp_path, step=0, total=None, checkpoint=lambda: saved.append(-1), checkpoint_minutes=60):
            1 / 0
    assert saved[-1] == -1
    with pytest.raises(StrataError, match="loss became nan"):
        with run_book(tmp_path, step=0, total=None, checkpoint=lambda: None, checkpoint_minutes=60) as book:
            book.add(1, float("nan"))
    with run_book(tmp_path, step=0, total=None, checkpoint=lambda: None, checkpoint_minutes=60,
                  max_minutes=0.0) as book:
        time.sleep(0.01)
        assert not book.running(0, None)  # out of time


def _train_commands(app):  # noqa: ANN001, ANN202 - the click commands under `strata train`
    import typer.main

    return typer.main.get_command(app).commands["train"].commands.values()


def test_train_commands_share_their_options_and_report_errors_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from strata.train.cli import app

    shared = {"--config", "--resume", "--threads", "--max-minutes", "--run-dir", "--export"}
    extra = {"image": {"--max-steps", "--init-from"}, "autoencoder": set(), "music": {"--max-steps"},
             "upscale": {"--max-steps"}, "scorer": {"--max-steps", "--holdout-source"}}
    runner = CliRunner()
    for model, own in extra.items():
        command = next(c for c in _train_commands(app) if c.name == model)
        options = {o for p in command.params for o in p.opts}
        assert options == shared | own, model
        result = runner.invoke(app, ["train", model, "--config", str(tmp_path / "none.yaml")])
        assert result.exit_code == 1 and f"training config {tmp_path / 'none.yaml'} not found" in result.output, model


def test_log_step_logs_every_n_steps_and_evaluates_aside_at_its_cadence_and_the_last_step(tmp_path: Path) -> None:
    calls: list[int] = []
    step = 0

    def evaluate() -> dict:
        calls.append(step)
        return {"heldout": step / 10}

    with run_book(tmp_path, step=0, total=None, checkpoint=lambda: None, checkpoint_minutes=60) as book:
        for step in range(1, 12):
            book.add(step, 1.0)
            book.log_step(step, 1e-3, evaluate, every=4, eval_every=5, last=11, temperature=0.07)
    lines = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [4, 5, 8, 10, 11]
    assert calls == [5, 10, 11] and [r.get("heldout") for r in lines] == [None, 0.5, None, 1.0, 1.1]
    assert all(r["temperature"] == 0.07 for r in lines)


@pytest.mark.parametrize("grad_clip", [None, 0.05])
def test_optimizer_step_is_the_textbook_step(grad_clip: float | None) -> None:
    import torch

    from strata.train.runs import optimizer_step

    def make() -> tuple[torch.nn.Module, torch.optim.Optimizer]:
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1))
        opt = torch.optim.AdamW([{"params": net[0].parameters(), "lr_scale": 0.1}, {"params": net[2].parameters()}])
        return net, opt

    x, y = torch.randn(16, 4, generator=torch.Generator().manual_seed(1)), torch.ones(16, 1)
    ours, opt = make()
    ref, ref_opt = make()
    for lr in (1e-2, 5e-3, 1e-3):
        optimizer_step(opt, ((ours(x) - y) ** 2).mean(), lr, grad_clip=grad_clip)
        # the sequence every trainer wrote out before
        for group, scale in zip(ref_opt.param_groups, (0.1, 1.0)):
            group["lr"] = lr * scale
        loss = ((ref(x) - y) ** 2).mean()
        ref_opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), grad_clip)
        ref_opt.step()
    for a, b in zip(ours.parameters(), ref.parameters()):
        assert torch.equal(a, b)
    assert [g["lr"] for g in opt.param_groups] == [1e-3 * 0.1, 1e-3]
