"""The text-to-image pipeline with a tiny random UNet (fixed seed, 2 steps) and the real MiniLM."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time

import numpy as np
import pytest
import torch

from strata.errors import ModelError, StrataError, StrataWarning
from strata.media.image import Image
from strata.models.image_diffusion import (
    ImageDiffusionConfig,
    ImageDiffusionModel,
    TextEncoder,
    images_to_latents,
    latents_to_images,
)
from strata.models.image_pipeline import SAMPLERS, Progress, generate, variation
from strata.train.image import TrainConfig, ema_update, lr_at, training_step

TINY = ImageDiffusionConfig(block_channels=(16, 32), attention_levels=(1,), attention_heads=2, text_tokens=8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny tensors: one thread avoids OpenMP spin-waits that make them 10× slower on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def model(one_thread) -> ImageDiffusionModel:
    return ImageDiffusionModel.random(TINY, seed=0, text=TextEncoder(TINY))


def _bytes(result) -> list[bytes]:
    return [im.to_uint8().tobytes() for im in result.images]


def test_outputs_are_rgba_images_in_range(model: ImageDiffusionModel) -> None:
    res = generate(model, "red apple", count=3, seed=5, steps=2)
    assert res.seeds == [5, 6, 7]
    assert len(res.images) == 3
    for im in res.images:
        assert isinstance(im, Image) and im.pixels.shape == (64, 64, 4)
        assert im.pixels.min() >= 0.0 and im.pixels.max() <= 1.0


def test_same_seed_same_bytes_different_seed_differs(model: ImageDiffusionModel) -> None:
    a = generate(model, "red apple", count=2, seed=1, steps=2)
    b = generate(model, "red apple", count=2, seed=1, steps=2)
    assert _bytes(a) == _bytes(b)
    assert _bytes(a)[0] != _bytes(a)[1]
    # image i of a batch depends only on its own seed
    alone = generate(model, "red apple", count=1, seed=2, steps=2)
    np.testing.assert_allclose(alone.images[0].pixels, a.images[1].pixels, atol=2e-3)


def test_guidance_and_negative_prompt_change_the_result(model: ImageDiffusionModel) -> None:
    base = generate(model, "red apple", seed=0, steps=2, guidance=4.0)
    no_cfg = generate(model, "red apple", seed=0, steps=2, guidance=1.0)
    neg = generate(model, "red apple", negative_prompt="blue car", seed=0, steps=2, guidance=4.0)
    assert _bytes(base) != _bytes(no_cfg)
    assert _bytes(base) != _bytes(neg)


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_every_sampler_runs_and_reports_progress(model: ImageDiffusionModel, sampler: str) -> None:
    seen: list[Progress] = []
    res = generate(model, "dog", seed=0, steps=2, sampler=sampler, callback=seen.append)
    assert [p.step for p in seen] == [1, 2] and seen[-1].total == 2
    assert np.isfinite(res.images[0].pixels).all()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"steps": 0}, "steps must be between 1 and 200, got 0"),
        ({"guidance": -1.0}, "guidance must be between 0 and 30"),
        ({"count": 0}, "count must be between 1 and 64, got 0"),
        ({"size": 128}, "size must be 64"),
        ({"sampler": "plms"}, "unknown sampler 'plms'"),
        ({"seed": -3}, "seed must be ≥ 0, got -3"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(model: ImageDiffusionModel, kwargs: dict, message: str) -> None:
    with pytest.raises(StrataError, match=message):
        generate(model, "apple", **kwargs)


def test_an_unknown_setting_is_refused_by_name(model: ImageDiffusionModel) -> None:
    with pytest.raises(TypeError, match="stepz"):
        generate(model, "apple", stepz=3)


def test_defaults_are_the_shared_sampling_defaults(model: ImageDiffusionModel) -> None:
    from strata.models.samplers import DEFAULT_GUIDANCE, Sampling

    assert Sampling() == Sampling(negative_prompt="", count=1, seed=0, steps=20, guidance=DEFAULT_GUIDANCE,
                                  sampler="dpmpp")
    assert Sampling(seed=5, count=3).seeds == [5, 6, 7]
    explicit = generate(model, "apple", negative_prompt="", count=1, seed=0, steps=20, guidance=DEFAULT_GUIDANCE,
                        sampler="dpmpp").images[0]
    assert np.array_equal(generate(model, "apple").images[0].pixels, explicit.pixels)


def test_long_prompt_is_truncated_with_a_warning(model: ImageDiffusionModel) -> None:
    with pytest.warns(UserWarning, match="the text encoder keeps 6"):
        generate(model, "a very long prompt about a red apple on a table in the morning sun", steps=1)


def test_the_text_encoder_runs_on_onnx_runtime_close_to_pytorch_and_caches_its_graph(tmp_path, monkeypatch) -> None:
    import strata.models.onnx_runtime as onnx_runtime
    from strata.files import user_cache_dir

    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    prompts = ["red apple", "a shiny red apple, 3d", ""]
    enc = TextEncoder(TINY)
    assert enc.export_pending()
    # The first use says what the pause before step 0 is.
    heard: list[Progress] = []
    generate(ImageDiffusionModel.random(TINY, seed=0, text=enc), "red apple", steps=1, callback=heard.append)
    assert "exporting the text encoder" in (heard[0].message or "") and heard[0].step == 0 and not enc.export_pending()
    onnx_ctx, onnx_mask = enc.encode(prompts)
    (graph,) = user_cache_dir("text").glob("minilm-*.onnx")
    assert enc._model is None  # loaded only to export; the session replaced it
    # STRATA_UNET_RUNTIME=torch: PyTorch's MiniLM runs (the session is never asked), within 1e-4.
    monkeypatch.setenv("STRATA_UNET_RUNTIME", "torch")
    monkeypatch.setattr(enc, "_session", _NoRuns(enc._session))
    torch_ctx, torch_mask = enc.encode(prompts)
    assert torch.equal(onnx_mask, torch_mask) and enc._model is not None
    torch.testing.assert_close(onnx_ctx, torch_ctx, atol=1e-4, rtol=0)
    # Any batch and token count (the scorer pads to the longest prompt of a batch), int32 ids too.
    ids = enc.tokenizer(prompts, padding="longest", return_tensors="pt")
    eager = enc.token_states(ids["input_ids"], ids["attention_mask"])
    monkeypatch.undo()
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    on_onnx = enc.token_states(ids["input_ids"].int(), ids["attention_mask"].int())
    torch.testing.assert_close(on_onnx, eager, atol=1e-4, rtol=0)
    # Another process (a new encoder) opens the cached graph: no export, and PyTorch's MiniLM is never loaded.
    monkeypatch.setattr(onnx_runtime, "export_graph", lambda *a, **k: pytest.fail("exported again despite the cache"))
    again = TextEncoder(TINY)
    assert torch.equal(again.encode(prompts)[0], onnx_ctx) and again._model is None
    assert list(user_cache_dir("text").glob("minilm-*.onnx")) == [graph]


class _NoRuns:
    """A stand-in session that fails the test if it is run."""

    def __init__(self, session) -> None:
        self.session = session

    def run(self, *args, **kwargs):
        pytest.fail("the ONNX Runtime session ran although PyTorch was asked for")


def test_a_text_encoder_whose_graph_cannot_be_made_warns_once_and_runs_in_pytorch(tmp_path, monkeypatch) -> None:
    import strata.models.onnx_runtime as onnx_runtime

    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(onnx_runtime, "export_graph", broken)
    enc = TextEncoder(TINY)
    with pytest.warns(StrataWarning, match="exporter exploded.*runs in PyTorch instead"):
        ctx, _ = enc.encode(["red apple"])
    again, _ = enc.encode(["red apple"])  # remembered: no second attempt, no second warning
    assert calls == [1] and torch.equal(ctx, again) and not enc.export_pending()
    monkeypatch.setenv("STRATA_UNET_RUNTIME", "torch")
    assert torch.equal(enc.encode(["red apple"])[0], ctx)  # exactly PyTorch's result


def test_remembered_encodings_depend_on_the_prompt_alone(monkeypatch) -> None:
    import strata.models.image_diffusion as image_diffusion

    enc = TextEncoder(TINY)
    alone, alone_mask = enc.encode(["red apple"])  # encoded alone, not remembered
    ctx, mask = enc.encode(["", "red apple", ""], remember=True)
    assert torch.equal(ctx[1], alone[0]) and torch.equal(mask[1], alone_mask[0])
    assert torch.equal(ctx[0], ctx[2]) and torch.equal(ctx[0], enc.encode([""])[0][0])
    # A remembered prompt is not encoded again; the oldest leave once the limit is reached.
    calls = []
    real = enc._encode
    monkeypatch.setattr(enc, "_encode", lambda prompts: calls.append(prompts) or real(prompts))
    monkeypatch.setattr(image_diffusion, "REMEMBERED_PROMPTS", 2)
    again, _ = enc.encode(["red apple", ""], remember=True)
    assert calls == [] and torch.equal(again[0], alone[0])
    enc.encode(["cat"], remember=True)  # "red apple" is now the oldest
    enc.encode(["red apple"], remember=True)
    assert calls == [["cat"], ["red apple"]]
    # Truncation still warns for a remembered prompt.
    long = "a very long prompt about a red apple on a table in the morning sun"
    enc.encode([long], remember=True)
    with pytest.warns(UserWarning, match="the text encoder keeps 6"):
        enc.encode([long], remember=True)


def test_latent_round_trip_is_lossless_where_visible() -> None:
    rng = np.random.default_rng(0)
    rgba = torch.from_numpy(rng.random((2, 4, 64, 64), dtype=np.float32))
    rgba[:, 3] = torch.where(rgba[:, 3] < 0.2, 0.0, rgba[:, 3])  # some fully transparent pixels
    lat = images_to_latents(rgba, TINY)
    assert lat.shape == (2, 64, 16, 16) and lat.min() >= -1 and lat.max() <= 1
    back = latents_to_images(lat, TINY)
    visible = rgba[:, 3:4] > 0
    torch.testing.assert_close(back[:, 3], rgba[:, 3], atol=1e-6, rtol=0)
    torch.testing.assert_close(back[:, :3][visible.expand(-1, 3, -1, -1)],
                               rgba[:, :3][visible.expand(-1, 3, -1, -1)], atol=1e-4, rtol=0)
    transparent = torch.zeros(1, 4, 64, 64)
    assert torch.all(images_to_latents(transparent, TINY) == -1)  # clean background = exactly -1


def test_save_load_round_trip(tmp_path, model: ImageDiffusionModel) -> None:
    model.save_pretrained(tmp_path, dtype=torch.float32, extra={"training": {"step": 3}})
    loaded = ImageDiffusionModel.from_pretrained(tmp_path, text=model.text)
    assert loaded.cfg == TINY and loaded.extra["training"]["step"] == 3 and len(loaded.weights_sha256) == 64
    saved, back = model.unet.state_dict(), loaded.unet.state_dict()
    assert saved.keys() == back.keys() and all(torch.equal(saved[k], back[k]) for k in saved)
    # the loaded model runs on ONNX Runtime, the in-memory one eagerly: the same images within float error
    np.testing.assert_allclose(generate(loaded, "cat", steps=2).images[0].pixels,
                               generate(model, "cat", steps=2).images[0].pixels, atol=2e-3)
    with pytest.raises(ModelError, match="no image model in"):
        ImageDiffusionModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(ModelError, match="unknown image model config keys"):
        ImageDiffusionConfig.from_dict({"channels": 3})


def test_v_target_matches_the_formula() -> None:
    """x0 = sqrt(ᾱ)·x_t − sqrt(1−ᾱ)·v (Salimans & Ho 2022, eq. after (1)) for the training targets."""
    from diffusers import DDPMScheduler

    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(4, 64, 16, 16, generator=g), torch.randn(4, 64, 16, 16, generator=g)
    t = torch.tensor([0, 10, 500, 999])
    x_t, v = sched.add_noise(x0, noise, t), sched.get_velocity(x0, noise, t)
    ab = sched.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(ab.sqrt() * x_t - (1 - ab).sqrt() * v, x0, atol=1e-4, rtol=1e-4)


def test_training_step_learns_a_tiny_batch(model: ImageDiffusionModel) -> None:
    from diffusers import DDPMScheduler

    torch.manual_seed(0)
    unet = ImageDiffusionModel.random(TINY, seed=1).unet.train()
    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    x0 = images_to_latents(torch.rand(2, 4, 64, 64), TINY)
    ctx, mask = model.text_encoder().encode(["a", "b"])
    opt = torch.optim.AdamW(unet.parameters(), lr=3e-3)
    losses = []
    for i in range(8):
        loss = training_step(unet, sched, x0, ctx, mask, torch.Generator().manual_seed(i % 2), 5.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[-2:]) < np.mean(losses[:2])


def test_schedule_helpers_and_shipped_recipe() -> None:
    cfg = TrainConfig.load()
    assert lr_at(0, cfg.train) < lr_at(cfg.train["warmup_steps"], cfg.train) == cfg.train["lr"]
    a, b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)
    before = a.weight.clone()
    ema_update(a, b, step=0, decay=0.999)  # first update: decay (1+0)/(10+0) = 0.1
    torch.testing.assert_close(a.weight, 0.1 * before + 0.9 * b.weight)
    assert cfg.model.prediction_type == "v_prediction" and 0.05 <= cfg.data["prompt_dropout"] <= 0.2


class _OracleUNet(torch.nn.Module):
    """Predicts the exact v for one known clean latent: v = (√ᾱ·x_t − x0) / √(1−ᾱ)."""

    def __init__(self, target: torch.Tensor, alphas_cumprod: torch.Tensor):
        super().__init__()
        self.target, self.ab = target, alphas_cumprod

    def forward(self, x, t, encoder_hidden_states=None, encoder_attention_mask=None):
        from types import SimpleNamespace

        ab = self.ab[int(t)]
        return SimpleNamespace(sample=(ab.sqrt() * x - self.target) / (1 - ab).sqrt())


@pytest.mark.parametrize("sampler", sorted(SAMPLERS))
def test_samplers_recover_the_image_an_exact_model_implies(model: ImageDiffusionModel, sampler: str) -> None:
    """With a perfect v-predictor every sampler must land on the clean image: checks the
    schedule, prediction type, input scaling and final step of each scheduler configuration."""
    from diffusers import DDPMScheduler

    rgba = torch.rand(1, 4, 64, 64, generator=torch.Generator().manual_seed(0))
    rgba[:, 3] = 1.0
    sched = DDPMScheduler(beta_schedule=TINY.beta_schedule, prediction_type=TINY.prediction_type)
    oracle = ImageDiffusionModel(TINY, _OracleUNet(images_to_latents(rgba, TINY), sched.alphas_cumprod), text=model.text)
    out = generate(oracle, "anything", steps=20, sampler=sampler, guidance=1.0)
    np.testing.assert_allclose(out.images[0].pixels, rgba[0].permute(1, 2, 0).numpy(), atol=1e-5)


@pytest.fixture
def loaded(model, tmp_path, monkeypatch) -> ImageDiffusionModel:
    """The tiny model saved and loaded back (so it has a weights hash and runs on ONNX Runtime),
    with an empty cache of its own: other tests may have exported these weights."""
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    model.save_pretrained(tmp_path / "tiny", dtype=torch.float32)
    return ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)


def test_a_loaded_model_runs_on_onnx_runtime_close_to_eager_and_caches_its_graph(model, loaded, tmp_path,
                                                                                  monkeypatch) -> None:
    import strata.models.unet_onnx as unet_onnx
    from strata.files import user_cache_dir

    assert loaded.weights_sha256 and not list(user_cache_dir("unet").glob(f"unet-{loaded.weights_sha256[:16]}*"))
    # graphs of other weights or library versions: the export keeps only the most recently used
    user_cache_dir("unet").mkdir(parents=True, exist_ok=True)
    stale = [user_cache_dir("unet") / f"unet-old{i}.onnx" for i in range(unet_onnx.KEEP_GRAPHS)]
    for age, f in enumerate(stale, start=1):
        f.write_bytes(b"an old graph")
        os.utime(f, (time.time() - 3600 * age,) * 2)
    ctx = torch.randn(2, 12, 384)
    mask = torch.ones(2, 12)
    mask[0, 5:] = 0
    x = torch.randn(2, TINY.latent_channels, 16, 16)
    loaded.denoise(x, torch.tensor(500), ctx, mask)  # exported here, at batch 2, t = 500
    (cached,) = user_cache_dir("unet").glob(f"unet-{loaded.weights_sha256[:16]}*.onnx")
    assert sorted(user_cache_dir("unet").glob("unet-*.onnx")) == sorted([cached, *stale[:-1]])  # the oldest went
    # other timesteps (int and float), masks, batch sizes and token counts: one graph serves them all
    for t, m, b, n in ((10, mask, 2, 12), (999, torch.ones(2, 12), 2, 12), (37.5, mask, 2, 12),
                       (500, torch.ones(6, 12), 6, 12), (500, torch.ones(2, 7), 2, 7)):
        xb, cb = torch.randn(b, TINY.latent_channels, 16, 16), torch.randn(b, n, 384)
        eager = model.unet(xb, torch.tensor(t), encoder_hidden_states=cb, encoder_attention_mask=m).sample
        torch.testing.assert_close(loaded.denoise(xb, torch.tensor(t), cb, m), eager, atol=1e-4, rtol=1e-4)
    # image i of a batch is byte-identical to its seed generated alone (the UNet's rows do not
    # depend on the batch, and images are decoded one by one)
    batch = generate(loaded, "red apple", count=3, seed=4, steps=2)
    assert _bytes(batch) == [_bytes(generate(loaded, "red apple", count=1, seed=4 + i, steps=2))[0] for i in range(3)]
    # a second load opens the cached graph instead of exporting again
    monkeypatch.setattr(unet_onnx, "export_onnx", lambda *a: pytest.fail("exported again despite the cache"))
    again = ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)
    assert torch.equal(again.denoise(x, torch.tensor(3), ctx, mask), loaded.denoise(x, torch.tensor(3), ctx, mask))
    assert cached.is_file() and not list(cached.parent.glob(".*.tmp"))  # written under a temp name, then renamed
    # a damaged cache file is exported again
    monkeypatch.undo()
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    cached.write_bytes(cached.read_bytes()[:1000])
    healed = ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)
    assert torch.equal(healed.denoise(x, torch.tensor(3), ctx, mask), loaded.denoise(x, torch.tensor(3), ctx, mask))
    assert cached.stat().st_size > 1000
    # STRATA_UNET_RUNTIME=torch runs eagerly: exactly the module's output
    monkeypatch.setenv("STRATA_UNET_RUNTIME", "torch")
    eager = model.unet(x, torch.tensor(3), encoder_hidden_states=ctx, encoder_attention_mask=mask).sample
    assert torch.equal(ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text).denoise(
        x, torch.tensor(3), ctx, mask), eager)


def test_a_model_without_a_weights_hash_runs_eagerly_so_changed_weights_take_effect(model) -> None:
    """A model being trained changes its weights between sample grids: nothing may freeze them."""
    import copy

    unet = copy.deepcopy(model.unet)
    live = ImageDiffusionModel(cfg=TINY, unet=unet, text=model.text)
    x, ctx, mask = torch.randn(2, TINY.latent_channels, 16, 16), torch.randn(2, 12, 384), torch.ones(2, 12)
    before = live.denoise(x, torch.tensor(500), ctx, mask)
    with torch.no_grad():
        for p in unet.parameters():
            p.mul_(0.5)
    after = live.denoise(x, torch.tensor(500), ctx, mask)
    assert not torch.allclose(before, after)
    assert torch.equal(after, unet(x, torch.tensor(500), encoder_hidden_states=ctx, encoder_attention_mask=mask).sample)


def test_first_onnx_use_from_many_threads_exports_once(loaded, monkeypatch) -> None:
    """The server's workers may start generating together: one export, one session, no errors."""
    from concurrent.futures import ThreadPoolExecutor

    import strata.models.unet_onnx as unet_onnx

    exports: list[int] = []
    real = unet_onnx.export_onnx
    monkeypatch.setattr(unet_onnx, "export_onnx", lambda *a: exports.append(1) or real(*a))
    x, ctx, mask = torch.randn(2, TINY.latent_channels, 16, 16), torch.randn(2, 12, 384), torch.ones(2, 12)
    with ThreadPoolExecutor(4) as pool:
        outs = list(pool.map(lambda _: loaded.denoise(x, torch.tensor(500), ctx, mask), range(4)))
    assert len(exports) == 1 and all(torch.equal(o, outs[0]) for o in outs)


