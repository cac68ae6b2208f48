"""Bring your own model: tiny random SD 1.5- and SDXL-style pipelines built here (no downloads),
registered with `strata models add`, run through a workflow, the CLI and /sdapi/v1/txt2img, and
compared byte for byte with the same diffusers pipeline called directly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import byo_tiny
import sd_single_file
from strata.cli import app
from strata.errors import ModelError, WorkflowError
from strata.models.registry import ModelRegistry, combined_hash, default_registry, reset_default_registry
from strata.models.user_models import load_user_models, models_file, registry_entry
from strata.provenance.metadata import read_provenance
from strata.store import Store
from strata.workflow.events import CollectSink, NodeProgress
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow

runner = CliRunner()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny random pipelines (diffusers folders), the same weights as original-layout single files
    ("sd15-file", "sdxl-file") with a folder of just their configs and tokenizers, and LoRAs; built
    once for the module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add spin-wait overhead
    root = tmp_path_factory.mktemp("byo")
    paths = {kind: root / kind for kind in ("sd15", "sdxl")}
    for kind, path in list(paths.items()):
        pipe = byo_tiny.build(kind, path)
        paths[f"{kind}-file"] = sd_single_file.save_single_file(pipe, root / f"{kind}.safetensors")
        paths[f"{kind}-config"] = sd_single_file.config_folder(path, root / f"{kind}-config")
    paths["inpaint"] = root / "inpaint"
    byo_tiny.build("sd15", paths["inpaint"], inpaint=True)
    paths["lora15"] = byo_tiny.lora_file("sd15", root / "lora15.safetensors")
    paths["loraxl"] = byo_tiny.lora_file("sdxl", root / "loraxl.safetensors")
    yield paths
    torch.set_num_threads(before)


@pytest.fixture
def config(tmp_path, monkeypatch):
    """A fresh STRATA_CONFIG (the user-model list lives there) and default registry."""
    monkeypatch.setenv("STRATA_CONFIG", str(tmp_path / "config"))
    monkeypatch.setenv("STRATA_SIGN", "0")
    reset_default_registry()
    yield tmp_path
    reset_default_registry()


def add(name, path, *extra):
    result = runner.invoke(app, ["models", "add", name, str(path), *map(str, extra)])
    reset_default_registry()
    return result


def direct(path, kind, *, sampler_cls, prompt, count, seed, steps, guidance, lora=None, scheduler_overrides=None,
           **extra):
    """The same pipeline called directly through diffusers (the reference)."""
    import diffusers

    cls = {"sd15": diffusers.StableDiffusionPipeline, "sdxl": diffusers.StableDiffusionXLPipeline,
           "inpaint": diffusers.StableDiffusionInpaintPipeline}[kind]
    pipe = load_direct(cls, path, kind)
    pipe.set_progress_bar_config(disable=True)
    pipe.scheduler = getattr(diffusers, sampler_cls).from_config(pipe.scheduler.config, **(scheduler_overrides or {}))
    if lora:
        pipe.load_lora_weights(str(lora), adapter_name="x")
    gens = [torch.Generator("cpu").manual_seed(seed + i) for i in range(count)]
    return pipe(prompt, num_images_per_prompt=count, num_inference_steps=steps, guidance_scale=guidance,
                generator=gens, output_type="np", **extra).images


def load_direct(cls, path, kind, config=None):
    """``cls`` from a pipeline folder, or from a single file with ``config`` (default: the test's
    config-only folder for ``kind``) — diffusers' own loaders, never strata's."""
    if path.is_dir():
        return cls.from_pretrained(path, local_files_only=True)
    config = config or path.parent / f"{kind}-config"
    extra = dict(safety_checker=None, feature_extractor=None, requires_safety_checker=False) if kind == "sd15" else {}
    return cls.from_single_file(str(path), config=str(config), local_files_only=True, **extra)


def workflow(model, **params):
    return parse_workflow({"name": "byo", "seed": 5, "nodes": [
        {"id": "gen", "op": "image.generate",
         "params": {"prompt": "a red apple", "count": 2, "steps": 3, "guidance": 5.0, "sampler": "Euler a",
                    "model": model, **params}}],
        "outputs": {"apple.png": "gen"}})


def add_source(name, tiny, source):
    """``strata models add`` a pipeline folder ("sd15") or a single file ("sd15-file", with the
    config-only folder as --config)."""
    kind = source.removesuffix("-file")
    extra = ["--config", str(tiny[f"{kind}-config"])] if source.endswith("-file") else []
    return add(name, tiny[source], *extra)


def png_rgb(want):
    """What a PNG of the float reference holds."""
    return np.clip(np.rint(want * 255), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("source", ["sd15", "sdxl", "sd15-file", "sdxl-file"])
def test_add_then_generate_matches_diffusers_byte_for_byte(tiny, config, source):
    kind = source.removesuffix("-file")
    r = add_source(f"my-{kind}", tiny, source)
    assert r.exit_code == 0, r.output
    listing = json.loads(runner.invoke(app, ["models", "--json"]).output)
    mine = next(m for m in listing if m["id"] == f"my-{kind}")
    assert mine["kind"] == kind and mine["capabilities"] == ["image-to-image", "text-to-image"]
    entry = load_user_models()[f"my-{kind}"]
    assert entry.format == ("single-file" if source.endswith("-file") else "diffusers")
    files = [Path(f[0]) for f in entry.files]
    assert mine["hash"] == entry.hash == combined_hash(files)
    if source.endswith("-file"):  # the hash covers the weights and the configs/tokenizer used with them
        assert tiny[source] in files and tiny[f"{kind}-config"] / "scheduler" / "scheduler_config.json" in files

    sink, store = CollectSink(), Store(config / "store")
    result = Executor(store, sinks=[sink], models=default_registry()).run(workflow(f"my-{kind}"),
                                                                          out_dir=config / "out")
    assert result.ok, result.failed
    images = store.get_value(result.refs["gen"]["images"])
    want = direct(tiny[source], kind, sampler_cls="EulerAncestralDiscreteScheduler", prompt="a red apple",
                  count=2, seed=5, steps=3, guidance=5.0)
    got = np.stack([im.pixels[..., :3] for im in images])
    assert got.dtype == np.float32 and got.tobytes() == want.astype(np.float32).tobytes()
    assert all(im.pixels.shape == (32, 32, 4) and (im.pixels[..., 3] == 1).all() for im in images)
    assert [(e.step, e.total) for e in sink if isinstance(e, NodeProgress)] == [(1, 3), (2, 3), (3, 3)]
    prov = read_provenance(config / "out" / "apple_1.png")
    assert prov.models[0].id == f"my-{kind}" and prov.models[0].hash == entry.hash and prov.seed == 6


@pytest.mark.parametrize("source", ["sd15", "sd15-file"])
def test_cli_generate_and_rm(tiny, config, monkeypatch, source):
    monkeypatch.setenv("STRATA_DATA", str(config / "store"))
    assert add_source("mine", tiny, source).exit_code == 0
    r = runner.invoke(app, ["generate", "a red apple", "--model", "mine", "-n", "1", "--steps", "2",
                            "--sampler", "DPM++ 2M Karras", "--width", "48", "--height", "32", "--no-lint",
                            "-o", str(config / "cli")])
    assert r.exit_code == 0, r.output
    assert [p.name for p in (config / "cli").iterdir()] == ["a_red_apple_0.png"], r.output
    prov = read_provenance(config / "cli" / "a_red_apple_0.png")
    assert prov.models[0].id == "mine" and prov.sampler == "DPM++ 2M Karras"
    assert prov.models[0].hash == load_user_models()["mine"].hash
    import PIL.Image

    want = direct(tiny[source], "sd15", sampler_cls="DPMSolverMultistepScheduler", prompt="a red apple", count=1,
                  seed=prov.seed, steps=2, guidance=prov.guidance, width=48, height=32,
                  scheduler_overrides={"algorithm_type": "dpmsolver++", "use_karras_sigmas": True})
    png = np.asarray(PIL.Image.open(config / "cli" / "a_red_apple_0.png").convert("RGB"))
    assert png.shape == (32, 48, 3) and np.array_equal(png, png_rgb(want[0]))
    assert runner.invoke(app, ["models", "rm", "mine"]).exit_code == 0
    assert "mine" not in load_user_models()
    assert "no user model named 'nope'" in runner.invoke(app, ["models", "rm", "nope"]).output


def test_lora_changes_the_output_and_removing_it_restores_the_bytes(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    registry = default_registry()
    ex = Executor(Store(config / "store"), models=registry)

    def pixels(**params):
        result = ex.run(workflow("mine", count=1, **params))
        assert result.ok, result.failed
        return ex.store.get_value(result.refs["gen"]["images"])[0].pixels.tobytes()

    lora = [{"path": str(tiny["lora15"]), "scale": 1.0}]
    plain = pixels()
    with_lora = pixels(lora=lora)
    assert with_lora != plain
    want = direct(tiny["sd15"], "sd15", sampler_cls="EulerAncestralDiscreteScheduler", prompt="a red apple",
                  count=1, seed=5, steps=3, guidance=5.0, lora=tiny["lora15"])
    rgb = np.frombuffer(with_lora, np.float32).reshape(32, 32, 4)[..., :3]
    assert rgb.tobytes() == want[0].tobytes()
    # the cache key includes the LoRA (its file hash), so this run executes again — unloaded
    again = ex.run(workflow("mine", count=1), no_cache=True)
    assert ex.store.get_value(again.refs["gen"]["images"])[0].pixels.tobytes() == plain
    assert registry.identify("text-to-image", {"model": "mine", "lora": lora}).weights_hash != \
        registry.identify("text-to-image", {"model": "mine"}).weights_hash


def test_lora_for_the_wrong_base_model_is_a_clear_error(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    result = Executor(Store(config / "store"), models=default_registry()).run(
        workflow("mine", lora=[{"path": str(tiny["loraxl"])}]))
    assert not result.ok
    assert "loraxl.safetensors does not fit model 'mine'" in result.failed["gen"]
    assert "another base model" in result.failed["gen"]
    # and the model is left clean: the next run without it equals a fresh direct call
    ok = Executor(Store(config / "store2"), models=default_registry()).run(workflow("mine", count=1))
    want = direct(tiny["sd15"], "sd15", sampler_cls="EulerAncestralDiscreteScheduler", prompt="a red apple",
                  count=1, seed=5, steps=3, guidance=5.0)
    assert ok.ok and ok.refs and Store(config / "store2").get_value(ok.refs["gen"]["images"])[0].pixels[..., :3].tobytes() \
        == want[0].tobytes()


def test_inpaint_model_is_routed_by_its_nine_channel_unet(tiny, config):
    assert add("inp", tiny["inpaint"]).exit_code == 0
    assert load_user_models()["inp"].capabilities == ["inpaint"]
    init = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    mask = np.zeros((32, 32), np.float32)
    mask[8:24, 8:24] = 1
    from strata.media import Image, Mask
    from strata.ops.generate import inpaint

    model = default_registry().load("inpaint", {"model": "inp"})
    out = inpaint(Image.from_array(init), Mask(mask), prompt="a bite", count=1, seed=3, steps=2, sampler="DDIM", guidance=7.0,
                  loaded_model=model)
    import PIL.Image

    want = direct(tiny["inpaint"], "inpaint", sampler_cls="DDIMScheduler", prompt="a bite", count=1, seed=3, steps=2,
                  guidance=7.0, image=PIL.Image.fromarray(np.rint(init * 255).astype(np.uint8)),
                  mask_image=PIL.Image.fromarray((mask * 255).astype(np.uint8)), strength=1.0, width=32, height=32)
    assert out[0].pixels[..., :3].tobytes() == want[0].tobytes()
    failed = Executor(Store(config / "store"), models=default_registry()).run(workflow("inp"))
    assert "model 'inp' cannot do text-to-image (it can: inpaint)" in failed.failed["gen"]


def test_bf16_autocast_runs_close_to_fp32(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    ex = Executor(Store(config / "store"), models=default_registry())
    fp32, bf16 = (ex.store.get_value(ex.run(workflow("mine", count=1, precision=p, attention_slicing=p == "bf16"))
                                     .refs["gen"]["images"])[0].pixels for p in ("fp32", "bf16"))
    assert np.isfinite(bf16).all() and fp32.tobytes() != bf16.tobytes()
    assert np.abs(fp32 - bf16).mean() < 0.05  # same picture up to bf16 rounding


def test_memory_budget_refuses_a_model_that_cannot_fit(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    registry = ModelRegistry(budget_bytes=2**20)  # 1 MB: the tiny model needs more
    registry.add(registry_entry(load_user_models()["mine"]))
    with pytest.raises(ModelError, match="over the memory budget of 0.0 GB; raise STRATA_MODEL_BUDGET_GB"):
        registry.load("text-to-image", {"model": "mine"})


def test_bad_input_is_refused_clearly_and_registers_nothing(tiny, config, tmp_path):
    models_json = models_file()
    assert add("keep", tiny["sd15"]).exit_code == 0
    before = models_json.read_bytes()
    (tmp_path / "empty").mkdir()
    truncated = tmp_path / "model.safetensors"
    truncated.write_bytes((tiny["sd15"] / "unet" / "diffusion_pytorch_model.safetensors").read_bytes()[:5000])
    pickle = tmp_path / "model.ckpt"
    torch.save({"state_dict": {"x": torch.zeros(2)}}, pickle)
    cases = [
        ((tmp_path / "empty",), "is a folder without model_index.json, so not a diffusers pipeline"),
        ((truncated,), "is not a readable safetensors file"),
        ((pickle,), "pickled checkpoint, which can run arbitrary code when loaded"),
        ((tiny["lora15"],), "is not a Stable Diffusion 1.x or SDXL checkpoint"),
        ((tmp_path / "missing.safetensors",), "does not exist"),
        ((tiny["sdxl-file"], "--config", tiny["sd15-config"]), "is a StableDiffusionPipeline folder, but the "
                                                                 "checkpoint is SDXL"),
        ((tiny["sd15-file"], "--config", tmp_path / "empty"), "is not a diffusers-format folder"),
        ((tiny["sd15"], "--config", tiny["sd15-config"]), "--config is only for single-file checkpoints"),
        ((tiny["sdxl"],), None),  # name taken (below)
    ]
    for args, message in cases:
        name = "keep" if message is None else "new"
        r = add(name, *args)
        assert r.exit_code == 2, r.output
        assert " ".join((message or "a model named 'keep' is already registered").split()) in " ".join(r.output.split())
    # a trusted pickle is opened weights-only; this one is not a checkpoint at all
    r = add("new", pickle, "--trust-pickle")
    assert r.exit_code == 2 and "not a Stable Diffusion" in r.output
    assert models_json.read_bytes() == before and set(load_user_models()) == {"keep"}


def test_unknown_sampler_lists_the_supported_ones(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    with pytest.raises(WorkflowError, match="'sampler': Input should be 'dpmpp', 'euler', 'ddim', 'DPM\\+\\+ 2M'"):
        from strata.workflow.validate import validate

        validate(workflow("mine", sampler="Restart"))


def test_guidance_stop_is_refused_for_a_user_model(tiny, config):
    assert add("mine", tiny["sd15"]).exit_code == 0
    failed = Executor(Store(config / "store"), models=default_registry()).run(
        workflow("mine", count=1, guidance_stop=0.5))
    assert "a diffusers model guides every step" in failed.failed["gen"]


@pytest.mark.parametrize("source", ["sd15", "sd15-file"])
def test_a1111_txt2img_with_a_user_model(tiny, config, source):
    from fastapi.testclient import TestClient

    from strata.server import ServerConfig, create_app

    assert add_source("mine", tiny, source).exit_code == 0
    application = create_app(Store(config / "store"), config=ServerConfig(poll_s=0.05, heartbeat_s=0.05),
                             models=default_registry())
    with TestClient(application, base_url="http://127.0.0.1") as client:
        models = client.get("/sdapi/v1/sd-models").json()
        title = next(m["title"] for m in models if m["model_name"] == "mine")
        body = {"prompt": "a red apple", "seed": 5, "steps": 3, "cfg_scale": 5, "sampler_name": "Euler a",
                "width": 32, "height": 32, "override_settings": {"sd_model_checkpoint": title}}
        r = client.post("/sdapi/v1/txt2img", json=body)
        assert r.status_code == 200, r.text
        info = json.loads(r.json()["info"])
        assert "width" not in info["strata"]["ignored"] and info["sd_model_name"] == "mine"
        import base64
        import io

        import PIL.Image

        png = PIL.Image.open(io.BytesIO(base64.b64decode(r.json()["images"][0])))
        want = direct(tiny[source], "sd15", sampler_cls="EulerAncestralDiscreteScheduler", prompt="a red apple",
                      count=1, seed=5, steps=3, guidance=5.0)
        assert np.array_equal(np.asarray(png.convert("RGB")), png_rgb(want[0]))
        bad = client.post("/sdapi/v1/txt2img", json={**body, "sampler_name": "Restart"})
        assert bad.status_code == 400 and "supported: dpmpp" in bad.json()["detail"]


@pytest.mark.parametrize("keys,arch,capabilities", [
    (["cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"], "sd15",
     {"text-to-image", "image-to-image"}),
    (["conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"], "sdxl",
     {"text-to-image", "image-to-image"}),
    (["conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"], "sdxl-refiner",
     {"image-to-image", "refiner"}),
])
@pytest.mark.parametrize("in_channels", [4, 9])
def test_single_file_architecture_and_capabilities_from_its_header(tmp_path, keys, arch, capabilities, in_channels):
    from safetensors.torch import save_file

    from strata.models.diffusers_models import inspect_checkpoint

    tensors = {k: torch.zeros(2) for k in keys}
    tensors["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(8, in_channels, 3, 3)
    save_file(tensors, tmp_path / "model.safetensors")
    info = inspect_checkpoint(tmp_path / "model.safetensors")
    assert (info.format, info.arch, info.unet_in_channels) == ("single-file", arch, in_channels)
    want = {"inpaint"} if in_channels == 9 and arch != "sdxl-refiner" else capabilities
    assert info.capabilities == want and info.unet_params == 8 * in_channels * 9


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_single_file_converter_round_trips_through_diffusers(tiny, kind):
    """The test helper's original-layout file is what diffusers expects: its own detector names
    the architecture, and its single-file loader (configs only, no weights beside the file)
    gives back every tensor of every component."""
    import diffusers
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type
    from safetensors.torch import load_file

    state = load_file(tiny[f"{kind}-file"])
    assert infer_diffusers_model_type(state) == {"sd15": "v1", "sdxl": "xl_base"}[kind]
    assert not any(p.suffix == ".safetensors" for p in tiny[f"{kind}-config"].rglob("*"))
    cls = diffusers.StableDiffusionPipeline if kind == "sd15" else diffusers.StableDiffusionXLPipeline
    original = load_direct(cls, tiny[kind], kind)
    loaded = load_direct(cls, tiny[f"{kind}-file"], kind)
    components = ["unet", "vae", "text_encoder"] + (["text_encoder_2"] if kind == "sdxl" else [])
    n_original = 0
    for name in components:
        want, got = getattr(original, name).state_dict(), getattr(loaded, name).state_dict()
        assert set(got) == set(want), name
        for key, tensor in want.items():
            assert got[key].dtype == tensor.dtype and torch.equal(got[key], tensor), f"{name}.{key}"
        n_original += sum(t.numel() for t in want.values())
    assert sum(t.numel() for t in state.values()) == n_original  # nothing extra in the file


# Parameter counts of the released models (SD 1.5, SDXL base 1.0) as diffusers/transformers build them.
PUBLISHED_PARAMS = {
    ("sd15", "unet"): 859_520_964, ("sd15", "vae"): 83_653_863, ("sd15", "text_encoder"): 123_060_480,
    ("sdxl", "unet"): 2_567_463_684, ("sdxl", "vae"): 83_653_863, ("sdxl", "text_encoder"): 123_060_480,
    ("sdxl", "text_encoder_2"): 694_659_840,
}


@pytest.mark.parametrize("kind", ["sd15", "sdxl"])
def test_shipped_configs_describe_the_released_architectures(kind):
    """Each shipped component config builds (on the meta device: no memory) a model with exactly
    the released model's parameter count."""
    import diffusers
    import transformers

    from strata.models.diffusers_models import CONFIGS

    index = json.loads((CONFIGS / kind / "model_index.json").read_text())
    for (k, name), want in PUBLISHED_PARAMS.items():
        if k != kind:
            continue
        library, cls_name = index[name]
        cls = getattr(diffusers if library == "diffusers" else transformers, cls_name)
        folder = CONFIGS / kind / name
        with torch.device("meta"):
            model = cls.from_config(cls.load_config(folder)) if library == "diffusers" else \
                cls(cls.config_class.from_pretrained(folder))
        assert sum(p.numel() for p in model.parameters()) == want, name


