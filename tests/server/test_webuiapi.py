"""The ``webuiapi`` client (AUTOMATIC1111's Python client), unchanged, against a real uvicorn
server on loopback — with stand-in generative ops, and against the built-in pipeline on a tiny model."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import PIL.Image
import numpy as np
import pytest

from server_helpers import FAKE_GENERATORS, TOKEN, fake_registry, serve_in_thread
from strata.server import ServerConfig, create_app
from strata.store import Store

webuiapi = pytest.importorskip("webuiapi")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[int]:
    """A token-protected server on a free loopback port."""
    app = create_app(Store(tmp_path / "store"), token=TOKEN, models=fake_registry(tmp_path),
                     generators=FAKE_GENERATORS, config=ServerConfig(poll_s=0.05, heartbeat_s=0.05))
    with serve_in_thread(app) as port:
        yield port


def client(port: int) -> "webuiapi.WebUIApi":
    # A1111's --api-auth is HTTP Basic; strata takes the token as the password
    return webuiapi.WebUIApi(host="127.0.0.1", port=port, username="any", password=TOKEN)


def test_txt2img_and_img2img_with_the_webuiapi_client(live_server):
    api = client(live_server)
    result = api.txt2img(prompt="a red apple", seed=1234, steps=2, batch_size=2, cfg_scale=4)
    assert len(result.images) == 2 and result.info["all_seeds"] == [1234, 1235]
    params = result.images[0].info["parameters"]
    assert "a red apple" in params and "Seed: 1234" in params

    init = result.images[0].convert("RGB")
    edited = api.img2img(images=[init], prompt="a green apple", seed=77, denoising_strength=0.5)
    assert len(edited.images) == 1 and "a green apple" in edited.images[0].info["parameters"]
    assert "Seed: 77" in edited.images[0].info["parameters"]

    mask = PIL.Image.new("L", init.size, 0)
    mask.paste(255, (0, 0, init.size[0] // 2, init.size[1]))
    inpainted = api.img2img(images=[init], mask_image=mask, prompt="a bite", seed=5, denoising_strength=1.0)
    assert "a bite" in inpainted.images[0].info["parameters"]

    assert {"DPM++ 2M", "DPM++ 2M Karras", "Euler", "Euler a", "DDIM"} <= {s["name"] for s in api.get_samplers()}
    assert api.get_sd_models()[0]["model_name"] == "fake-t2i"
    assert api.get_progress()["state"]["job_count"] == 0


def test_wrong_password_is_refused(live_server):
    api = webuiapi.WebUIApi(host="127.0.0.1", port=live_server, username="any", password="not-the-token-at-all")
    with pytest.raises(RuntimeError, match="401"):
        api.txt2img(prompt="x")


def test_webuiapi_against_the_built_in_pipeline(tmp_path: Path, monkeypatch):
    """No stand-ins: the real generation ops and pipeline, on a tiny random built-in model."""
    import torch

    from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel
    from strata.models.registry import default_registry, reset_default_registry

    tiny = ImageDiffusionConfig(block_channels=(16, 32), attention_levels=(1,), attention_heads=2, text_tokens=8,
                                inpaint=True)
    ImageDiffusionModel.random(tiny, seed=0).save_pretrained(tmp_path / "model")
    monkeypatch.setenv("STRATA_IMAGE_MODEL", str(tmp_path / "model"))
    monkeypatch.setenv("STRATA_WATERMARK", "0")
    torch.set_num_threads(1)
    reset_default_registry()
    try:
        app = create_app(Store(tmp_path / "store"), token=TOKEN, models=default_registry(),
                         config=ServerConfig(poll_s=0.05, heartbeat_s=0.05))
        with serve_in_thread(app) as port:
            api = client(port)
            result = api.txt2img(prompt="a red apple", seed=21, steps=2, batch_size=2, cfg_scale=4, sampler_name="DDIM")
            assert len(result.images) == 2 and result.info["all_seeds"] == [21, 22]
            assert result.images[0].size == (64, 64) and "Seed: 21" in result.images[0].info["parameters"]
            edited = api.img2img(images=[result.images[0]], prompt="a green apple", seed=3, steps=4,
                                 denoising_strength=0.5)
            assert edited.images[0].size == (64, 64) and "a green apple" in edited.images[0].info["parameters"]
            # An A1111 mask (white = repaint) goes to the built-in model's inpainting, at the image's size.
            photo = PIL.Image.fromarray(np.indices((48, 80)).sum(0).astype(np.uint8) * 2).convert("RGB")
            mask = PIL.Image.new("L", (80, 48), 0)
            mask.paste(255, (30, 10, 50, 30))
            inpainted = api.img2img(images=[photo], mask_image=mask, prompt="a bite", seed=5, steps=2,
                                    denoising_strength=1.0)
            got = np.asarray(inpainted.images[0].convert("RGB"))
            assert got.shape == (48, 80, 3) and "a bite" in inpainted.images[0].info["parameters"]
            assert (got[:, :16] == np.asarray(photo)[:, :16]).all()  # away from the mask: the original pixels
            assert api.get_sd_models()[0]["model_name"] == "strata-emoji-64"
    finally:
        reset_default_registry()
