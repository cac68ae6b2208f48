"""io layer: nodes that bring images into a workflow.

They are pure apart from reading their input file, whose content hash the engine puts in the
cache key (``InputFile`` params), so editing the file reruns the node.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import Field

from strata.errors import OpError
from strata.media import image_io
from strata.media.image import Image, Mask
from strata.workflow.node import InputFile, node


InputPath = Annotated[InputFile, Field(min_length=1, description="path of the file to read")]
MaxPixels = Annotated[
    int | None,
    Field(ge=1, description="refuse images with more pixels than this (default: STRATA_MAX_PIXELS or 8192×8192)"),
]

# Photographs and scans that ship inside scikit-image (no download), by their data function.
SampleName = Literal[
    "astronaut",
    "camera",
    "chelsea",
    "coffee",
    "coins",
    "colorwheel",
    "hubble_deep_field",
    "immunohistochemistry",
    "logo",
    "moon",
    "retina",
    "rocket",
]
SAMPLE_NAMES: tuple[str, ...] = SampleName.__args__  # type: ignore[attr-defined]


@node("io.load_image", layer="io")
def load_image(*, path: InputPath, max_pixels: MaxPixels = None) -> Image:
    """Load a PNG, JPEG, WebP or TIFF file (8 or 16 bits; EXIF orientation applied).

    Args:
        path: the image file.
        max_pixels: pixel limit checked before decoding (default: STRATA_MAX_PIXELS or 8192×8192).
    """
    return image_io.load_image(path, max_pixels=max_pixels)


@node("io.load_mask", layer="io")
def load_mask(
    *,
    path: InputPath,
    channel: Annotated[
        image_io.MaskChannel,
        Field(description="auto = alpha if the file has transparency, else luminance"),
    ] = "auto",
    max_pixels: MaxPixels = None,
) -> Mask:
    """Load one channel of an image file as a mask (1 = selected).

    Args:
        path: the image file.
        channel: "auto" (default: alpha when the file has transparency, else luminance),
            "luminance", "alpha", "red", "green" or "blue".
        max_pixels: pixel limit checked before decoding.
    """
    return image_io.load_mask(path, channel=channel, max_pixels=max_pixels)


@node("io.sample_image", layer="io")
def sample_image(
    *, name: Annotated[SampleName, Field(description="a photograph bundled with scikit-image")] = "astronaut"
) -> Image:
    """A real photograph bundled with scikit-image, so examples run without any files.

    Args:
        name: which image (default "astronaut", 512×512): astronaut, camera (gray), chelsea
            (a cat), coffee, coins (gray), colorwheel, hubble_deep_field, immunohistochemistry,
            logo, moon (gray), retina, rocket.
    """
    import skimage.data  # imported here: it is slow to import and only this node needs it

    if name not in SAMPLE_NAMES:  # the engine validates params; direct Python calls land here
        raise OpError(f"unknown sample image {name!r}; choose one of {', '.join(SAMPLE_NAMES)}", param="name")
    array = getattr(skimage.data, name)()
    return Image.from_array(np.asarray(array))


__all__ = ["SAMPLE_NAMES", "load_image", "load_mask", "sample_image"]
