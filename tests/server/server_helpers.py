"""Helpers for server tests: test ops (a slow one with progress, a fake generator), workflows, polling.

Every client talks to ``http://127.0.0.1`` (the server refuses other Host names without a
token). Apps are used as context managers so their worker threads start and stop.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Callable, Iterator

import numpy as np
from fastapi.testclient import TestClient
from pydantic import Field

from strata.media import Image, Mask
from strata.models.registry import ModelEntry, ModelRegistry
from strata.server.generation import Generative
from strata.workflow.node import node

BASE = "http://127.0.0.1"
WS = "ws://127.0.0.1"
TOKEN = "test-token-0123456789abcdef"


@node("server_test.wait", layer="enhance")
def wait(image: Image, *, steps: Annotated[int, Field(ge=1, le=1000)] = 5,
         step_s: Annotated[float, Field(ge=0, le=5)] = 0.01, progress: Callable[..., None] | None = None) -> Image:
    """Sleeps ``steps`` × ``step_s``, reporting progress with a preview each step."""
    for i in range(steps):
        time.sleep(step_s)
        if progress is not None:
            progress(i + 1, steps, image)
    return image


@node("server_test.solid", layer="io")
def solid(*, value: Annotated[float, Field(ge=0, le=1)] = 0.5, size: Annotated[int, Field(ge=1, le=256)] = 8) -> Image:
    """A flat gray image."""
    return Image.solid(size, size, (value, value, value, 1.0))


@node("server_test.generate", layer="generate", model="text-to-image", output="images")
def fake_generate(*, prompt: str, negative_prompt: str = "", seed: Annotated[int, Field(ge=0)] = 0,
                  count: Annotated[int, Field(ge=1, le=8)] = 1, steps: Annotated[int, Field(ge=1, le=50)] = 2,
                  guidance: float = 4.0, sampler: str = "dpmpp", model: str | None = None,
                  loaded_model: Any = None, progress: Callable[..., None] | None = None) -> list[Image]:
    """Stands in for image.generate: seeded noise images, with progress."""
    images = [Image.from_array(np.random.default_rng(seed + i).random((8, 8, 3)).astype(np.float32))
              for i in range(count)]
    for s in range(steps):
        if progress is not None:
            progress(s + 1, steps, images[0])
    return images


@node("server_test.img2img", layer="generate", model="img2img", output="images")
def fake_img2img(image: Image, mask: Mask | None = None, *, prompt: str, seed: Annotated[int, Field(ge=0)] = 0,
                 count: Annotated[int, Field(ge=1, le=8)] = 1, strength: Annotated[float, Field(ge=0, le=1)] = 0.75,
                 loaded_model: Any = None) -> list[Image]:
    """Stands in for img2img / inpaint: mixes the image toward seeded noise by ``strength`` (in the mask)."""
    out = []
    for i in range(count):
        noise = np.random.default_rng(seed + i).random(image.pixels.shape[:2] + (3,)).astype(np.float32)
        weight = strength * (mask.values[..., None] if mask is not None else 1.0)
        out.append(Image.from_array(image.rgb * (1 - weight) + noise * weight))
    return out


FAKE_GENERATORS = {
    "text-to-image": Generative("server_test.generate", "text-to-image", "text-to-image"),
    "img2img": Generative("server_test.img2img", "img2img", "image-to-image"),
    "inpaint": Generative("server_test.img2img", "img2img", "inpainting"),
}


def fake_registry(tmp_path: Path) -> ModelRegistry:
    """A registry with tiny stand-in models (the fake ops ignore them)."""
    weights = tmp_path / "fake.safetensors"
    weights.write_bytes(b"not real weights")
    registry = ModelRegistry()
    registry.add(ModelEntry("fake-t2i", {"text-to-image", "img2img"}, [weights], loader=lambda files: object()))
    return registry


def sample_workflow(stops: float = 0.25, *, size: int = 8, value: float = 0.5, extra: list[dict] | None = None,
                    name: str = "test") -> dict[str, Any]:
    """A cheap classical workflow writing out.png."""
    nodes = [{"id": "src", "op": "server_test.solid", "params": {"value": value, "size": size}},
             {"id": "grade", "op": "enhance.exposure", "inputs": {"image": "src"}, "params": {"stops": stops}}]
    return {"name": name, "nodes": nodes + (extra or []), "outputs": {"out.png": (extra or nodes)[-1]["id"]}}


def wait_job(client: TestClient, job_id: str, *, timeout_s: float = 10.0, headers: dict | None = None) -> dict:
    """Poll until the job ends; fail the test on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = client.get(f"/api/jobs/{job_id}", headers=headers or {}).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} did not finish in {timeout_s} s: {job}")


@contextmanager
def running(client_factory: Callable[..., TestClient], **kwargs: Any) -> Iterator[TestClient]:
    """A client whose app stops (workers joined) when the block ends — a server 'restart'."""
    client = client_factory(**kwargs)
    try:
        yield client
    finally:
        client.__exit__(None, None, None)


def blob_count(store_dir: Path) -> int:
    return sum(1 for p in (store_dir / "blobs").rglob("*") if p.is_file())


@contextmanager
def serve_in_thread(app: Any) -> Iterator[int]:
    """Run ``app`` with uvicorn on a free loopback port in a thread; yields the port."""
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(20)
