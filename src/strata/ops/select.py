"""Select layer: choose among candidates.

``image.pick`` takes one image of a batch by its index (what a person does after looking at
the batch). Learned ranking of candidates belongs here too, when its scorer is trained.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from strata.errors import OpError
from strata.media.image import Image
from strata.workflow.node import node


@node("image.pick", layer="select", version=1)
def pick(
    images: list[Image],
    *,
    index: Annotated[int, Field(ge=0, le=4095, description="which image of the list, from 0")] = 0,
) -> Image:
    """One image of a list (e.g. of ``image.generate``'s batch), by its index.

    Args:
        images: the candidates.
        index: position in the list, from 0 (default 0: the first).
    """
    if not images:
        raise OpError("the list of images is empty; connect a node that makes at least one", param="images")
    if index >= len(images):
        raise OpError(f"index {index} is past the end of the {len(images)} images (0–{len(images) - 1})",
                      param="index")
    return images[index]
