"""A1111 compatibility: request translation (unit), the 503 until a model exists, and the whole
txt2img path wired to a stand-in generative op."""

from __future__ import annotations

import base64
import io
import json
import time

import PIL.Image
import pytest

from server_helpers import FAKE_GENERATORS, fake_registry, sample_workflow, wait_job
from strata.server import a1111
from strata.server.a1111 import Img2ImgRequest, Txt2ImgRequest, img2img_workflow, strata_sampler, to_generate_request
from strata.server.generation import GENERATE_OP, GenerateRequest, generate_workflow
from strata.models.samplers import DEFAULT_GUIDANCE
from strata.models.registry import ModelRegistry


# -- translation ---------------------------------------------------------------------------
def test_txt2img_fields_map_to_a_generate_request():
    req = Txt2ImgRequest(prompt="a red apple", negative_prompt="blurry", seed=-1, batch_size=2, n_iter=3,
                         steps=12, cfg_scale=5.5, sampler_name="DDIM", width=64, height=64,
                         override_settings={"sd_model_checkpoint": "strata-emoji-64", "CLIP_stop_at_last_layers": 2},
                         restore_faces=True, enable_hr=True)
    gen, notes = to_generate_request(req, random_seed=lambda: 1234)
    assert (gen.prompt, gen.negative_prompt, gen.seed, gen.count, gen.steps, gen.guidance, gen.sampler) == (
        "a red apple", "blurry", 1234, 6, 12, 5.5, "ddim")
    assert (gen.width, gen.height, gen.model) == (None, None, "strata-emoji-64") and notes == []
    assert a1111.ignored_fields(req) == ["width", "height", "enable_hr", "restore_faces",
                                         "override_settings.CLIP_stop_at_last_layers"]


def test_explicit_seed_is_kept():
    gen, _ = to_generate_request(Txt2ImgRequest(prompt="x", seed=7), random_seed=lambda: 99)
    assert gen.seed == 7


@pytest.mark.parametrize("name,ours", [
    (None, "dpmpp"), ("DPM++ 2M", "dpmpp"), ("Euler", "euler"), ("DDIM", "ddim"), ("euler", "euler"),
    ("DPM++ 2M Karras", "DPM++ 2M Karras"), ("Euler a", "Euler a"), ("LMS", "LMS"),
])
def test_sampler_names(name, ours):
    assert strata_sampler(name) == (ours, None)


def test_unknown_sampler_is_refused_with_the_supported_names():
    with pytest.raises(a1111.UnknownSampler, match="unknown sampler 'Restart'; supported: .*DPM\\+\\+ 2M Karras.*Euler a"):
        strata_sampler("Restart")


def test_a1111_short_names_are_the_builtin_samplers():
    # read the pipeline's SAMPLERS keys from its source: importing it would import torch (seconds)
    import ast
    import importlib.util

    from strata.models.samplers import SHORT_NAMES

    source = open(importlib.util.find_spec("strata.models.image_pipeline").origin, encoding="utf-8").read()
    table = next(n.value for n in ast.walk(ast.parse(source))
                 if isinstance(n, (ast.Assign, ast.AnnAssign)) and "SAMPLERS" in ast.unparse(n.targets[0] if isinstance(n, ast.Assign) else n.target))
    assert set(SHORT_NAMES) == {k.value for k in table.keys}
    assert {a1111.SAMPLERS[v] for v in SHORT_NAMES.values()} == set(SHORT_NAMES)


def test_batch_over_64_is_refused():
    with pytest.raises(ValueError, match="64"):
        to_generate_request(Txt2ImgRequest(prompt="x", batch_size=8, n_iter=9))


class _Spec:
    """Just the part of a NodeSpec the translation reads."""

    def __init__(self, op: str, names: list[str]):
        self.op = op
        self.param_names = names