def test_the_onnx_cache_is_keyed_by_the_unet_config_too(model, tmp_path, monkeypatch) -> None:
    """Same weights under another config (here: attention heads) trace another graph."""
    import json

    from strata.files import user_cache_dir

    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    x, ctx, mask = torch.randn(2, TINY.latent_channels, 16, 16), torch.randn(2, 12, 384), torch.ones(2, 12)
    outs = []
    for heads in (2, 4):
        model.save_pretrained(tmp_path / "tiny", dtype=torch.float32)
        config = json.loads((tmp_path / "tiny" / "config.json").read_text())
        config["model"]["attention_heads"] = heads
        (tmp_path / "tiny" / "config.json").write_text(json.dumps(config))
        loaded = ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)
        eager = loaded.unet(x, torch.tensor(500), encoder_hidden_states=ctx, encoder_attention_mask=mask).sample
        outs.append(loaded.denoise(x, torch.tensor(500), ctx, mask))
        torch.testing.assert_close(outs[-1], eager, atol=1e-4, rtol=1e-4)
    assert len(list(user_cache_dir("unet").glob("*.onnx"))) == 2 and not torch.allclose(outs[0], outs[1])


def test_the_onnx_cache_key_ignores_diffusers_bookkeeping(model) -> None:
    """diffusers' ``_use_default_values`` lists its keys in set order, which differs between
    processes (string hashing): keyed on it, every process exported the graph again (~5 s)."""
    from strata.models.unet_onnx import cache_path

    config = dict(model.unet.config)
    shuffled = {**config, "_use_default_values": list(reversed(config.get("_use_default_values", ["a", "b"])))}
    assert cache_path("ab" * 32, config) == cache_path("ab" * 32, shuffled)
    assert cache_path("ab" * 32, config) != cache_path("ab" * 32, {**config, "attention_head_dim": 1})


