"""io nodes: schemas the engine reads, file params, and the bundled sample photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydantic
import pytest

from strata.errors import MediaError, OpError
from strata.media.image import Image, Mask
from strata.media.image_io import save_image
from strata.ops import io as io_ops


def test_load_nodes_declare_their_file_param_and_bounds() -> None:
    spec = io_ops.load_image.__strata_node__
    assert (spec.op, spec.layer, spec.file_params, spec.inputs) == ("io.load_image", "io", ("path",), ())
    assert spec.outputs[0].type is Image
    params = spec.params_model(path="a.png")
    assert (params.path, params.max_pixels) == ("a.png", None)
    with pytest.raises(pydantic.ValidationError):
        spec.params_model(path="a.png", max_pixels=0)
    schema = io_ops.load_mask.__strata_node__.params_schema()
    assert schema["properties"]["path"]["format"] == "path"
    assert schema["properties"]["channel"]["enum"] == ["auto", "luminance", "alpha", "red", "green", "blue"]


def test_load_nodes_read_files(tmp_path: Path) -> None:
    pixels = np.random.default_rng(3).random((6, 7, 4), dtype=np.float32)
    path = save_image(Image(pixels), tmp_path / "x.png", bit_depth=16)
    assert np.abs(io_ops.load_image(path=str(path)).pixels - pixels).max() < 1e-4
    mask = io_ops.load_mask(path=str(path), channel="alpha")
    assert isinstance(mask, Mask) and np.abs(mask.values - pixels[:, :, 3]).max() < 1e-4
    with pytest.raises(MediaError, match="over the limit of 10"):
        io_ops.load_image(path=str(path), max_pixels=10)


@pytest.mark.parametrize("name", io_ops.SAMPLE_NAMES)
def test_every_sample_image_loads_without_network(name: str) -> None:
    image = io_ops.sample_image(name=name)
    assert isinstance(image, Image) and image.width >= 300 and image.height >= 300


def test_unknown_sample_names_the_choices() -> None:
    with pytest.raises(OpError, match="'name': unknown sample image 'lena'; choose one of astronaut"):
        io_ops.sample_image(name="lena")