def shipped_tokenizer_or_skip():
    from strata.models.configs.clip_vocab import TOKENIZER_DIRS
    from strata.models.diffusers_models import CONFIGS

    missing = [d for d in TOKENIZER_DIRS if not (CONFIGS / d / "vocab.json").is_file()]
    if missing:
        pytest.skip(f"CLIP vocabulary not installed in {CONFIGS} (scripts/install.sh fetches it)")
    return [CONFIGS / d for d in TOKENIZER_DIRS]


def test_shipped_tokenizers_are_clips():
    """Token ids of a known prompt as CLIP's tokenizer gives them; SDXL's second tokenizer pads
    with "!" (id 0), the first ones with <|endoftext|>."""
    from transformers import CLIPTokenizer

    for folder in shipped_tokenizer_or_skip():
        tok = CLIPTokenizer.from_pretrained(folder)
        assert len(tok) == 49408
        assert tok("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
        assert tok.pad_token_id == (0 if folder.name == "tokenizer_2" else 49407), folder


def test_single_file_without_config_uses_the_shipped_configs(tiny, config):
    from strata.models.diffusers_models import CONFIGS

    shipped_tokenizer_or_skip()
    r = add("dream", tiny["sd15-file"])
    assert r.exit_code == 0, r.output
    entry = load_user_models()["dream"]
    files = [Path(f[0]) for f in entry.files]
    assert entry.config is None and CONFIGS / "sd15" / "unet" / "config.json" in files
    assert CONFIGS / "sd15" / "tokenizer" / "vocab.json" in files
    # the tiny weights are not the released architecture: loading says so, naming the model
    failed = Executor(Store(config / "store"), models=default_registry()).run(workflow("dream"))
    assert "model 'dream' could not be loaded from" in failed.failed["gen"]


def test_inpainting_single_file_needs_an_inpainting_config(tmp_path, config):
    from safetensors.torch import save_file

    shipped_tokenizer_or_skip()
    save_file({"cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": torch.zeros(77, 8),
               "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 9, 3, 3)},
              tmp_path / "inpaint.safetensors")
    r = add("inp", tmp_path / "inpaint.safetensors")
    assert r.exit_code == 2 and "has a 9-channel UNet but the configs" in " ".join(r.output.split())
    assert "inp" not in load_user_models()
