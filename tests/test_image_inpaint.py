"""Inpainting with the built-in model family: widening, conditioning, the pipeline, the trainer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from strata.errors import ModelError, StrataError
from strata.media.image import Image
from strata.models.image_diffusion import (
    ImageDiffusionConfig,
    ImageDiffusionModel,
    inpaint_conditioning,
    latent_mask,
    widen_for_inpaint,
)
from strata.models.image_pipeline import generate, variation
from strata.train import image as image_train
from strata.train.masks import KINDS, check_mix, random_masks
from tiny_emoji import shapes, write_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(block_channels=(64, 64), attention_levels=(1,), attention_heads=2, text_tokens=8)


class _ConstText:
    """A stand-in text encoder (the MiniLM is not needed to test the mask input)."""

    def __init__(self, cfg: ImageDiffusionConfig):
        self.cfg = cfg

    def encode(self, prompts, warn_truncation=True, remember=False):
        n = self.cfg.text_tokens + self.cfg.pooled_repeats
        ctx = torch.stack([torch.full((n, self.cfg.text_dim), float(len(p)) / 10) for p in prompts])
        return ctx, torch.ones(len(prompts), n)


def _model(inpaint: bool, seed: int = 0, unet=None) -> ImageDiffusionModel:
    cfg = ImageDiffusionConfig(inpaint=inpaint, **TINY)
    model = ImageDiffusionModel.random(cfg, seed=seed) if unet is None else ImageDiffusionModel(cfg=cfg, unet=unet)
    model.text = _ConstText(cfg)
    return model


def _trained_like(model: ImageDiffusionModel) -> ImageDiffusionModel:
    """Give the mask channels non-zero weights (a trained inpainting model reads them)."""
    with torch.no_grad():
        model.unet.conv_in.weight[:, model.cfg.latent_channels:] = torch.randn_like(
            model.unet.conv_in.weight[:, model.cfg.latent_channels:], generator=torch.Generator().manual_seed(1)) * 0.2
    return model


def test_widening_keeps_the_text_to_image_output_exactly() -> None:
    base = _model(inpaint=False)
    cfg = ImageDiffusionConfig(inpaint=True, **TINY)
    from strata.models.image_diffusion import build_unet

    unet = build_unet(cfg).eval()
    unet.load_state_dict(widen_for_inpaint(base.unet.state_dict(), cfg))
    wide = _model(inpaint=True, unet=unet)
    assert unet.conv_in.weight.shape[1] == 2 * cfg.latent_channels + 1
    a = generate(base, "red disc", count=2, seed=5, steps=3).images
    b = generate(wide, "red disc", count=2, seed=5, steps=3).images
    for x, y in zip(a, b):
        np.testing.assert_allclose(x.pixels, y.pixels, atol=1e-5)
    with pytest.raises(ModelError, match="input channels"):
        widen_for_inpaint({"conv_in.weight": torch.zeros(8, 5, 3, 3)}, cfg)


def test_conditioning_hides_the_hole_and_marks_latent_cells() -> None:
    model = _model(inpaint=True)
    rgba = torch.from_numpy(shapes(2)).permute(0, 3, 1, 2).float() / 255
    mask = torch.zeros(2, 1, 64, 64)
    mask[:, :, 10:13, 40:50] = 1  # rows 10-12 touch latent rows 2 and 3
    cond = inpaint_conditioning(model, rgba, mask, 2)
    c = model.cfg.latent_channels
    assert cond.shape == (2, c + 1, 16, 16)
    lm = latent_mask(mask, model.cfg)[0, 0]
    assert lm.sum() == 2 * 3 and lm[2:4, 10:13].all()
    assert (cond[:, :c][:, :, lm.bool()] == 0).all()
    # What is under the hole does not reach the conditioning.
    changed = rgba.clone()
    changed[:, :, 10:13, 40:50] = torch.rand(2, 4, 3, 10)
    torch.testing.assert_close(inpaint_conditioning(model, changed, mask, 2), cond)
    # Text-to-image = keep nothing.
    full = inpaint_conditioning(model, None, None, 3)
    assert full.shape == (3, c + 1, 16, 16) and (full[:, :c] == 0).all() and (full[:, c] == 1).all()
    assert inpaint_conditioning(_model(inpaint=False), None, None, 1) is None


def test_inpaint_keeps_pixels_away_from_the_mask_and_fills_the_hole() -> None:
    model = _trained_like(_model(inpaint=True))
    rng = np.random.default_rng(0)
    pixels = np.concatenate([rng.random((96, 160, 3), dtype=np.float32), np.ones((96, 160, 1), np.float32)], axis=2)
    image = Image(pixels)
    mask = np.zeros((96, 160), np.float32)
    mask[30:60, 40:90] = 1
    out = variation(model, image, "a hat", mask=mask, strength=1.0, count=2, seed=3, steps=3)
    assert [im.size for im in out.images] == [(160, 96)] * 2 and out.seeds == [3, 4]
    far = np.ones((96, 160), bool)
    sigma = 0.75 * 160 / 64
    pad = int(4 * sigma) + 2
    far[30 - pad:60 + pad, 40 - pad:90 + pad] = False
    for im in out.images:
        assert (im.pixels[far] == pixels[far]).all()  # bit-exact outside the feather
        assert np.abs(im.pixels[30:60, 40:90] - pixels[30:60, 40:90]).mean() > 0.05  # the hole was repainted
    assert not np.array_equal(out.images[0].pixels, out.images[1].pixels)
    again = variation(model, image, "a hat", mask=mask, strength=1.0, count=1, seed=4, steps=3).images[0]
    np.testing.assert_allclose(again.pixels, out.images[1].pixels, atol=1e-4)  # image i depends on seed + i only
    assert variation(model, image, "a hat", mask=mask, strength=0.0).images[0] is image


def test_inpaint_refuses_bad_input() -> None:
    model = _model(inpaint=True)
    image = Image(np.ones((64, 64, 4), np.float32))
    with pytest.raises(ModelError, match="text-to-image only"):
        variation(_model(inpaint=False), image, "x", mask=np.ones((64, 64), np.float32))
    with pytest.raises(StrataError, match="must match"):
        variation(model, image, "x", mask=np.ones((32, 64), np.float32))
    with pytest.raises(StrataError, match="selects nothing"):
        variation(model, image, "x", mask=np.zeros((64, 64), np.float32))
    with pytest.raises(StrataError, match="strength"):
        variation(model, image, "x", mask=np.ones((64, 64), np.float32), strength=1.5)


def test_variation_and_generate_run_on_an_inpainting_model() -> None:
    model = _trained_like(_model(inpaint=True))
    g = generate(model, "sun", seed=2, steps=3).images[0]
    v = variation(model, g, "sun", strength=1.0, seed=2, steps=3).images[0]
    np.testing.assert_array_equal(g.pixels, v.pixels)  # strength 1 = generate, as for a text-to-image model


def test_random_masks_cover_every_kind_and_are_reproducible() -> None:
    alpha = torch.from_numpy(shapes(64)[..., 3].astype(np.float32) / 255)
    mix = check_mix({k: 1.0 for k in KINDS})
    a = random_masks(alpha, mix, torch.Generator().manual_seed(0))
    b = random_masks(alpha, mix, torch.Generator().manual_seed(0))
    assert a.shape == (64, 1, 64, 64) and torch.equal(a, b)
    cover = a.mean(dim=(1, 2, 3))
    assert (cover == 1).any() and ((cover > 0) & (cover < 1)).sum() > 40
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    with pytest.raises(StrataError, match="unknown kinds"):
        check_mix({"lasso": 1.0})
    with pytest.raises(StrataError, match="not all 0"):
        check_mix({"box": 0.0})


def test_trainer_starts_an_inpainting_run_from_a_text_to_image_export(tmp_path: Path) -> None:
    from test_train_image import _recipe

    recipe = _recipe(tmp_path)
    rdir = image_train.train(config=recipe, max_steps=2)
    export = tmp_path / "export"
    image_train.export(run_dir=rdir, out_dir=export, config=recipe)
    raw = yaml.safe_load(recipe.read_text())
    raw["model"]["inpaint"] = True
    raw["data"]["inpaint_masks"] = {"full": 0.5, "box": 0.5}
    raw["run"]["dir"] = str(tmp_path / "inpaint-run")
    inpaint_recipe = tmp_path / "inpaint.yaml"
    inpaint_recipe.write_text(yaml.safe_dump(raw))
    rdir2 = image_train.train(config=inpaint_recipe, init_from=export, max_steps=4)
    state = image_train.load_checkpoint(rdir2 / "checkpoint.pt")
    w = state["unet"]["conv_in.weight"]
    assert state["step"] == 4 and w.shape[1] == 2 * 4 + 1
    assert w[:, 4:].abs().sum() > 0  # the new channels learned something
    out = tmp_path / "export2"
    image_train.export(run_dir=rdir2, out_dir=out, config=inpaint_recipe)
    model = ImageDiffusionModel.from_pretrained(out)
    assert model.cfg.inpaint
    img = Image(shapes(1)[0].astype(np.float32) / 255)
    mask = np.zeros((64, 64), np.float32)
    mask[:, :20] = 1
    assert variation(model, img, "red disc", mask=mask, strength=1.0, steps=2).images[0].size == (64, 64)
    # a model section that differs in more than the mask input is refused
    raw["model"]["block_channels"] = [16, 16]
    inpaint_recipe.write_text(yaml.safe_dump(raw))
    raw["run"]["dir"] = str(tmp_path / "run3")
    inpaint_recipe.write_text(yaml.safe_dump(raw))
    with pytest.raises(StrataError, match="different architecture"):
        image_train.train(config=inpaint_recipe, init_from=export, max_steps=1)


# ---- the op, the registry and the CLI ------------------------------------------------------


@pytest.fixture
def inpaint_registry(tmp_path, monkeypatch):
    from strata.models.registry import default_registry, reset_default_registry

    directory = tmp_path / "tiny-inpaint"
    cfg = ImageDiffusionConfig(inpaint=True, block_channels=(16, 32), attention_levels=(1,), attention_heads=2,
                               text_tokens=8)
    _trained_like(ImageDiffusionModel.random(cfg, seed=0)).save_pretrained(directory)
    monkeypatch.setenv("STRATA_IMAGE_MODEL", str(directory))
    reset_default_registry()
    yield default_registry()
    reset_default_registry()


def _write_pictures(tmp_path: Path) -> tuple[Path, Path]:
    import PIL.Image

    rng = np.random.default_rng(1)
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray(rng.integers(0, 256, (72, 100, 3), dtype=np.uint8)).save(photo)
    mask = np.zeros((72, 100), np.uint8)
    mask[20:40, 30:60] = 255
    mask_path = tmp_path / "mask.png"
    PIL.Image.fromarray(mask).save(mask_path)
    return photo, mask_path


def test_the_built_in_model_inpaints_and_outpaints_from_the_cli(inpaint_registry, tmp_path) -> None:
    import PIL.Image
    from typer.testing import CliRunner

    from strata.cli import app
    from strata.provenance.metadata import read_provenance

    assert "inpaint" in inpaint_registry.find("inpaint").capabilities
    photo, mask = _write_pictures(tmp_path)
    store = tmp_path / "store"
    r = CliRunner().invoke(app, ["edit", "inpaint", str(photo), "a hat", "--mask", str(mask), "--steps", "2",
                                 "-n", "2", "--store", str(store), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    original = np.asarray(PIL.Image.open(photo).convert("RGB"))
    for i in range(2):
        path = tmp_path / "out" / f"photo_inpainted_{i}.png"
        got = np.asarray(PIL.Image.open(path).convert("RGB"))
        assert got.shape == original.shape
        assert (got[:8] == original[:8]).all() and (got[:, :16] == original[:, :16]).all()  # far from the mask
        assert (got[20:40, 30:60] != original[20:40, 30:60]).any()
        prov = read_provenance(path)
        assert prov is not None and "inpaint" in json.dumps(prov.model_dump(mode="json"))
    r = CliRunner().invoke(app, ["edit", "outpaint", str(photo), "grass", "--right", "28", "--bottom", "8",
                                 "--steps", "2", "--store", str(store), "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    wide = np.asarray(PIL.Image.open(tmp_path / "out" / "photo_outpainted_0.png").convert("RGBA"))
    assert wide.shape == (80, 128, 4)
    assert (wide[:60, :90, :3] == original[:60, :90]).all()  # the original area, away from the seam, is kept
    r = CliRunner().invoke(app, ["edit", "outpaint", str(photo), "grass", "--store", str(store)])
    assert r.exit_code != 0 and "nothing to outpaint" in r.output


def test_a_text_to_image_only_model_says_it_cannot_inpaint(tmp_path, monkeypatch) -> None:
    from strata.models.registry import default_registry, reset_default_registry

    directory = tmp_path / "tiny"
    ImageDiffusionModel.random(ImageDiffusionConfig(block_channels=(16, 32), attention_levels=(1,), attention_heads=2,
                                                    text_tokens=8), seed=0).save_pretrained(directory)
    monkeypatch.setenv("STRATA_IMAGE_MODEL", str(directory))
    reset_default_registry()
    try:
        with pytest.raises(ModelError, match="no installed model can do 'inpaint'") as err:
            default_registry().find("inpaint")
        assert "image_inpaint.yaml" in str(err.value) and "strata models add" in str(err.value)  # how to get one
    finally:
        reset_default_registry()