def test_generate_workflow_follows_the_op_params():
    req = GenerateRequest(prompt="cat", negative_prompt="dog", seed=3, count=2, width=64, height=64)
    wf, ignored = generate_workflow(req, _Spec(GENERATE_OP, ["prompt", "negative", "seed", "count", "steps",
                                                             "guidance", "sampler"]))
    params = wf["nodes"][0]["params"]
    assert wf["nodes"][0]["op"] == GENERATE_OP and wf["seed"] == 3 and wf["outputs"] == {"image.png": "generate"}
    assert params == {"prompt": "cat", "negative": "dog", "seed": 3, "count": 2, "steps": 20, "guidance": DEFAULT_GUIDANCE,
                      "sampler": "dpmpp"}
    assert ignored == ["width", "height"]
    # a square size goes to a model that takes one side
    wf, ignored = generate_workflow(req, _Spec(GENERATE_OP, ["prompt", "seed", "size"]))
    assert wf["nodes"][0]["params"]["size"] == 64 and "width" not in ignored
    # without a spec (op not installed yet): canonical names, nothing ignored
    wf, ignored = generate_workflow(req)
    assert wf["nodes"][0]["params"]["negative_prompt"] == "dog" and ignored == []


def test_img2img_and_inpaint_workflows():
    req = Img2ImgRequest(prompt="x", denoising_strength=0.4, init_images=["..."], mask="...")
    gen, _ = to_generate_request(req, random_seed=lambda: 5)
    wf, ignored = img2img_workflow(req, gen, op="image.inpaint", declared=["prompt", "seed", "strength"],
                                   init_ref="asset:" + "a" * 64, mask_ref="asset:" + "b" * 64)
    nodes = {n["id"]: n for n in wf["nodes"]}
    assert nodes["init"]["params"]["path"] == "asset:" + "a" * 64
    assert nodes["mask"]["op"] == "io.load_mask"
    assert nodes["generate"]["inputs"] == {"image": "init", "mask": "mask"}
    assert nodes["generate"]["params"] == {"prompt": "x", "seed": 5, "strength": 0.4}
    assert "steps" in ignored and "denoising_strength" not in ignored
    wf, _ = img2img_workflow(req, gen, op="image.img2img", declared=None, init_ref="asset:" + "a" * 64, mask_ref=None)
    assert [n["id"] for n in wf["nodes"]] == ["init", "generate"]


def test_infotext_is_a1111_style():
    gen = GenerateRequest(prompt="a cat", negative_prompt="dog", seed=9, steps=20, guidance=4, width=64, height=64)
    assert a1111.infotext(gen, 9) == "a cat\nNegative prompt: dog\nSteps: 20, Sampler: DPM++ 2M, CFG scale: 4, Seed: 9, Size: 64x64"


# -- endpoints without a model ----------------------------------------------------------------
def test_generation_answers_503_until_a_model_exists(make_client, store_dir):
    client = make_client(models=ModelRegistry())  # no models installed
    for path, body in (("/sdapi/v1/txt2img", {"prompt": "x"}), ("/api/generate", {"prompt": "x"}),
                       ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["AAAA"]}),
                       ("/sdapi/v1/img2img", {"prompt": "x", "init_images": ["AAAA"], "mask": "AAAA"})):
        r = client.post(path, json=body)
        assert r.status_code == 503, (path, r.text)
        assert r.json()["error"].startswith("no_") and "model installed" in r.json()["detail"]
    assert client.get("/api/jobs").json()["jobs"] == []
    assert not (store_dir / "blobs").exists() or not any((store_dir / "blobs").rglob("*.*"))


def test_read_endpoints(make_client):
    client = make_client(models=ModelRegistry())
    names = [s["name"] for s in client.get("/sdapi/v1/samplers").json()]
    assert {"DPM++ 2M", "DPM++ 2M Karras", "Euler", "Euler a", "DDIM"} <= set(names)
    assert client.get("/sdapi/v1/sd-models").json() == []
    assert client.get("/sdapi/v1/options").json()["samples_format"] == "png"
    assert client.post("/sdapi/v1/options", json={}).status_code == 501
    progress = client.get("/sdapi/v1/progress").json()
    assert progress["progress"] == 0.0 and progress["state"]["job_count"] == 0


