"""Media value types (Image, Mask, ...) and their file I/O."""

from strata.media.image import Image, Mask

__all__ = ["Image", "Mask"]