def test_an_unwritable_cache_runs_the_export_from_memory(model, tmp_path, monkeypatch) -> None:
    (tmp_path / "not-a-folder").write_text("")
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "not-a-folder"))  # the cache folder cannot be made
    model.save_pretrained(tmp_path / "tiny", dtype=torch.float32)
    loaded = ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)
    x, ctx, mask = torch.randn(2, TINY.latent_channels, 16, 16), torch.randn(2, 12, 384), torch.ones(2, 12)
    eager = model.unet(x, torch.tensor(500), encoder_hidden_states=ctx, encoder_attention_mask=mask).sample
    torch.testing.assert_close(loaded.denoise(x, torch.tensor(500), ctx, mask), eager, atol=1e-4, rtol=1e-4)


def test_sampling_on_onnx_gives_torch_one_thread_and_onnx_runtime_the_budget(loaded, monkeypatch) -> None:
    seen: list[int] = []
    real = loaded.denoise
    monkeypatch.setattr(loaded, "denoise", lambda *a: seen.append(torch.get_num_threads()) or real(*a))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        generate(loaded, "red apple", steps=2)
        assert seen == [1, 1] and torch.get_num_threads() == 2  # restored after the loop
        assert loaded._runtime.session.get_session_options().intra_op_num_threads == 2
    finally:
        torch.set_num_threads(before)


