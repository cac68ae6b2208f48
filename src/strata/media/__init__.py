"""Media value types (Image, Mask, ...) and their file I/O."""

from strata.media.image import Image, Mask
from strata.media.image_io import (
    ImageInfo,
    encode_image,
    load_image,
    load_mask,
    probe_image,
    save_image,
)

__all__ = ["Image", "ImageInfo", "Mask", "encode_image", "load_image", "load_mask", "probe_image", "save_image"]
