"""The image model's autoencoder: codec properties, save/load, and a tiny training run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from strata.errors import ModelError, StrataError
from strata.models.image_autoencoder import AutoencoderConfig, PatchAutoencoder, premultiply, unpremultiply
from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel
from strata.train import autoencoder as ae_train
from tiny_emoji import shapes as _shapes, write_dataset

TINY = AutoencoderConfig(channels=16, encoder_blocks=1, decoder_blocks=1, latent_channels=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path: Path, steps: int) -> Path:
    raw = yaml.safe_load(ae_train.DEFAULT_CONFIG.read_text(encoding="utf-8"))
    raw["model"] = TINY.__dict__
    raw["data"] = {"dir": str(write_dataset(tmp_path / "data")), "holdout": 8}
    raw["train"].update(steps=steps, batch_size=8, lr=0.003, lr_final=0.001)
    raw["run"].update(dir=str(tmp_path / "run"), log_every=5, eval_every=10)
    path = tmp_path / "ae.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_premultiply_round_trip_where_visible() -> None:
    rgba = torch.rand(3, 4, 8, 8)
    rgba[:, 3] = rgba[:, 3].clamp_min(0.05)
    torch.testing.assert_close(unpremultiply(premultiply(rgba)), rgba, atol=1e-5, rtol=1e-4)
    clear = torch.zeros(1, 4, 4, 4)
    assert torch.all(premultiply(clear) == -1)  # transparent = exactly -1: a clean background


def test_shapes_and_normalization() -> None:
    torch.manual_seed(0)
    ae = PatchAutoencoder(TINY).eval()
    x = premultiply(torch.from_numpy(_shapes(16)).permute(0, 3, 1, 2).float() / 255)
    raw = ae.encode_raw(x)
    assert raw.shape == (16, 4, 16, 16) and ae.decode_raw(raw).shape == x.shape
    ae.fit_normalization(raw)
    z = ae.encode(x)
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    torch.testing.assert_close(ae.decode(z), ae.decode_raw(raw), atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_and_clear_errors(tmp_path: Path) -> None:
    ae = PatchAutoencoder(TINY)
    ae.fit_normalization(torch.randn(4, 4, 16, 16) * 3 + 1)
    ae.save(tmp_path, dtype=torch.float32)
    back = PatchAutoencoder.load(tmp_path)
    assert back.cfg == TINY
    for (k, a), b in zip(ae.state_dict().items(), back.state_dict().values()):
        assert torch.equal(a, b), k
    with pytest.raises(ModelError, match="no autoencoder"):
        PatchAutoencoder.load(tmp_path / "nothing")
    meta = json.loads((tmp_path / "autoencoder.json").read_text())
    meta["autoencoder"]["channels"] = 24  # the weights no longer fit the config
    (tmp_path / "autoencoder.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="does not match"):
        PatchAutoencoder.load(tmp_path)


def test_tiny_training_run_learns_resumes_and_exports(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, steps=30)
    cfg = ae_train.AutoencoderTrainConfig.load(cfg_path)
    _, held = ae_train.split_dataset(cfg)
    torch.manual_seed(int(cfg.train["seed"]))
    before = ae_train.psnr(PatchAutoencoder(cfg.model).eval(), held)

    rdir = ae_train.train(config=cfg_path, max_minutes=None)
    state = ae_train.load_checkpoint(rdir / "checkpoint.pt")
    assert state["step"] == 30
    with pytest.raises(StrataError, match="--resume"):
        ae_train.train(config=cfg_path)
    # Resume with a longer schedule: continues from 30, not from 0.
    raw = yaml.safe_load(cfg_path.read_text())
    raw["train"]["steps"] = 40
    cfg_path.write_text(yaml.safe_dump(raw))
    ae_train.train(config=cfg_path, resume=True)
    assert ae_train.load_checkpoint(rdir / "checkpoint.pt")["step"] == 40
    log = [json.loads(line) for line in (rdir / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "heldout_psnr" in r] == [10, 20, 30, 40]

    out = tmp_path / "weights"
    rec = ae_train.export(config=cfg_path, out_dir=out)
    assert rec["heldout_psnr_fp32"] > before + 3  # it learned the shapes, measured on images it never saw
    assert abs(rec["heldout_psnr_fp16"] - rec["heldout_psnr_fp32"]) < 0.5
    assert Path(rec["sheet"]).is_file()
    ae = PatchAutoencoder.load(out)
    assert ae.scale.dtype == torch.float32 and not torch.all(ae.scale == 1)

    # The diffusion model uses it: latents have the autoencoder's depth, decoding gives RGBA in [0, 1].
    mcfg = ImageDiffusionConfig(latent="autoencoder", latent_depth=4, block_channels=(16, 32), attention_levels=(1,),
                                attention_heads=2, text_tokens=8)
    model = ImageDiffusionModel.random(mcfg, autoencoder=ae)
    lat = model.encode_images(torch.from_numpy(_shapes(2)).permute(0, 3, 1, 2).float() / 255)
    assert lat.shape == (2, 4, 16, 16)
    img = model.decode_latents(lat)
    assert img.shape == (2, 4, 64, 64) and 0 <= float(img.min()) and float(img.max()) <= 1
    model.save_pretrained(tmp_path / "model", dtype=torch.float32)
    loaded = ImageDiffusionModel.from_pretrained(tmp_path / "model")
    assert loaded.autoencoder is not None and len(loaded.weights_sha256) == 64
    with pytest.raises(ModelError, match="no autoencoder was given"):
        ImageDiffusionModel.random(mcfg)


def test_changed_model_section_refuses_to_resume(tmp_path: Path) -> None:
    cfg_path = _config(tmp_path, steps=2)
    ae_train.train(config=cfg_path)
    raw = yaml.safe_load(cfg_path.read_text())
    raw["model"]["channels"] = 24
    cfg_path.write_text(yaml.safe_dump(raw))
    with pytest.raises(StrataError, match="differs from the checkpoint"):
        ae_train.train(config=cfg_path, resume=True)


def test_re_saving_a_loaded_autoencoder_keeps_its_training_record(tmp_path: Path) -> None:
    PatchAutoencoder(TINY).save(tmp_path / "a", dtype=torch.float32, extra={"training": {"step": 7}})
    loaded = PatchAutoencoder.load(tmp_path / "a")
    loaded.save(tmp_path / "b", dtype=torch.float32)  # as ImageDiffusionModel.save_pretrained does
    assert json.loads((tmp_path / "b" / "autoencoder.json").read_text())["training"] == {"step": 7}


def test_decoder_only_fine_tuning_keeps_every_latent_and_improves_decoding(tmp_path: Path) -> None:
    first = _config(tmp_path, steps=20)
    ae_train.train(config=first)
    ae_train.export(config=first, out_dir=tmp_path / "start")
    start = PatchAutoencoder.load(tmp_path / "start")

    raw = yaml.safe_load(first.read_text())
    raw["train"].update(steps=30, init_from=str(tmp_path / "start"), freeze_encoder=True)
    raw["run"]["dir"] = str(tmp_path / "decoder-run")
    tuned_cfg = tmp_path / "decoder.yaml"
    tuned_cfg.write_text(yaml.safe_dump(raw))
    ae_train.train(config=tuned_cfg)
    rec = ae_train.export(config=tuned_cfg, out_dir=tmp_path / "tuned")
    tuned = PatchAutoencoder.load(tmp_path / "tuned")

    # The encoder and the latent normalization are bit for bit the ones it started from ...
    for name, value in start.state_dict().items():
        if not name.startswith("decoder."):
            assert torch.equal(value, tuned.state_dict()[name]), name
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in start.state_dict().items() if k.startswith("decoder."))
    # ... so a diffusion model's latents still mean the same, and they decode better.
    _, held = ae_train.split_dataset(ae_train.AutoencoderTrainConfig.load(tuned_cfg))
    assert rec["heldout_psnr_fp32"] > ae_train.psnr(start, held)

    raw["train"]["init_from"] = None
    tuned_cfg.write_text(yaml.safe_dump(raw))
    with pytest.raises(StrataError, match="freeze_encoder needs train.init_from"):
        ae_train.train(config=tuned_cfg, run_dir=tmp_path / "other")
