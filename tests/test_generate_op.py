"""image.generate through the engine, the registry and the CLI, on a tiny random model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from strata.cli import app
from strata.errors import WorkflowError
from strata.models.image_diffusion import ImageDiffusionConfig, ImageDiffusionModel
from strata.models.registry import default_registry, reset_default_registry
from strata.provenance.metadata import read_provenance
from strata.store import Store
from strata.workflow.events import CollectSink, NodeProgress, NodeWarning
from strata.workflow.executor import Executor
from strata.workflow.spec import parse_workflow
from strata.workflow.validate import validate

TINY = ImageDiffusionConfig(block_channels=(16, 32), attention_levels=(1,), attention_heads=2, text_tokens=8)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tiny-model")
    ImageDiffusionModel.random(TINY, seed=0).save_pretrained(directory)
    return directory


@pytest.fixture
def registry(tiny_model_dir, monkeypatch):
    monkeypatch.setenv("STRATA_IMAGE_MODEL", str(tiny_model_dir))
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only add spin-wait overhead
    reset_default_registry()
    yield default_registry()
    reset_default_registry()
    torch.set_num_threads(before)


def gen_workflow(**params) -> dict:
    return {"name": "gen", "seed": 11, "nodes": [
        {"id": "gen", "op": "image.generate", "params": {"prompt": "red apple", "count": 2, "steps": 2, **params}}],
        "outputs": {"apple.png": "gen"}}


def test_generate_through_the_engine(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_CACHE", str(tmp_path / "cache"))  # no exported UNet yet: its export is announced
    sink = CollectSink()
    store = Store(tmp_path / "store")
    result = Executor(store, sinks=[sink], models=registry).run(parse_workflow(gen_workflow()), out_dir=tmp_path / "out")
    assert result.ok, result.failed
    images = store.get_value(result.refs["gen"]["images"])
    assert len(images) == 2 and images[0].pixels.shape == (64, 64, 4)
    steps = [(e.step, e.total, e.message) for e in sink if isinstance(e, NodeProgress)]
    # First-use exports (the text encoder's, then the UNet's) are announced at step 0, then the steps run.
    assert [s[:2] for s in steps] == [(0, 2), (0, 2), (1, 2), (2, 2)] and steps[2][2] is None and steps[3][2] is None
    assert "text encoder to ONNX Runtime" in steps[0][2] and "UNet to ONNX Runtime" in steps[1][2]
    assert "ONNX Runtime" in next(e for e in sink if isinstance(e, NodeProgress)).to_json()["message"]
    # The workflow seed fills the op's seed; provenance names prompt, seed, model and hash.
    # Image i of a batch was made from seed + i, and its file says so (as A1111 does).
    assert read_provenance(tmp_path / "out" / "apple_0.png").seed == 11
    prov = read_provenance(tmp_path / "out" / "apple_1.png")
    entry = registry.find("text-to-image")
    assert prov.prompt == "red apple" and prov.seed == 12 and prov.sampler == "dpmpp" and prov.steps == 2
    assert prov.models[0].id == "strata-emoji-64" and prov.models[0].hash == entry.weights_hash()
    assert prov.label == "AI-generated" and prov.source == "generated"
    # A second run is a cache hit; a different seed is not.
    again = Executor(store, models=registry).run(parse_workflow(gen_workflow()))
    assert again.cached == ["gen"]
    other = Executor(store, models=registry).run(parse_workflow({**gen_workflow(), "seed": 12}))
    assert other.executed == ["gen"]


def test_same_seed_gives_identical_bytes_across_stores(registry, tmp_path, monkeypatch):
    # Content-credential signatures are salted, so compare unsigned files (pixels + metadata).
    monkeypatch.setenv("STRATA_SIGN", "0")
    files = []
    for i in range(2):
        Executor(Store(tmp_path / f"s{i}"), models=registry).run(parse_workflow(gen_workflow()), out_dir=tmp_path / f"o{i}")
        files.append((tmp_path / f"o{i}" / "apple_0.png").read_bytes())
    assert files[0] == files[1]


def test_background_flattens_and_changes_the_key(registry, tmp_path):
    store = Store(tmp_path / "store")
    result = Executor(store, models=registry).run(parse_workflow(gen_workflow(background="#ff0000", count=1)))
    image = store.get_value(result.refs["gen"]["images"])[0]
    assert image.is_opaque


def test_long_prompt_warns_through_the_event_stream(registry, tmp_path):
    sink = CollectSink()
    long_prompt = "a very long prompt " * 20
    Executor(Store(tmp_path), sinks=[sink], models=registry).run(parse_workflow(gen_workflow(prompt=long_prompt, count=1)))
    warnings = [e.message for e in sink if isinstance(e, NodeWarning)]
    assert len(warnings) == 1 and "has 80 tokens; the text encoder keeps 6, the rest is ignored" in warnings[0]


@pytest.mark.parametrize("params, message", [
    ({"steps": 0}, "node 'gen', 'steps': Input should be greater than or equal to 1"),
    ({"guidance": 31}, "node 'gen', 'guidance': Input should be less than or equal to 30"),
    ({"count": 65}, "node 'gen', 'count': Input should be less than or equal to 64"),
    ({"sampler": "plms"}, "node 'gen', 'sampler': Input should be 'dpmpp', 'euler', 'ddim', 'DPM++ 2M'"),
    ({"seed": -1}, "node 'gen', 'seed': Input should be greater than or equal to 0"),
    ({"size": 4}, "node 'gen', 'size': Input should be greater than or equal to 8"),
    ({"background": "red"}, "node 'gen', 'background': String should match pattern"),
])
def test_bad_params_are_refused_before_running(registry, params, message):
    from strata.errors import WorkflowError
    from strata.workflow.validate import validate

    with pytest.raises(WorkflowError) as info:
        validate(parse_workflow(gen_workflow(**params)))
    assert message in str(info.value)


def test_size_other_than_native_fails_the_node_clearly(registry, tmp_path):
    result = Executor(Store(tmp_path), models=registry).run(parse_workflow(gen_workflow(size=128)))
    assert "node 'gen': 'size': size must be 64 for this model" in result.failed["gen"]


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_IMAGE_MODEL", str(tmp_path / "nothing-here"))
    reset_default_registry()
    try:
        result = Executor(Store(tmp_path / "s"), models=default_registry()).run(parse_workflow(gen_workflow()))
        assert "no installed model can do 'text-to-image'" in result.failed["gen"]
    finally:
        reset_default_registry()


def test_cli_generate(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_DATA", str(tmp_path / "store"))
    r = CliRunner().invoke(app, ["generate", "a red fox", "-n", "2", "--seed", "7", "--steps", "2",
                                 "-o", str(tmp_path / "out"), "--json"])
    assert r.exit_code == 0, r.output
    files = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert files == ["a_red_fox_0.png", "a_red_fox_1.png"]
    prov = read_provenance(tmp_path / "out" / "a_red_fox_0.png")
    assert prov.prompt == "a red fox" and prov.seed == 7
    from PIL import Image as PILImage

    text = PILImage.open(tmp_path / "out" / "a_red_fox_0.png").text["parameters"]
    assert text.startswith("a red fox\n") and "Seed: 7" in text and "Sampler: dpmpp" in text


def test_cli_generate_lints_the_prompt_unless_told_not_to(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("STRATA_DATA", str(tmp_path / "store"))
    args = ["generate", "five cats holding a sign that says 'hello'", "-n", "1", "--steps", "1", "-o", str(tmp_path / "o")]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "lint exact-count" in r.output and "lint rendered-text" in r.output and "instead:" in r.output
    r = CliRunner().invoke(app, args + ["--no-lint"])
    assert r.exit_code == 0 and "lint exact-count" not in r.output


def test_variation_and_morph_run_the_built_in_model_through_the_engine(registry, tmp_path):
    wf = {"name": "edit", "seed": 4, "nodes": [
        {"id": "load", "op": "io.load_image", "params": {"path": str(_apple_png(tmp_path))}},
        {"id": "var", "op": "image.variation", "inputs": {"image": "load"},
         "params": {"prompt": "green apple", "strength": 0.5, "steps": 4}},
        {"id": "morph", "op": "image.interpolate", "params": {"prompt": "red apple", "prompt_b": "banana",
                                                              "frames": 3, "steps": 2}},
    ], "outputs": {"var.png": "var", "morph.png": "morph"}}
    result = Executor(Store(tmp_path / "store"), models=registry).run(parse_workflow(wf), out_dir=tmp_path / "out")
    assert result.ok, result.failed
    assert (tmp_path / "out" / "var_0.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out").glob("morph_*.png")) == ["morph_0.png", "morph_1.png", "morph_2.png"]
    bad = {"nodes": [{"id": "morph", "op": "image.interpolate", "params": {"prompt": "x", "frames": 1}},
                     {"id": "var", "op": "image.variation", "params": {"prompt": "x", "strength": 1.5}}]}
    with pytest.raises(WorkflowError) as info:
        validate(parse_workflow(bad))
    assert "frames" in str(info.value) and "strength" in str(info.value)  # every problem at once


def _apple_png(tmp_path):
    from PIL import Image as PILImage

    path = tmp_path / "apple_in.png"
    yy, xx = np.mgrid[0:96, 0:96]
    rgba = np.zeros((96, 96, 4), np.uint8)
    rgba[(xx - 48) ** 2 + (yy - 48) ** 2 < 900] = (220, 30, 30, 255)
    PILImage.fromarray(rgba).save(path)
    return path


@pytest.mark.parametrize(("param", "value"), [("lora", [{"path": "x.safetensors"}]), ("precision", "bf16"),
                                              ("attention_slicing", True)])
def test_the_builtin_model_refuses_user_model_params_by_name(tiny_model_dir, param, value) -> None:
    from strata.errors import OpError
    from strata.ops.generate import generate, variation
    from strata.media.image import Image

    model = ImageDiffusionModel.from_pretrained(tiny_model_dir)
    with pytest.raises(OpError, match=f"the built-in model does not take {param}") as caught:
        generate(prompt="red apple", steps=1, count=1, loaded_model=model, **{param: value})
    assert caught.value.param == param
    with pytest.raises(OpError, match=f"does not take {param}"):
        variation(Image(np.zeros((64, 64, 4), np.float32)), prompt="red apple", steps=1, loaded_model=model,
                  **{param: value})
