"""The image trainer end to end on a tiny dataset: autoencoder latent, checkpoints, export, init-from."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from strata.errors import StrataError
from strata.models.image_autoencoder import AutoencoderConfig, PatchAutoencoder
from strata.models.image_diffusion import ImageDiffusionModel
from strata.models.image_pipeline import generate
from strata.train import image as image_train
from tiny_emoji import write_dataset


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _recipe(tmp_path: Path) -> Path:
    """The shipped recipe shrunk: tiny UNet on a tiny autoencoder's 4-channel latent."""
    ae_dir = tmp_path / "ae"
    torch.manual_seed(0)
    PatchAutoencoder(AutoencoderConfig(channels=16, decoder_blocks=1, latent_channels=4)).save(ae_dir, dtype=torch.float32)
    raw = yaml.safe_load(image_train.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["model"].update(latent="autoencoder", latent_depth=4, block_channels=[16, 32], attention_levels=[1],
                        attention_heads=2, text_tokens=8)
    raw["data"].update(dir=str(write_dataset(tmp_path / "data", n=16)), autoencoder_dir=str(ae_dir), caption_variants=2)
    raw["train"].update(batch_size=4, warmup_steps=2)
    raw["run"].update(dir=str(tmp_path / "run"), log_every=2, sample_every=1000, checkpoint_minutes=60,
                      sample_prompts=["red disc"], sample_count=1, sample_steps=2)
    path = tmp_path / "image.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_train_resume_export_and_init_from(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    rdir = image_train.train(config=recipe, max_steps=4)
    state = image_train.load_checkpoint(rdir / "checkpoint.pt")
    assert state["step"] == 4 and len(state["latent_encoder"]) == 64
    image_train.train(config=recipe, resume=True, max_steps=6)
    assert image_train.load_checkpoint(rdir / "checkpoint.pt")["step"] == 6
    log = [json.loads(line) for line in (rdir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4, 6] and all(r["loss"] > 0 for r in log)

    out = tmp_path / "export"
    image_train.export(run_dir=rdir, out_dir=out, config=recipe)
    model = ImageDiffusionModel.from_pretrained(out)
    assert model.autoencoder is not None and model.extra["training"]["step"] == 6
    ema = image_train.load_checkpoint(rdir / "checkpoint.pt")["ema"]
    for k, v in model.unet.state_dict().items():  # the export is the EMA, in fp16
        torch.testing.assert_close(v, ema[k].half().float())
    a, b = (generate(model, "red disc", count=1, seed=3, steps=2).images[0].to_uint8() for _ in range(2))
    assert (a == b).all()

    # A new machine without the checkpoint: start from the export; the step count continues.
    with pytest.raises(StrataError, match="not both"):
        image_train.train(config=recipe, resume=True, init_from=out)
    raw = yaml.safe_load(recipe.read_text())
    raw["run"]["dir"] = str(tmp_path / "run2")
    recipe.write_text(yaml.safe_dump(raw))
    rdir2 = image_train.train(config=recipe, init_from=out, max_steps=8)
    state2 = image_train.load_checkpoint(rdir2 / "checkpoint.pt")
    assert state2["step"] == 8 and state2["warmup_from"] == 6


def test_a_changed_autoencoder_refuses_to_resume(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    image_train.train(config=recipe, max_steps=1)
    # Another decoder of the same latents (decoder-only fine-tuning) is fine: the run goes on.
    ae = PatchAutoencoder.load(tmp_path / "ae")
    with torch.no_grad():
        for p in ae.decoder.parameters():
            p.mul_(0.5)
    ae.save(tmp_path / "ae", dtype=torch.float32)
    image_train.train(config=recipe, resume=True, max_steps=2)
    torch.manual_seed(1)  # different weights: the latents the run learned no longer mean the same
    PatchAutoencoder(AutoencoderConfig(channels=16, decoder_blocks=1, latent_channels=4)).save(tmp_path / "ae",
                                                                                               dtype=torch.float32)
    with pytest.raises(StrataError, match="not the one this run trained on"):
        image_train.train(config=recipe, resume=True, max_steps=3)


def test_lr_warms_up_stays_constant_and_a_cool_down_decays_it_linearly() -> None:
    tc = {"lr": 4e-4, "warmup_steps": 10}
    assert image_train.lr_at(0, tc) == pytest.approx(4e-5) and image_train.lr_at(9, tc) == pytest.approx(4e-4)
    assert image_train.lr_at(50_000, tc, cooldown_from=100) == 4e-4  # no cool-down in the recipe
    cool = {**tc, "cooldown_steps": 200, "lr_final": 2e-5}
    assert image_train.lr_at(1000, cool, cooldown_from=1000) == pytest.approx(4e-4)
    assert image_train.lr_at(1050, cool, cooldown_from=1000) == pytest.approx(4e-4 - 0.25 * (4e-4 - 2e-5))
    assert image_train.lr_at(1200, cool, cooldown_from=1000) == pytest.approx(2e-5)
    assert image_train.lr_at(5000, cool, cooldown_from=1000) == pytest.approx(2e-5)


def test_a_cool_down_recipe_decays_from_where_it_resumes_and_stops_at_its_end(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    raw = yaml.safe_load(recipe.read_text())
    raw["train"].update(cooldown_steps=4, lr_final=1e-5)
    cool = tmp_path / "cool.yaml"
    cool.write_text(yaml.safe_dump(raw))
    with pytest.raises(StrataError, match="cool.yaml: a cool-down recipe .* finishes an existing run; pass --resume"):
        image_train.train(config=cool)
    rdir = image_train.train(config=recipe, max_steps=2)
    image_train.train(config=cool, resume=True, max_steps=4)  # interrupted halfway through the decay
    assert image_train.load_checkpoint(rdir / "checkpoint.pt")["cooldown_from"] == 2
    image_train.train(config=cool, resume=True)  # no limit given: the cool-down's end stops it
    state = image_train.load_checkpoint(rdir / "checkpoint.pt")
    assert state["step"] == 6 and state["cooldown_from"] == 2
    lrs = {r["step"]: r["lr"] for r in map(json.loads, (rdir / "log.jsonl").read_text().splitlines())}
    lr = float(raw["train"]["lr"])
    # Each line logs the rate its last step used: steps 3 and 5 of the decay that starts at 2.
    assert lrs[4] == pytest.approx(lr + (1e-5 - lr) * 0.25) and lrs[6] == pytest.approx(lr + (1e-5 - lr) * 0.75)
