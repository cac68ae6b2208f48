"""The studio in a real browser (Debian's chromium, headless, driven by Playwright): generate a
batch and pick one, run a workflow on an uploaded image, rerun from history with a changed
param, read a file's provenance. Skipped where chromium or playwright is missing.

Screenshots go to ``STRATA_SCREENSHOTS`` if set (the README's come from here), else tmp_path.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Iterator

import numpy as np
import PIL.Image
import pytest

from server_helpers import FAKE_GENERATORS, fake_registry, serve_in_thread
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
