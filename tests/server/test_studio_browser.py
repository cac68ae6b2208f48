"""The studio in a real browser (Debian's chromium, headless, driven by Playwright): generate a
batch and pick one, run a workflow on an uploaded image, rerun from history with a changed
param, read a file's provenance; compose layers, text, enhance and upscale; render a narrated
video with captions and music. Skipped where chromium or playwright is missing.

Screenshots go to ``STRATA_SCREENSHOTS`` if set (the README's come from here), else tmp_path.
"""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import PIL.Image
import pytest
import skimage.data

from server_helpers import FAKE_GENERATORS, fake_registry, serve_in_thread
import strata
from strata.media import Image
from strata.media.mp4 import probe_mp4
from strata.models.builtin import register_weights_folder_models
from strata.models.registry import ModelRegistry
from strata.models.speech import _register_espeak as register_espeak
from strata.ops.enhance import contrast as contrast_op
from strata.ops.enhance import lut
from strata.server import ServerConfig, create_app
from strata.store import Store

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (apt-get install chromium)", allow_module_level=True)

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
def studio_url(tmp_path: Path) -> Iterator[str]:
    app = create_app(Store(tmp_path / "store"), models=fake_registry(tmp_path), generators=FAKE_GENERATORS,
                     config=ServerConfig(poll_s=0.05, heartbeat_s=0.05))
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/"


