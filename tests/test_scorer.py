"""The text-image scorer: model round trip, scores, registry, image.select with a prompt, and its trainer."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from strata.errors import ModelError, OpError, StrataError, StrataWarning
from strata.media.image import Image
from strata.models.registry import ModelEntry, ModelRegistry
from strata.models.scorer import Scorer, ScorerConfig, info_nce
from strata.ops.select import select
from strata.train import scorer as scorer_train
from tiny_emoji import shapes, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ScorerConfig(channels=(8, 16), embed_dim=32, text_dim=32)


class BagOfWords:
    """A stand-in for MiniLM: the sum of a fixed random vector per word (prompts sharing words are close)."""

    def __init__(self, dim: int = 32):
        self.dim = dim

    def encode(self, prompts: list[str]) -> torch.Tensor:
        def word(w: str) -> torch.Tensor:
            return torch.randn(self.dim, generator=torch.Generator().manual_seed(int.from_bytes(w.encode()[:7], "little")))

        return torch.stack([sum((word(w) for w in p.replace(",", " ").split()), torch.zeros(self.dim)) for p in prompts])


def _images(n: int = 4) -> list[np.ndarray]:
    return [im.astype(np.float32) / 255 for im in shapes(n, seed=3)]


def test_save_load_round_trip_keeps_scores_config_and_record(tmp_path: Path) -> None:
    scorer = Scorer.random(TINY, seed=0, text=BagOfWords())
    with torch.no_grad():  # non-trivial BatchNorm statistics must survive too
        scorer.net.image.features[0][1].running_mean.uniform_(-0.1, 0.1)
    scorer.save_pretrained(tmp_path / "s", dtype=torch.float32, extra={"training": {"step": 7}})
    again = Scorer.from_pretrained(tmp_path / "s", text=BagOfWords())
    assert again.cfg == TINY and again.extra == {"training": {"step": 7}}
    for k, v in scorer.net.state_dict().items():
        torch.testing.assert_close(again.net.state_dict()[k], v, check_dtype=False)
    np.testing.assert_allclose(again.score(_images(), "red disc"), scorer.score(_images(), "red disc"), atol=1e-6)
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    assert meta["model_id"] == "strata-scorer" and meta["scorer"]["channels"] == [8, 16]

    scorer.save_pretrained(tmp_path / "h")  # the shipped form: fp16, scores within fp16 rounding
    np.testing.assert_allclose(Scorer.from_pretrained(tmp_path / "h", text=BagOfWords()).score(_images(), "red disc"),
                               scorer.score(_images(), "red disc"), atol=5e-3)
    with pytest.raises(ModelError, match="no scorer in .*strata train scorer"):
        Scorer.from_pretrained(tmp_path / "missing")
    meta["scorer"]["width"] = 3
    (tmp_path / "s" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=r"unknown scorer config keys \['width'\]"):
        Scorer.from_pretrained(tmp_path / "s")


def test_score_is_the_cosine_of_the_two_embeddings() -> None:
    scorer = Scorer.random(TINY, seed=1, text=BagOfWords())
    images = _images(5)
    s = scorer.score(images, "blue square")
    assert s.shape == (5,) and s.dtype == np.float64 and np.all(np.abs(s) <= 1 + 1e-6)
    # reference: unit image vectors · unit projected text vector, computed from the parts
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
    premul = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], 1) * 2 - 1
    premul = torch.nn.functional.interpolate(premul, size=(32, 32), mode="area")
    with torch.no_grad():
        img = scorer.net.image(premul)
        txt = scorer.net.text_proj(BagOfWords().encode(["blue square"]))[0]
    ref = (img @ txt / img.norm(dim=1) / txt.norm()).numpy()
    np.testing.assert_allclose(s, ref, atol=1e-5)
    np.testing.assert_allclose(scorer.score(x, "blue square"), s, atol=1e-6)  # a tensor batch gives the same
    assert scorer.score(images[:1] * 2, "blue square")[0] == scorer.score(images[:1] * 2, "blue square")[1]
    with pytest.raises(ModelError, match="non-empty prompt"):
        scorer.score(images, "  ")
    with pytest.raises(ModelError, match=r"RGBA images \(H, W, 4\); got shape \(64, 64, 3\)"):
        scorer.score([images[0][..., :3]], "x")


def test_text_projection_starts_as_identity_and_info_nce_matches_the_formula() -> None:
    scorer = Scorer.random(ScorerConfig(channels=(8,)), seed=0)
    t = torch.randn(3, 384)
    torch.testing.assert_close(scorer.net.text_proj(t), t)
    torch.manual_seed(0)
    a, b = (torch.nn.functional.normalize(torch.randn(4, 8), dim=1) for _ in range(2))
    logits = 10 * a @ b.T
    ref = -0.5 * (logits.log_softmax(1).diag().mean() + logits.log_softmax(0).diag().mean())
    torch.testing.assert_close(info_nce(a, b, torch.tensor(10.0)), ref)
    # with the diagonal as the only positives, the multi-positive form is the same loss
    torch.testing.assert_close(info_nce(a, b, torch.tensor(10.0), positives=torch.eye(4, dtype=torch.bool)), ref)


# ---- registry and image.select ----------------------------------------------------------------


class FixedScorer:
    """A scorer whose cosines are given: what image.select does with them is then known."""

    def __init__(self, cosines: list[float]):
        self.cosines = np.array(cosines)

    def score(self, images: list[np.ndarray], prompt: str) -> np.ndarray:
        assert len(images) == len(self.cosines)
        return self.cosines


def _candidates() -> list[Image]:
    yy, xx = np.mgrid[0:64, 0:64]
    out = []
    for i, blur in enumerate((0, 3, 6)):  # sharp, soft, softer; shifted so none is a near-duplicate
        inside = ((xx - 20 - 12 * i) ** 2 + (yy - 32) ** 2) < (12 + 3 * i) ** 2
        rgba = np.zeros((64, 64, 4), np.float32)
        rgba[inside] = (0.8, 0.2 * i, 0.2, 1)
        rgba[inside & (xx % 6 < 3)] = (0.4, 0.1, 0.1, 1)
        if blur:
            import cv2

            rgba = cv2.GaussianBlur(rgba, (0, 0), blur)
        out.append(Image(rgba))
    return out


def test_select_ranks_by_the_prompt_when_a_scorer_is_given_and_by_quality_without() -> None:
    images = _candidates()
    plain = select(images, keep=3)
    assert plain["best"] is images[0]  # the sharp one, on technical measures
    scored = select(images, prompt="a soft disc", keep=3, loaded_model=FixedScorer([0.1, 0.2, 0.5]))
    assert scored["images"] == [images[2], images[1], images[0]]  # agreement wins at text_weight 0.8
    technical = select(images, prompt="a soft disc", text_weight=0.0, keep=3, loaded_model=FixedScorer([0.1, 0.2, 0.5]))
    assert technical["images"] == plain["images"]
    assert scored["sheet"].height > plain["sheet"].height  # a second label line: "text +0.500"
    with warnings.catch_warnings(record=True) as caught:  # a prompt but no scorer installed
        warnings.simplefilter("always")
        fallback = select(images, prompt="a soft disc", keep=3)
    assert fallback["images"] == plain["images"]
    assert any(issubclass(w.category, StrataWarning) and "no text-image scorer" in str(w.message) for w in caught)


def test_select_with_a_real_tiny_scorer_and_its_bad_inputs() -> None:
    images = _candidates()
    scorer = Scorer.random(TINY, seed=0, text=BagOfWords())
    out = select(images, prompt="red disc", keep=1, loaded_model=scorer)
    cos = scorer.score([im.pixels for im in images], "red disc")
    assert out["best"] is images[int(np.argmax(0.8 * np.argsort(np.argsort(cos)) / 2 + 0.2 * _tech(images)))]
    with pytest.raises(OpError, match=r"text_weight must be in \[0, 1\], got 1.5"):
        select(images, prompt="red disc", text_weight=1.5, loaded_model=scorer)
    with pytest.raises(OpError, match="no candidates"):
        select([], prompt="red disc", loaded_model=scorer)
    spec = select.__strata_node__
    with pytest.raises(Exception, match="text_weight"):
        spec.params_model(text_weight=-0.1)

    class Broken:
        def score(self, images, prompt):
            raise ModelError("the scorer takes RGBA images")

    with pytest.raises(OpError, match="RGBA") as err:
        select(images, prompt="x", loaded_model=Broken())
    assert err.value.param == "model"


def _tech(images: list[Image]) -> np.ndarray:
    from strata.ops.select import rank_candidates

    return np.array([c.score for c in rank_candidates(images, keep=3, max_hash_distance=0)])


def test_registry_gives_no_scorer_when_none_is_installed_and_the_scorer_when_one_is(tmp_path: Path, monkeypatch) -> None:
    empty = ModelRegistry()
    assert empty.identify("image-text-score", {}) is None and empty.load("image-text-score", {}) is None
    with pytest.raises(ModelError, match="unknown model 'mine'"):  # a named scorer must exist
        empty.identify("image-text-score", {"model": "mine"})
    with pytest.raises(ModelError, match="no installed model can do 'upscale'"):  # other capabilities stay required
        empty.identify("upscale", {})

    Scorer.random(TINY, seed=0).save_pretrained(tmp_path / "scorer")
    monkeypatch.setenv("STRATA_SCORER_MODEL", str(tmp_path / "scorer"))
    from strata.models.builtin import register_weights_folder_models

    registry = ModelRegistry()
    register_weights_folder_models(registry)
    info = registry.identify("image-text-score", {})
    assert info.id == "strata-scorer" and len(info.weights_hash) == 64
    assert isinstance(registry.load("image-text-score", {}), Scorer)
    assert isinstance(registry.entries["strata-scorer"], ModelEntry)


# ---- the trainer --------------------------------------------------------------------------------


def _recipe(tmp_path: Path, **data) -> Path:
    raw = yaml.safe_load(scorer_train.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["model"].update(channels=[8, 16], embed_dim=32, text_dim=32)
    raw["data"].update(dir=str(write_dataset(tmp_path / "data", n=16)), caption_variants=2, eval_names=2, **data)
    raw["train"].update(batch_size=8, warmup_steps=2, steps=40)
    raw["run"].update(dir=str(tmp_path / "run"), log_every=2, eval_every=4, checkpoint_minutes=60)
    path = tmp_path / "scorer.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_train_resume_export_and_the_trained_scorer_tells_discs_from_squares(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    rdir = scorer_train.train(config=recipe, max_steps=4, text_encoder=BagOfWords())
    assert scorer_train.load_checkpoint(rdir / "checkpoint.pt")["step"] == 4
    with pytest.raises(StrataError, match="already holds a run"):
        scorer_train.train(config=recipe, max_steps=4, text_encoder=BagOfWords())
    with pytest.raises(StrataError, match="data.holdout_source is 'noto' but the run in .* holds out"):
        scorer_train.train(config=recipe, resume=True, holdout_source="noto", text_encoder=BagOfWords())
    scorer_train.train(config=recipe, resume=True, text_encoder=BagOfWords())
    log = [json.loads(line) for line in (rdir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(2, 41, 2)) and all(r["loss"] > 0 for r in log)
    assert "retrieval_top5" in log[1] and "retrieval_top5" not in log[0]
    assert np.mean([r["loss"] for r in log[-3:]]) < np.mean([r["loss"] for r in log[:3]])

    rec = scorer_train.export(config=recipe, run_dir=rdir, out_dir=tmp_path / "export")
    assert rec["step"] == 40 and (tmp_path / "export" / "MODEL_CARD.md").read_text().startswith("# strata-scorer")
    scorer = Scorer.from_pretrained(tmp_path / "export", text=BagOfWords())
    images = [im.astype(np.float32) / 255 for im in shapes(16)]  # the training shapes: odd = disc, even = square
    s = scorer.score(images, "red disc") - scorer.score(images, "blue square")
    assert s[1::2].mean() > s[0::2].mean()


def test_trainer_bad_holdout_source_is_named(tmp_path: Path) -> None:
    with pytest.raises(StrataError, match="holdout_source 'kodak' is not in the dataset; its sources: noto"):
        scorer_train.train(config=_recipe(tmp_path), holdout_source="kodak", text_encoder=BagOfWords())