def test_the_one_time_export_is_announced_before_the_first_step(model, loaded, tmp_path) -> None:
    # the export (~5 s on the shipped model) would otherwise be a silent stall at step 0
    seen: list[Progress] = []
    generate(loaded, "red apple", steps=2, callback=seen.append)
    assert [p.step for p in seen] == [0, 1, 2] and "ONNX Runtime" in seen[0].message
    assert all(p.message is None for p in seen[1:])
    seen.clear()
    generate(loaded, "red apple", steps=2, callback=seen.append)  # a session exists: nothing to say
    fresh = ImageDiffusionModel.from_pretrained(tmp_path / "tiny", text=model.text)
    generate(fresh, "red apple", steps=2, callback=seen.append)  # another process would open the cache
    assert [p.step for p in seen] == [1, 2, 1, 2]


# ---- a model that reads the guidance scale (guidance distillation) ------------------------------

GUIDED = dataclasses.replace(TINY, guidance_embedding=16, guidance_range=(1.0, 8.0))


@pytest.fixture(scope="module")
def guided(model) -> ImageDiffusionModel:
    """The tiny model with a guidance input whose projection is not zero (as after distillation)."""
    student = ImageDiffusionModel.random(GUIDED, seed=0, text=model.text)
    with torch.no_grad():
        student.unet.time_embedding.cond_proj.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
    return student


