"""The shipped text-image scorer: the registry finds it, and it tells a red circle from a blue square."""

from __future__ import annotations

import numpy as np
import pytest

from strata.media.image import Image
from strata.models.builtin import REPO_WEIGHTS
from strata.models.registry import ModelRegistry
from strata.ops.select import select

SHIPPED = REPO_WEIGHTS / "scorer"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("one_torch_thread"),
    pytest.mark.skipif(not (SHIPPED / "model.safetensors").is_file(), reason="no shipped scorer (weights/scorer)"),
]


def test_shipped_scorer_agrees_with_the_obvious_prompt(monkeypatch) -> None:
    from strata.models.builtin import register_weights_folder_models

    monkeypatch.delenv("STRATA_SCORER_MODEL", raising=False)
    registry = ModelRegistry()
    register_weights_folder_models(registry)
    scorer = registry.load("image-text-score", {})
    yy, xx = np.mgrid[0:64, 0:64]
    disc = np.zeros((64, 64, 4), np.float32)
    disc[(xx - 32) ** 2 + (yy - 32) ** 2 < 22**2] = (0.9, 0.1, 0.1, 1)
    square = np.zeros((64, 64, 4), np.float32)
    square[10:54, 10:54] = (0.1, 0.3, 0.9, 1)
    red, blue = scorer.score([disc, square], "red circle"), scorer.score([disc, square], "blue square")
    assert red[0] > red[1] and blue[1] > blue[0]
    np.testing.assert_array_equal(scorer.score([disc, square], "red circle"), red)  # deterministic
    candidates = [Image(square), Image(disc)]
    assert select(candidates, prompt="red circle", loaded_model=scorer)["best"] is candidates[1]
    assert select(candidates, prompt="blue square", loaded_model=scorer)["best"] is candidates[0]
