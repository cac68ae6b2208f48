"""The trainers' shared run machinery (strata.train.runs): schedule, recipe, book."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from strata.errors import StrataError
from strata.train.runs import load_recipe, run_book, run_dir, warmup_cosine


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
    assert run_dir({}, "music") == tmp_path / "runs" / "music"
    assert run_dir({"dir": "~/x"}, "music") == Path.home() / "x"


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