def test_a_zero_guidance_input_leaves_the_teacher_unchanged(model) -> None:
    from strata.models.image_diffusion import add_guidance_input, build_unet

    student = build_unet(GUIDED).eval()
    student.load_state_dict(add_guidance_input(model.unet.state_dict(), GUIDED))
    x, t = torch.randn(2, TINY.latent_channels, 16, 16), torch.tensor(300)
    ctx, mask = model.text_encoder().encode(["red apple", "cat"])
    wrapped = ImageDiffusionModel(GUIDED, student, text=model.text)
    torch.testing.assert_close(wrapped.denoise(x, t, ctx, mask, torch.tensor([7.5])), model.denoise(x, t, ctx, mask))


def _calls(m: ImageDiffusionModel, monkeypatch) -> list[tuple[int, float | None]]:
    """Record (batch, guidance passed) for every UNet call of ``m``."""
    calls: list[tuple[int, float | None]] = []
    original = type(m).denoise

    def spy(self, x, t, context, mask, guidance=None):
        calls.append((x.shape[0], None if guidance is None else float(guidance.reshape(-1)[0])))
        return original(self, x, t, context, mask, guidance)

    monkeypatch.setattr(type(m), "denoise", spy)
    return calls


def test_a_guidance_reading_model_takes_one_call_a_step_within_its_range(guided, monkeypatch) -> None:
    calls = _calls(guided, monkeypatch)
    one = generate(guided, "red apple", count=3, seed=1, steps=2, guidance=5.0)
    assert calls == [(3, 5.0), (3, 5.0)]
    calls.clear()
    generate(guided, "red apple", count=3, seed=1, steps=2, guidance=5.0, negative_prompt="blue", guidance_stop=1)
    assert calls == [(6, None), (6, None)]  # a negative prompt: the usual two calls (the model at w = 1)
    calls.clear()
    generate(guided, "red apple", count=3, seed=1, steps=2, guidance=20.0, guidance_stop=1)
    assert calls == [(6, None), (6, None)]  # beyond the scales it learned: two calls
    calls.clear()
    generate(guided, "red apple", count=1, seed=1, steps=2, guidance=1.0)
    assert calls == [(1, 1.0), (1, 1.0)]
    monkeypatch.undo()
    # the scale it reads changes the picture, and one call gives what the denoiser says at that scale
    other = generate(guided, "red apple", count=3, seed=1, steps=2, guidance=7.0)
    assert _bytes(one) != _bytes(other)


