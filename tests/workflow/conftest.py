"""Tiny test-only ops whose calls are counted, so tests can see exactly what executed."""

from __future__ import annotations

import collections
import time
from typing import Annotated

import numpy as np
import pytest
from pydantic import Field

from strata.errors import OpError
from strata.media import Image, Mask
from strata.workflow.node import REGISTRY, InputFile, node

CALLS: collections.Counter[str] = collections.Counter()


@node("test.solid", layer="io")
def solid(*, value: Annotated[float, Field(ge=0, le=1, description="gray level")] = 0.5,
          width: Annotated[int, Field(ge=1, le=4096)] = 8, height: Annotated[int, Field(ge=1, le=4096)] = 8) -> Image:
    """A flat gray image."""
    CALLS["test.solid"] += 1
    return Image.solid(width, height, (value, value, value, 1.0))


@node("test.scale", layer="enhance")
def scale(image: Image, *, factor: Annotated[float, Field(ge=0, le=10)] = 1.0) -> Image:
    """Multiply colors by ``factor``."""
    CALLS["test.scale"] += 1
    p = image.pixels.copy()
    p[..., :3] = np.clip(p[..., :3] * factor, 0, 1)
    return Image(p)


@node("test.mix", layer="composite")
def mix(a: Image, b: Image, *, t: Annotated[float, Field(ge=0, le=1)] = 0.5) -> Image:
    """Linear mix of two images."""
    CALLS["test.mix"] += 1
    if a.size != b.size:
        raise OpError(f"a is {a.size}, b is {b.size}; sizes must match", param="b")
    return Image(a.pixels * (1 - t) + b.pixels * t)


@node("test.stack", layer="composite")
def stack(images: list[Image], *, gain: float = 1.0) -> Image:
    """Mean of a list of images."""
    CALLS["test.stack"] += 1
    return Image(np.clip(np.mean([i.pixels for i in images], axis=0) * gain, 0, 1))


@node("test.noise", layer="generate")
def noise(*, seed: Annotated[int, Field(ge=0)] = 0, size: int = 8) -> Image:
    """Seeded noise."""
    CALLS["test.noise"] += 1
    rng = np.random.default_rng(seed)
    return Image.from_array(rng.random((size, size, 3)).astype(np.float32))


@node("test.to_mask", layer="edit")
def to_mask(image: Image) -> Mask:
    """Luminance as a mask."""
    CALLS["test.to_mask"] += 1
    return Mask(image.rgb.mean(axis=2))


@node("test.read", layer="io")
def read(*, path: InputFile) -> Image:
    """An image whose gray level is the first byte of a file."""
    CALLS["test.read"] += 1
    v = open(path, "rb").read(1)[0] / 255
    return Image.solid(4, 4, (v, v, v, 1.0))


@node("test.boom", layer="enhance")
def boom(image: Image, *, kind: str = "op") -> Image:
    """Always fails."""
    CALLS["test.boom"] += 1
    if kind == "op":
        raise OpError("this op always fails", param="kind")
    raise RuntimeError("unexpected bug")


@node("test.sleep", layer="enhance")
def sleep(image: Image, *, seconds: float = 0.1) -> Image:
    """Sleeps (for interruption tests)."""
    CALLS["test.sleep"] += 1
    time.sleep(seconds)
    return image


@pytest.fixture(autouse=True)
def _reset_calls():
    CALLS.clear()
    yield


@pytest.fixture
def calls():
    return CALLS