# -- the whole path with a stand-in op ---------------------------------------------------------
@pytest.fixture
def t2i_client(make_client, tmp_path):
    return make_client(models=fake_registry(tmp_path), generators=FAKE_GENERATORS)


def test_txt2img_returns_images_carrying_prompt_and_seed(t2i_client):
    r = t2i_client.post("/sdapi/v1/txt2img", json={"prompt": "a red apple", "seed": 42, "batch_size": 2,
                                                   "steps": 3, "sampler_name": "Euler a", "tiling": False})
    assert r.status_code == 200, r.text
    body = r.json()
    info = json.loads(body["info"])
    assert len(body["images"]) == 2 and info["all_seeds"] == [42, 43]
    assert info["strata"]["ignored"] == ["width", "height", "tiling"]
    assert info["sampler_name"] == "Euler a" and info["strata"]["substitutions"] == []
    for i, b64 in enumerate(body["images"]):
        im = PIL.Image.open(io.BytesIO(base64.b64decode(b64)))
        params = im.info["parameters"]
        assert "a red apple" in params and f"Seed: {42 + i}," in params  # image i's own seed, as A1111 writes it
    assert info["infotexts"][0] == PIL.Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).info["parameters"]
    # png-info reads it back
    pnginfo = t2i_client.post("/sdapi/v1/png-info", json={"image": "data:image/png;base64," + body["images"][0]}).json()
    assert "a red apple" in pnginfo["info"] and pnginfo["items"]["provenance"] in ("strata", "a1111")
    assert "path" not in pnginfo["items"]


def test_generate_endpoint_queues_a_job(t2i_client):
    r = t2i_client.post("/api/generate", json={"prompt": "a tree", "seed": 1, "count": 1, "width": 64})
    assert r.status_code == 202 and r.json()["ignored"] == ["width"]
    job = wait_job(t2i_client, r.json()["id"])
    assert job["status"] == "succeeded" and job["kind"] == "generate"
    assert t2i_client.get("/sdapi/v1/sd-models").json()[0]["model_name"] == "fake-t2i"


def test_eta_relative_is_a1111s_estimate():
    from strata.server.routes.a1111 import eta_relative

    assert eta_relative(10.0, 0.25) == pytest.approx(30.0)  # a quarter done in 10 s: 30 s to go
    assert eta_relative(4.0, 1.0) == 0.0 and eta_relative(3.0, 0.0) == 0.0


def test_progress_reports_the_running_jobs_step_and_time_left(client):
    slow = {"id": "slow", "op": "server_test.wait", "inputs": {"image": "grade"}, "params": {"steps": 40, "step_s": 0.05}}
    job_id = client.post("/api/jobs", json=sample_workflow(0.3, extra=[slow])).json()["id"]
    deadline = time.monotonic() + 10
    seen = None
    while time.monotonic() < deadline:
        p = client.get("/sdapi/v1/progress", params={"skip_current_image": True}).json()
        if p["state"]["sampling_step"] >= 8:
            seen = p
            break
        time.sleep(0.02)
    assert seen is not None, "the slow job never reported progress"
    f = seen["state"]["sampling_step"] / seen["state"]["sampling_steps"]
    assert seen["progress"] == pytest.approx(f) and seen["state"]["job"] == job_id
    # ~0.05 s a step: the time left is about the steps left × 0.05 s (loose: the machine is shared)
    left = (seen["state"]["sampling_steps"] - seen["state"]["sampling_step"]) * 0.05
    assert 0.3 * left < seen["eta_relative"] < 10 * left
    assert seen["current_image"] is None
    wait_job(client, job_id)