def test_guidance_stops_after_its_share_of_the_steps(model, monkeypatch) -> None:
    from strata.models.samplers import BUILTIN_GUIDANCE_STOP

    calls = _calls(model, monkeypatch)
    rows = {}
    for stop in (1.0, 0.5, 0.25, 0.0, None):
        calls.clear()
        rows[stop] = generate(model, "red apple", count=2, seed=3, steps=4, guidance=6.0, guidance_stop=stop)
        guided = math.ceil((BUILTIN_GUIDANCE_STOP if stop is None else stop) * 4)
        assert [b for b, _ in calls] == [4] * guided + [2] * (4 - guided), stop  # [unguided, prompt] rows, then prompt
    # No guided step is the plain conditional model: the same bytes as guidance 1.
    assert _bytes(rows[0.0]) == _bytes(generate(model, "red apple", count=2, seed=3, steps=4, guidance=1.0))
    assert len({tuple(_bytes(r)) for r in rows.values()}) == 4  # None is the default share, 0.5
    # Image-to-image counts the share over the steps it runs: strength 0.75 of 4 steps runs 3,
    # the first 2 of them guided at a stop of 0.5.
    calls.clear()
    variation(model, rows[1.0].images[0], "red apple", strength=0.75, steps=4, guidance=6.0, guidance_stop=0.5)
    assert [b for b, _ in calls] == [2, 2, 1]
    from strata.models.image_pipeline import guided_steps
    from strata.models.samplers import Sampling

    assert [guided_steps(Sampling(steps=10, guidance_stop=x)) for x in (0.3, 0.31, 0.7, 1.0)] == [3, 4, 7, 10]
    with pytest.raises(StrataError, match="guidance_stop must be between 0 and 1"):
        generate(model, "red apple", steps=2, guidance_stop=1.5)


