"""Learned super-resolution: the tiled network, image.upscale through the engine, the SR data
builder, the trainer (tiny run, resume, export), and bad-input errors."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image as PILImage

from strata.errors import ModelError, OpError, StrataError, WorkflowError
from strata.media.image import Image
from strata.models.registry import default_registry, reset_default_registry
from strata.models.upscale import UpscaleConfig, UpscaleModel, UpscaleNet, tiled
from strata.ops.enhance import upscale
from strata.store import Store
from strata.train import data_sr
from strata.train import upscale as sr_train
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow
from strata.workflow.validate import validate

TINY = UpscaleConfig(channels=8, blocks=1)  # receptive radius 6 px


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def tiny() -> UpscaleModel:
    return UpscaleModel.random(TINY, seed=0)


def _rgba(h: int, w: int, seed: int = 0, *, opaque: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    px = rng.random((h, w, 4), dtype=np.float32)
    px[..., 3] = 1.0 if opaque else np.where(rng.random((h, w)) < 0.3, 0.0, px[..., 3])
    return px


# ---- tiling -------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [2, 4])
def test_tiled_equals_untiled_when_the_overlap_covers_the_receptive_field(tiny, scale):
    # Cross-fade band = overlap/2 = 6 and context beyond it = 6 = TINY's receptive radius, so
    # every pixel a tile contributes to was computed from the same inputs as untiled: only
    # float summation order can differ (1e-5 is ~400× below an 8-bit step).
    premul = _rgba(70, 53, seed=1)
    whole = tiny.upscale_premultiplied(premul, scale)
    parts = tiled(lambda a: tiny.upscale_premultiplied(a, scale), premul, scale, tile=24, overlap=12)
    assert parts.shape == whole.shape == (70 * scale, 53 * scale, 4)
    np.testing.assert_allclose(parts, whole, atol=1e-5)


def test_too_little_overlap_differs_but_cross_fade_weights_sum_to_one(tiny):
    premul = _rgba(40, 40, seed=2)
    whole = tiny.upscale_premultiplied(premul, 2)
    cut = tiled(lambda a: tiny.upscale_premultiplied(a, 2), premul, 2, tile=16, overlap=2)
    assert np.abs(cut - whole).max() > 1e-4  # the test above would catch a broken tiler
    # A map whose output is all ones: any weighting that does not sum to 1 shows up.
    ones = tiled(lambda a: np.ones((a.shape[0] * 4, a.shape[1] * 4, 1), np.float32), premul[..., :1], 4,
                 tile=16, overlap=6)
    np.testing.assert_allclose(ones, 1.0, rtol=0, atol=1e-6)  # float32 products of complementary ramps


def test_tiles_use_the_right_pixels():
    # nearest-neighbour repeat has no context: any tiling must reproduce it exactly
    array = _rgba(37, 29, seed=3)
    repeat = lambda a: np.repeat(np.repeat(a, 4, axis=0), 4, axis=1)  # noqa: E731
    for tile, overlap in ((8, 0), (10, 3), (16, 8)):
        np.testing.assert_allclose(tiled(repeat, array, 4, tile=tile, overlap=overlap), repeat(array), atol=1e-6)


def test_bad_tiling_is_refused():
    with pytest.raises(ModelError, match="overlap ≤ tile / 2"):
        tiled(lambda a: a, np.zeros((8, 8, 4), np.float32), 2, tile=8, overlap=5)


# ---- the model ------------------------------------------------------------------------------


def test_sizes_are_exact_and_alpha_is_handled(tiny):
    px = _rgba(13, 7, seed=4)
    for scale in (2, 4):
        out = tiny.upscale(px, scale, tile=32, overlap=8)
        assert out.shape == (13 * scale, 7 * scale, 4) and out.dtype == np.float32
        assert out.min() >= 0.0 and out.max() <= 1.0
    # Premultiplied in: a color under zero alpha cannot change anything.
    other = px.copy()
    hidden = px[..., 3] == 0
    other[hidden, :3] = 1.0 - other[hidden, :3]
    np.testing.assert_array_equal(tiny.upscale(other, 4), tiny.upscale(px, 4))
    # Opaque stays exactly opaque; a fully transparent image stays transparent black.
    assert np.all(tiny.upscale(_rgba(9, 9, opaque=True), 4)[..., 3] == 1.0)
    np.testing.assert_array_equal(tiny.upscale(np.zeros((9, 9, 4), np.float32), 2), 0.0)


def test_untrained_model_is_bicubic():
    # Tails start at zero, so a fresh network is exactly its bicubic base (Keys kernel, a = −0.75).
    net = UpscaleNet(TINY).eval()
    x = torch.rand(1, 4, 12, 10)
    with torch.no_grad():
        y = net(x, 2)
    # Reference: the cubic convolution kernel evaluated directly, separably, edges replicated.
    def keys(t: np.ndarray, a: float = -0.75) -> np.ndarray:
        t = np.abs(t)
        return np.where(t <= 1, (a + 2) * t**3 - (a + 3) * t**2 + 1,
                        np.where(t < 2, a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a, 0.0))

    def matrix(n: int, s: int) -> np.ndarray:
        m = np.zeros((n * s, n))
        for o in range(n * s):
            c = (o + 0.5) / s - 0.5
            for k in range(int(np.floor(c)) - 1, int(np.floor(c)) + 3):
                m[o, min(max(k, 0), n - 1)] += keys(c - k)
        return m

    ref = np.einsum("ij,bcjk,lk->bcil", matrix(12, 2), x.double().numpy(), matrix(10, 2))
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-5)


def test_save_and_load_round_trip(tiny, tmp_path):
    tiny.save_pretrained(tmp_path, dtype=torch.float32, extra={"training": {"step": 3}})
    back = UpscaleModel.from_pretrained(tmp_path)
    assert back.cfg == tiny.cfg and back.extra == {"training": {"step": 3}}
    px = _rgba(11, 11, seed=5)
    np.testing.assert_array_equal(back.upscale(px, 4), tiny.upscale(px, 4))
    with pytest.raises(ModelError, match="strata train upscale"):
        UpscaleModel.from_pretrained(tmp_path / "missing")
    with pytest.raises(ModelError, match="scales \\[2, 4\\], not 3"):
        tiny.upscale(px, 3)


# ---- the op ---------------------------------------------------------------------------------


def test_op_bad_inputs_have_clear_errors(tiny):
    img = Image(_rgba(8, 8))
    with pytest.raises(OpError, match="scale must be 2 or 4, got 3") as info:
        upscale(img, scale=3, loaded_model=tiny)
    assert info.value.param == "scale"
    with pytest.raises(OpError, match="over the output limit") as info:
        upscale(Image.solid(8193, 1, (0, 0, 0, 1)), scale=4, loaded_model=tiny)
    assert info.value.param == "scale"
    with pytest.raises(OpError, match="over the output limit"):  # 8400² pixels, each side under 32768
        upscale(Image.solid(2100, 2100, (0, 0, 0, 1)), scale=4, loaded_model=tiny)
    with pytest.raises(OpError, match="more than half of tile_px") as info:
        upscale(img, scale=2, tile_px=48, overlap_px=25, loaded_model=tiny)
    assert info.value.param == "overlap_px"
    with pytest.raises(OpError, match="strata train upscale --export"):
        upscale(img, scale=2)


@pytest.fixture
def registry(tiny, tmp_path, monkeypatch):
    tiny.save_pretrained(tmp_path / "model")
    monkeypatch.setenv("STRATA_UPSCALE_MODEL", str(tmp_path / "model"))
    reset_default_registry()
    yield default_registry()
    reset_default_registry()


def _workflow(**params) -> dict:
    return {"name": "up", "seed": 0, "nodes": [
        {"id": "photo", "op": "io.sample_image", "params": {"name": "coffee"}},
        {"id": "small", "op": "edit.resize", "inputs": {"image": "photo"},
         "params": {"width": 60, "height": 40, "method": "bicubic"}},
        {"id": "big", "op": "image.upscale", "inputs": {"image": "small"}, "params": {"tile_px": 48, "overlap_px": 12, **params}}],
        "outputs": {"big.png": "big"}}


def test_upscale_through_the_engine_uses_the_registered_model(registry, tiny, tmp_path):
    store = Store(tmp_path / "store")
    result = Executor(store, models=registry).run(parse_workflow(_workflow(scale=2)), out_dir=tmp_path / "out")
    assert result.ok, result.failed
    big = store.get_value(result.refs["big"]["image"])
    small = store.get_value(result.refs["small"]["image"])
    assert big.pixels.shape == (80, 120, 4)
    # the registry loaded fp16 weights: compare with the same weights rounded to fp16
    ref = UpscaleModel.from_pretrained(tmp_path / "model").upscale(small.pixels, 2, tile=48, overlap=12)
    np.testing.assert_array_equal(big.pixels, ref)
    assert registry.find("upscale").id == "strata-upscale"
    assert (tmp_path / "out" / "big.png").is_file()


def test_workflow_validation_and_missing_model(tmp_path, monkeypatch):
    with pytest.raises(WorkflowError, match="node 'big', 'scale': Input should be 2 or 4"):
        validate(parse_workflow(_workflow(scale=3)))
    monkeypatch.setenv("STRATA_UPSCALE_MODEL", str(tmp_path / "nothing-here"))
    reset_default_registry()
    try:
        result = Executor(Store(tmp_path / "s"), models=default_registry()).run(parse_workflow(_workflow()))
        assert "no installed model can do 'upscale'" in result.failed["big"]
    finally:
        reset_default_registry()


# ---- data and trainer -----------------------------------------------------------------------

TABLE = [{"name": f"THING {i}", "unified": f"1F3{i:02X}", "image": f"1f3{i:02x}.png", "short_name": f"thing{i}",
          "short_names": [f"thing{i}"], "category": "Objects", "subcategory": "misc"} for i in range(8)]


def _image_bytes(side: int, seed: int, fmt: str) -> bytes:
    """A disc of random color with a soft edge on transparency (structure for the net to learn)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side] / side
    alpha = np.clip((0.35 - np.hypot(yy - 0.5, xx - 0.5)) * side / 2, 0, 1)
    rgba = np.concatenate([np.broadcast_to(rng.random(3), (side, side, 3)) * (0.6 + 0.4 * yy[..., None]),
                           alpha[..., None]], axis=2)
    buf = io.BytesIO()
    PILImage.fromarray(np.rint(rgba * 255).astype(np.uint8)).save(buf, format=fmt,
                                                                   **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


@pytest.fixture(scope="module")
def sr_data(tmp_path_factory) -> Path:
    import tarfile

    root = tmp_path_factory.mktemp("sr")
    stems = [e["image"][:-4] for e in TABLE]
    balls = {"noto": {"package/emoji.json": json.dumps(TABLE).encode(),
                      **{f"package/img/google/64/{s}.png": _image_bytes(64, i, "PNG") for i, s in enumerate(stems)}},
             "twemoji": {f"package/img/twitter/64/{s}.png": _image_bytes(64, 10 + i, "PNG") for i, s in enumerate(stems)},
             "fluent3d": {f"package/assets/{s}.webp": _image_bytes(256, 20 + i, "WEBP") for i, s in enumerate(stems)}}

    def fetch(source, cache_dir):
        path = root / f"{source.key}.tgz"
        with tarfile.open(path, "w:gz") as tar:
            for name, blob in balls[source.key].items():
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
        return path

    counts = data_sr.build(out_dir=root / "data", fetch=fetch, cache_dir=root,
                           optout=data_sr.OptOut(codepoints={"1f307"}))
    assert counts == {"hr256": 7, "hr64": 14, "opted_out": 3, "heldout_images": 3, "heldout_groups": 1}
    return root / "data"


def test_sr_data_keeps_native_sizes_and_holds_out_groups_everywhere(sr_data):
    data = data_sr.load(sr_data)
    assert data.hr256.shape == (7, 256, 256, 4) and data.hr64.shape == (14, 64, 64, 4)
    held_groups = {r["group"] for r in data.rows if r["heldout"]}
    assert len(held_groups) == 1 and sum(r["heldout"] for r in data.rows) == 3  # one Fluent + Noto + Twemoji
    assert "1f307" not in {r["codepoint"] for r in data.rows}  # opted out in every source
    card = (sr_data / "card.md").read_text()
    assert "MIT" in card and "CC-BY-4.0" in card and "removed 3 images" in card
    with pytest.raises(StrataError, match="strata train upscale"):
        data_sr.load(sr_data.parent / "absent")


def _recipe(tmp_path: Path, sr_data: Path, **train) -> Path:
    raw = yaml.safe_load(sr_train.DEFAULT_CONFIG.read_text())
    raw["model"] = {"channels": 8, "blocks": 1, "scales": [2, 4]}
    raw["data"].update(dir=str(sr_data), flat_fraction=0.5)
    raw["degrade"].update(blur_p=0.5, noise_p=0.5, jpeg_p=0.5)
    raw["train"].update(batch_size=2, lr_patch=8, steps=4, **train)
    raw["run"].update(log_every=1, eval_every=2, checkpoint_minutes=100)
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_degrade_shrinks_with_the_named_kernel():
    hr = torch.rand(2, 4, 16, 16)
    hr[:, :3] *= hr[:, 3:]
    rng = np.random.default_rng(0)
    clean = {"downscale": ["area"], "blur_p": 0, "blur_sigma_lr": [0.2, 0.2], "noise_p": 0, "noise_sigma": [0, 0],
             "jpeg_p": 0, "jpeg_quality": [90, 90]}
    lr = sr_train.degrade(hr, 4, clean, rng)
    block_mean = hr.reshape(2, 4, 4, 4, 4, 4).mean(dim=(3, 5))
    np.testing.assert_allclose(lr.numpy(), np.rint(block_mean.numpy() * 255) / 255, atol=1e-6)  # 8-bit box filter
    noisy = sr_train.degrade(hr, 2, {**clean, "noise_p": 1, "noise_sigma": [0.02, 0.02], "jpeg_p": 1}, rng)
    assert noisy.shape == (2, 4, 8, 8) and bool((noisy[:, :3] <= noisy[:, 3:] + 1e-6).all())  # valid premultiplied
    with pytest.raises(StrataError, match="unknown method 'lanczos'"):
        sr_train.shrink(hr, 2, "lanczos")


def test_trainer_resumes_exactly_and_exports(sr_data, tmp_path):
    recipe = _recipe(tmp_path, sr_data)
    straight = sr_train.train(config=recipe, run_dir=tmp_path / "a")
    sr_train.train(config=recipe, run_dir=tmp_path / "b", max_steps=2)
    with pytest.raises(StrataError, match="--resume"):
        sr_train.train(config=recipe, run_dir=tmp_path / "b")
    resumed = sr_train.train(config=recipe, run_dir=tmp_path / "b", resume=True)
    a, b = (torch.load(d / sr_train.CHECKPOINT, weights_only=True) for d in (straight, resumed))
    assert a["step"] == b["step"] == 4
    for k in a["model"]:
        torch.testing.assert_close(a["model"][k], b["model"][k], rtol=0, atol=0)
    log = [json.loads(line) for line in (resumed / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4] and "heldout_psnr_x4" in log[-1] and "bicubic_psnr_x2" in log[1]

    record = sr_train.export(config=recipe, run_dir=resumed, out_dir=tmp_path / "weights")
    model = UpscaleModel.from_pretrained(tmp_path / "weights")
    assert model.cfg == UpscaleConfig(channels=8, blocks=1) and record["step"] == 4
    assert abs(record["heldout_psnr_x4_fp16"] - record["heldout_psnr_x4_fp32"]) < 0.1
    card = (tmp_path / "weights" / "MODEL_CARD.md").read_text()
    assert "Fluent Emoji 3D" in card and f"| ×4 | {record['heldout_psnr_x4_fp16']} |" in card
    assert model.upscale(np.zeros((4, 4, 4), np.float32), 4).shape == (16, 16, 4)


def test_heldout_psnr_matches_the_formula(sr_data):
    data = data_sr.load(sr_data)
    held = data.split(256)[1]
    net = UpscaleNet(TINY).eval()  # zero tails: the model is bicubic, so both numbers agree
    p = sr_train.heldout_psnr(net, data, held, 4)
    assert p["model"] == pytest.approx(p["bicubic"], abs=1e-6)
    hr = torch.from_numpy(sr_train.premultiplied(np.asarray(data.hr256[held[0]]))).permute(2, 0, 1)[None]
    lr = torch.round(sr_train.shrink(hr, 4, "bicubic") * 255) / 255
    up = F.interpolate(lr, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)
    mse = float(((up - hr) ** 2).mean())
    assert p["bicubic"] == pytest.approx(-10 * np.log10(mse), abs=1e-4)


# ---- shipped weights ------------------------------------------------------------------------


@pytest.mark.slow
def test_shipped_weights_beat_bicubic_on_a_photograph():
    from strata.models.builtin import upscale_model_dir
    from strata.ops.edit import resample

    if not (upscale_model_dir() / "model.safetensors").is_file():
        pytest.skip("no shipped upscaler weights (strata train upscale --export)")
    import skimage.data

    model = UpscaleModel.from_pretrained(upscale_model_dir())
    hr = Image.from_array(skimage.data.astronaut()[128:384, 128:384]).pixels
    lr = resample(hr, (64, 64), "bicubic")
    psnr = lambda a: -10 * np.log10(np.mean((a[4:-4, 4:-4, :3] - hr[4:-4, 4:-4, :3]) ** 2))  # noqa: E731
    learned = model.upscale(lr, 4)
    assert learned.shape == (256, 256, 4)
    assert psnr(learned) > psnr(resample(lr, (256, 256), "bicubic"))