def test_studio_main_flows(studio_url, tmp_path):
    shots = Path(os.environ.get("STRATA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "photo.png"
    PIL.Image.fromarray((np.indices((48, 64)).sum(0) % 256).astype(np.uint8)).convert("RGB").save(photo)
    problems: list[str] = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        # bypass_csp only lets Playwright's own wait functions run; the page keeps its policy
        page = browser.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.set_default_timeout(15000)
        page.goto(studio_url)

        # 1. generate a batch, watch it, pick one
        page.fill("textarea[name=prompt]", "a red apple")
        page.fill("input[name=count]", "4")
        page.click("#gen-submit")
        page.wait_for_selector("#gen-grid figure >> nth=3")
        page.click("#gen-grid figure >> nth=2")
        assert "seed 2" in page.inner_text("#gen-picked")
        page.screenshot(path=str(shots / "studio-generate.png"))

        # 1b. paint a mask over the picked image and inpaint it
        page.click("text=Paint a mask & inpaint")
        box = page.wait_for_selector("#paint-stage canvas").bounding_box()
        page.mouse.move(box["x"] + 10, box["y"] + 10)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        painted = page.evaluate("() => { const c = document.querySelector('#paint-stage canvas'); "
                                "return c.getContext('2d').getImageData(0, 0, c.width, c.height).data"
                                ".filter((v, i) => i % 4 === 3 && v > 0).length; }")
        assert painted > 0
        page.fill("#inpaint-prompt", "a bite taken out")
        page.click("#inpaint-run")
        page.wait_for_selector("#inpaint-result figure img")
        page.screenshot(path=str(shots / "studio-inpaint.png"))

        # 1c. outpaint: extend the picture 16 px to the right (pad + inpaint of the new margin)
        width = page.evaluate("document.querySelector('#paint-stage img').naturalWidth")
        page.fill("#outpaint-px", "16")
        page.click("#outpaint-run")
        page.wait_for_function("(() => { const i = document.querySelector('#inpaint-result img[alt=outpainted]');"
                               " return i && i.naturalWidth > 0; })()")
        assert page.evaluate("document.querySelector('#inpaint-result img[alt=outpainted]').naturalWidth") == width + 16

        # 2. upload an image, use it in a workflow, see the output
        page.click("button[data-tab=workflow]")
        page.fill("#wf-text", "name: upload\nnodes:\n  - {id: img, op: io.load_image, params: {path: }}\n"
                  "  - {id: warm, op: enhance.white_balance, inputs: {image: img}, params: {temperature: 0.3}}\n"
                  "outputs:\n  warm.png: warm\n")
        page.evaluate("() => { const a = document.querySelector('#wf-text'); a.selectionStart = a.value.indexOf('path: ') + 6; }")
        page.set_input_files("#wf-upload", str(photo))
        page.wait_for_function("document.querySelector('#wf-text').value.includes('asset:')")
        page.click("#wf-submit")
        page.wait_for_selector("#wf-outputs figure img")
        assert "job_finished" in page.inner_text("#wf-log")
        page.screenshot(path=str(shots / "studio-workflow.png"))

        # 3. history: rerun with a changed param; only the changed node executes
        page.click("button[data-tab=history]")
        page.click("#runs tbody tr >> text=upload")
        page.wait_for_selector("#run-detail .node >> nth=1")
        page.fill("#run-detail input[name=temperature]", "-0.3")  # a form generated from the op's schema
        page.click("text=Rerun with changes")
        page.wait_for_function("document.querySelectorAll('#runs tbody tr').length >= 3 && "
                               "document.querySelector('#run-detail h2').textContent.includes('ok') && "
                               "document.querySelector('#run-detail').textContent.includes('cached')")
        assert page.inner_text("#runs tbody tr >> nth=0").split("\t")[-1].strip()  # has a parent run
        page.screenshot(path=str(shots / "studio-history.png"))

        # 4. provenance of a file strata wrote
        with page.expect_download() as download:
            page.click("button[data-tab=generate]")
            page.click("#gen-picked a")
        output = tmp_path / "picked.png"
        download.value.save_as(output)
        page.click("button[data-tab=provenance]")
        page.set_input_files("#prov-file", str(output))
        page.wait_for_selector("#prov-items dt")
        items = page.inner_text("#prov-items")
        assert "a red apple" in items and "AI-generated" in items and "verdict" in items
        page.wait_for_selector("#prov-lineage li")
        page.screenshot(path=str(shots / "studio-provenance.png"))
        browser.close()
    assert problems == []


# ---------------------------------------------------------------- compose and video tabs

BASE_RGB = (0x33, 0x66, 0x99)  # the compose tab's default solid color, #336699
LAYER_RGB = (200, 100, 50)


def _launch(p, problems: list[str]):
    browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
    page = browser.new_page(viewport={"width": 1280, "height": 860}, bypass_csp=True)
    page.on("pageerror", lambda e: problems.append(str(e)))
    # a 4xx answer the page shows in its banner is logged by chromium too; the flows check the banner
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" and "status of 4" not in m.text else None)
    page.set_default_timeout(20000)
    return browser, page


def _no_horizontal_scroll(page, tab: str) -> None:
    for width in (1280, 800):
        page.set_viewport_size({"width": width, "height": 860})
        page.click(f"button[data-tab={tab}]")
        overflow = page.evaluate("document.scrollingElement.scrollWidth - document.scrollingElement.clientWidth")
        assert overflow <= 0, f"{tab} scrolls sideways by {overflow} px at {width} px"
    page.set_viewport_size({"width": 1280, "height": 860})


def _solid_png(path: Path, rgb: tuple[int, int, int], size: tuple[int, int]) -> Path:
    PIL.Image.new("RGB", size, rgb).save(path)
    return path


def _compose_and_download(page, path: Path) -> None:
    """Run the compose tab, wait for this run's result (the last one is cleared) and save it."""
    page.click("#compose-run")
    page.wait_for_selector("#compose-result img")
    with page.expect_download() as download:
        page.click("#compose-result a.download")
    download.value.save_as(path)


@pytest.fixture
def media_server(tmp_path: Path) -> Iterator[tuple[str, ModelRegistry]]:
    """A server with the fake generator, the espeak-ng voice and (added by a test) a music model.
    The voice is registered by its own registrar: default_registry() would import torch."""
    registry = fake_registry(tmp_path)
    register_espeak(registry)
    app = create_app(Store(tmp_path / "store"), models=registry, generators=FAKE_GENERATORS,
                     config=ServerConfig(poll_s=0.05, heartbeat_s=0.05))
    with serve_in_thread(app) as port:
        yield f"http://127.0.0.1:{port}/", registry


def test_compose_layers_text_enhance_upscale(media_server, tmp_path, monkeypatch):
    url, registry = media_server
    shots = Path(os.environ.get("STRATA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    layer = _solid_png(tmp_path / "layer.png", LAYER_RGB, (16, 16))
    problems: list[str] = []
    maker = concurrent.futures.ThreadPoolExecutor(1)  # torch is imported meanwhile
    upscaler = maker.submit(_tiny_upscaler, tmp_path / "upscaler")
    with sync_api.sync_playwright() as p:
        browser, page = _launch(p, problems)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        # a generation to pick: fake 8×8 seeded noise, image i has seed i
        page.fill("textarea[name=prompt]", "noise")
        page.fill("input[name=count]", "2")
        page.click("#gen-submit")
        page.click("#gen-grid figure >> nth=1")
        page.wait_for_selector("#gen-picked:not([hidden])")

        page.click("button[data-tab=compose]")
        page.fill("#base-width", "64")
        page.fill("#base-height", "56")
        page.set_input_files("#compose-tray input[type=file]", str(layer))
        page.click("#compose-tray .add-picked")
        page.click("#compose-tray [aria-label='Add as layer: image 1']")
        page.click("#compose-tray [aria-label='Add as layer: image 2']")
        first, second = page.locator("#compose-layers li").nth(0), page.locator("#compose-layers li").nth(1)
        for name, value in {"x": "8", "y": "8", "opacity": "1.5"}.items():
            first.locator(f"input[name={name}]").fill(value)
        first.locator("select[name=mode]").select_option("multiply")
        second.locator("input[name=x]").fill("40")
        second.locator("input[name=y]").fill("8")
        page.check("#text-on")
        page.fill("#compose-text input[name=text]", "Hi")
        for name, value in {"x": "4", "y": "30", "size_px": "14"}.items():
            page.fill(f"#compose-text input[name={name}]", value)
        page.check("#enh-contrast")
        page.fill("#compose-enhance [data-node=contrast][data-param=factor]", "1.5")

        # an out-of-range opacity: the server's issue names node and param, shown beside the control
        page.click("#compose-run")
        issue = page.wait_for_selector("#compose-layers li >> .issue")
        assert "layers · settings" in issue.inner_text() and "less than or equal to 1" in issue.inner_text()
        assert first.locator("input[name=opacity]").get_attribute("aria-invalid") == "true"
        assert "layers" in page.inner_text("#banner")

        first.locator("input[name=opacity]").fill("0.5")
        _compose_and_download(page, tmp_path / "composite.png")
        assert page.locator("#compose-layers .issue").count() == 0 and "job_finished" in page.inner_text("#compose-log")
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "studio-compose.png"))

        page.select_option("#upscale", "lanczos:2")
        _compose_and_download(page, tmp_path / "upscaled.png")

        # the uploaded image as the base instead, no layers or text, a shipped LUT after the contrast
        page.click("#compose-layers li >> nth=1 >> text=Remove layer")
        page.click("#compose-layers li >> text=Remove layer")
        page.click("#compose-tray [aria-label='Use as base: image 1']")
        assert page.is_hidden("#base-solid") and "layer.png" in page.inner_text("#base-image")
        page.uncheck("#text-on")
        page.check("#enh-lut")
        page.select_option("#compose-enhance select[data-param=path]", "strata:luts/film_warm.cube")
        page.select_option("#upscale", "learned:2")
        assert "no upscale models installed" in page.inner_text("#compose")
        page.click("#compose-run")  # no upscale model yet: the failure shows beside the upscale choice
        issue = page.wait_for_selector("#upscale >> xpath=../following-sibling::*[1][contains(@class, 'issue')]")
        assert "no installed model can do 'upscale'" in issue.inner_text()
        upscaler.result()
        maker.shutdown()
        monkeypatch.setenv("STRATA_UPSCALE_MODEL", str(tmp_path / "upscaler"))
        register_weights_folder_models(registry)  # the upscaler: an untrained one is exactly bicubic
        _compose_and_download(page, tmp_path / "graded.png")
        assert "installed upscale models: strata-upscale" in page.inner_text("#compose")
        log = page.inner_text("#compose-log")  # the LUT ran in the failed run; now it is cached
        assert "node_cached lut" in log and "node_finished upscale" in log
        page.click("#base-clear")
        assert page.is_visible("#base-solid") and page.inner_text("#base-image") == ""
        _no_horizontal_scroll(page, "compose")
        browser.close()
    assert problems == []

    out = np.asarray(PIL.Image.open(tmp_path / "composite.png").convert("RGB")).astype(float) / 255
    assert out.shape == (56, 64, 3)
    contrast = lambda c: np.clip((c - 0.5) * 1.5 + 0.5, 0, 1)  # noqa: E731 — enhance.contrast
    cb, cs = np.array(BASE_RGB) / 255, np.array(LAYER_RGB) / 255
    # W3C multiply at opacity a over an opaque backdrop: co = cb·(1 − a) + a·cb·cs
    np.testing.assert_allclose(out[12, 12], contrast(cb * 0.5 + 0.5 * cb * cs), atol=1.01 / 255)
    np.testing.assert_allclose(out[2, 2], contrast(cb), atol=1.01 / 255)  # base only
    picked = np.random.default_rng(1).random((8, 8, 3))  # the fake generator's image for seed 1
    np.testing.assert_allclose(out[8:16, 40:48], contrast(picked), atol=1.01 / 255)  # normal, opacity 1
    assert out[30:46, 4:24].max() > contrast(cb).max() + 0.3  # white text drawn there
    up = np.asarray(PIL.Image.open(tmp_path / "upscaled.png").convert("RGB")).astype(float) / 255
    assert up.shape == (112, 128, 3)
    np.testing.assert_allclose(up[32, 32], out[16, 16], atol=1.01 / 255)  # Lanczos keeps a flat area
    graded = np.asarray(PIL.Image.open(tmp_path / "graded.png").convert("RGB")).astype(float) / 255
    flat = Image.from_array(np.full((4, 4, 3), cs, np.float32))
    expected = lut(contrast_op(flat, factor=1.5), path=str(Path(strata.__file__).parent / "assets/luts/film_warm.cube"))
    assert graded.shape == (32, 32, 3)
    np.testing.assert_allclose(graded[16, 16], expected.rgb[0, 0], atol=1.01 / 255)  # bicubic keeps a flat area
    assert np.abs(expected.rgb[0, 0] - contrast(cs)).max() > 0.02  # the grade did change the color


def test_video_scenes_narration_captions_music(media_server, tmp_path, monkeypatch):
    url, registry = media_server
    shots = Path(os.environ.get("STRATA_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    photos = []
    for name in ("rocket", "astronaut"):  # real photographs bundled with scikit-image, small
        photos.append(tmp_path / f"{name}.png")
        PIL.Image.fromarray(getattr(skimage.data, name)()).resize((192, 108)).save(photos[-1])
    problems: list[str] = []
    # made meanwhile: building it imports torch, most of this test's time when torch is cold
    maker = concurrent.futures.ThreadPoolExecutor(1)
    music_model = maker.submit(_tiny_music_model, tmp_path / "music")
    with sync_api.sync_playwright() as p:
        browser, page = _launch(p, problems)
        page.goto(url)
        page.wait_for_selector("body[data-ready=true]")
        page.click("button[data-tab=video]")
        assert "espeak-ng" in page.inner_text("#voice-model")
        assert "no music models installed" in page.inner_text("#video-music-section")
        for photo in photos:
            page.set_input_files("#video-tray input[type=file]", str(photo))
        page.click("#video-tray [aria-label='Add as scene: image 1']")
        page.click("#video-tray [aria-label='Add as scene: image 2']")
        page.click("#video-tray [aria-label='Add as scene: image 1']")
        page.click("#video-scenes li >> nth=2 >> text=Remove scene")
        assert page.locator("#video-scenes li").count() == 2
        scenes = page.locator("#video-scenes li")
        scenes.nth(0).locator("input[name=duration_s]").fill("1")
        scenes.nth(1).locator("input[name=duration_s]").fill("1")
        scenes.nth(1).locator("select[name=move]").select_option("pan_left")
        for name, value in {"width": "128", "height": "72", "fps": "12"}.items():
            page.fill(f"#video-frame input[name={name}]", value)
        page.fill("#video-transition input[name=transition_s]", "0.4")
        page.fill("#narration", "Hello there.")
        page.select_option("#voice-model", "espeak-ng")
        page.check("#music-on")
        page.fill("#video-music input[name=tempo_bpm]", "120")

        # no music model on this server: the failure is shown beside the music controls
        page.click("#video-run")
        issue = page.wait_for_selector("#video-music-section .issue")
        assert "music" in issue.inner_text() and "no installed model can do 'music'" in issue.inner_text()
        page.wait_for_selector("#banner:not([hidden])")
        assert "did not render" in page.inner_text("#banner")

        music_model.result()
        maker.shutdown()
        monkeypatch.setenv("STRATA_MUSIC_MODEL", str(tmp_path / "music"))
        register_weights_folder_models(registry)
        page.click("#video-run")
        page.wait_for_selector("#video-result video")
        assert page.locator("#video .issue").count() == 0
        assert "installed music models: strata-chorales" in page.inner_text("#video-music-section")
        page.wait_for_function("document.querySelector('#video-result video').readyState >= 1")
        assert abs(page.evaluate("document.querySelector('#video-result video').duration") - 1.6) < 0.15
        # ... and it plays: the browser decodes frames and the clock advances (muted: autoplay policy).
        page.evaluate("(() => { const v = document.querySelector('#video-result video'); v.muted = true; "
                      "return v.play(); })()")
        page.wait_for_function("document.querySelector('#video-result video').currentTime > 0.3")
        assert page.evaluate("document.querySelector('#video-result video').error") is None
        links = {a.inner_text(): a.get_attribute("href") for a in page.query_selector_all("#video-result a.download")}
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(shots / "studio-video.png"))
        _no_horizontal_scroll(page, "video")
        browser.close()
    assert problems == []

    fetch = lambda name: httpx.get(url.rstrip("/") + links[f"Download {name}"]).content  # noqa: E731
    info = probe_mp4(fetch("video.mp4"))
    video, audio = info["streams"]["video"], info["streams"]["audio"]
    assert (video["width"], video["height"], video["fps"]) == (128, 72, 12.0)
    assert abs(video["duration_s"] - (1 + 1 - 0.4)) < 0.1  # scenes minus the crossfade
    assert audio["sample_rate_hz"] == 48000 and audio["channels"] == 2
    assert "Hello there" in fetch("captions.vtt").decode()
    assert PIL.Image.open(io.BytesIO(fetch("poster.png"))).size == (128, 72)
    mix = fetch("sound.wav")
    assert len(mix) > 48000 * 2 * 2  # voice and music, over a second of stereo 16-bit


def _tiny_music_model(directory: Path) -> Path:
    """A random two-layer chorale model, saved as `strata train music --export` would."""
    from strata.models.music_model import MusicModel, MusicModelConfig

    cfg = MusicModelConfig(n_layer=1, n_head=2, n_embd=32, n_positions=256, dropout=0.0)
    return MusicModel.random(cfg, seed=0).save_pretrained(directory)


def _tiny_upscaler(directory: Path) -> Path:
    """An untrained one-block upscaler (its output is exactly bicubic), saved as an export would be."""
    from strata.models.upscale import UpscaleConfig, UpscaleModel

    return UpscaleModel(UpscaleConfig(channels=8, blocks=1)).save_pretrained(directory)  # zero tails