def test_a_guidance_reading_model_runs_on_onnx_runtime_close_to_eager(guided, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))
    guided.save_pretrained(tmp_path / "guided", dtype=torch.float32)
    loaded = ImageDiffusionModel.from_pretrained(tmp_path / "guided", text=guided.text)
    assert loaded.runs_on_onnx()
    x, ctx, mask = torch.randn(3, TINY.latent_channels, 16, 16), torch.randn(3, 12, 384), torch.ones(3, 12)
    for scale in (1.0, 4.0, 8.0):
        torch.testing.assert_close(loaded.denoise(x, torch.tensor(400), ctx, mask, torch.tensor([scale])),
                                   guided.denoise(x, torch.tensor(400), ctx, mask, torch.tensor([scale])),
                                   atol=1e-4, rtol=1e-4)


def test_distillation_step_matches_its_formula(model, guided) -> None:
    """The loss against an independent computation: teacher's unguided and guided predictions in
    two separate calls, u + w·(c − u), min-SNR weights — from the same random draws."""
    from diffusers import DDPMScheduler

    from strata.models.image_diffusion import guidance_features
    from strata.train.image import GuidanceTeacher, distillation_step

    sched = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction")
    x0 = images_to_latents(torch.rand(3, 4, 64, 64), TINY)
    ctx, mask = model.text_encoder().encode(["red apple", "", "cat"])
    empty_ctx, empty_mask = model.text_encoder().encode([""])
    teacher = GuidanceTeacher(model.unet, (empty_ctx[0], empty_mask[0]), 1.0, 8.0)
    with torch.no_grad():
        loss = distillation_step(guided.unet, teacher, sched, x0, ctx, mask, torch.Generator().manual_seed(3), 5.0,
                                 GUIDED.guidance_embedding)
        g = torch.Generator().manual_seed(3)
        t = torch.randint(0, 1000, (3,), generator=g)
        noise = torch.randn(x0.shape, generator=g)
        w = 1.0 + 7.0 * torch.rand(3, generator=g)
        x_t = sched.add_noise(x0, noise, t)
        u = model.unet(x_t, t, encoder_hidden_states=empty_ctx.expand(3, -1, -1), encoder_attention_mask=empty_mask.expand(3, -1)).sample
        c = model.unet(x_t, t, encoder_hidden_states=ctx, encoder_attention_mask=mask).sample
        pred = guided.unet(x_t, t, encoder_hidden_states=ctx, encoder_attention_mask=mask,
                           timestep_cond=guidance_features(w, GUIDED.guidance_embedding)).sample
        snr = sched.alphas_cumprod[t] / (1 - sched.alphas_cumprod[t])
        weight = torch.clamp(snr, max=5.0) / (snr + 1)
        target = u + w.view(-1, 1, 1, 1) * (c - u)
        expected = (weight * ((pred - target) ** 2).mean(dim=(1, 2, 3))).mean()
    torch.testing.assert_close(loss, expected, atol=1e-5, rtol=1e-4)
    # the dropped prompt's target is the unguided prediction whatever its scale
    torch.testing.assert_close(target[1], u[1], atol=1e-5, rtol=1e-5)


def test_guidance_input_config_is_checked_and_left_out_of_older_configs() -> None:
    with pytest.raises(ModelError, match="even width"):
        dataclasses.replace(TINY, guidance_embedding=3)
    assert "guidance" not in TINY.to_json()  # what older strata versions read
    assert ImageDiffusionConfig.from_dict(json.loads(TINY.to_json())) == TINY
    assert ImageDiffusionConfig.from_dict(json.loads(GUIDED.to_json())) == GUIDED
