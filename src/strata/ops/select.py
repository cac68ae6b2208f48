"""Select layer: choose among candidates.

``image.pick`` takes one image of a batch by its index (what a person does after looking at
the batch). ``image.select`` ranks a batch, drops near-duplicates and keeps the best K, with a
contact sheet showing every candidate and its score — "generate 8, keep the best" is one line of
a workflow. Given a ``prompt`` and an installed text-image scorer (capability
"image-text-score", :mod:`strata.models.scorer`), it ranks mostly by agreement with the prompt
(the scorer's cosine similarity) and breaks near-ties with the technical measures; without
either, it ranks by the technical measures alone.

Technical measures (:func:`measure`), on the picture over white, weighted by alpha:

- **sharpness** — variance of the Laplacian of luminance (Pech-Pacheco et al. 2000): blur lowers it;
- **noise** — the wavelet estimate of Gaussian noise σ (Donoho & Johnstone 1994: median absolute
  finest diagonal detail coefficient / 0.6745), over the object's interior only (an emoji's
  flat background would otherwise make every estimate 0);
- **clipping** — the share of color values at 0 or 1 where the image is opaque;
- **alpha fuzz** — the share of pixels that are neither clear nor opaque (0.05 < α < 0.95), beyond
  what an anti-aliased outline needs (a one-pixel band around the opaque shape).

Each measure becomes a rank among the candidates (ties share a rank), and the technical score is
the mean of the ranks scaled to [0, 1] (1 = best on every measure). Rank-based scores need no
calibration between measures of different units, and a batch of one scores 1. With a prompt,
the score is ``text_weight`` × the rank of the text agreement + (1 − ``text_weight``) × the
technical score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import Field

from strata.errors import ModelError, OpError, StrataWarning
from strata.media.image import Image
from strata.workflow.node import node

MEASURES = ("sharpness", "noise", "clipping", "alpha_fuzz")
HIGHER_IS_BETTER = {"sharpness": True, "noise": False, "clipping": False, "alpha_fuzz": False}


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


@dataclass(frozen=True)
class Candidate:
    """One image's measures, score and fate in :func:`select`."""

    index: int
    measures: dict[str, float]
    score: float
    duplicate_of: int | None
    kept: bool
    text_score: float | None = None  # cosine similarity with the prompt, when a scorer ranked it


def measure(image: Image) -> dict[str, float]:
    """The technical measures of one image (see the module docstring)."""
    import cv2
    import pywt

    alpha = image.alpha
    rgb = image.rgb * alpha[..., None] + (1.0 - alpha[..., None])  # over white, as it is usually seen
    luma = rgb @ np.array([0.2126, 0.7152, 0.0722], np.float32)
    weight = alpha if alpha.sum() > 0 else np.ones_like(alpha)
    lap = cv2.Laplacian(luma, cv2.CV_32F)
    sharp = float(np.average((lap - np.average(lap, weights=weight)) ** 2, weights=weight))
    opaque = alpha > 0.95
    _, (_, _, diagonal) = pywt.dwt2(luma, "db1")
    interior = cv2.erode(opaque.astype(np.uint8), np.ones((5, 5), np.uint8))[::2, ::2].astype(bool)
    interior = interior[: diagonal.shape[0], : diagonal.shape[1]]
    detail = diagonal[interior] if interior.any() else diagonal.ravel()
    noise = float(np.median(np.abs(detail)) / 0.6745)
    color = image.rgb[opaque]
    clipping = float(((color <= 0.0) | (color >= 1.0)).mean()) if color.size else 0.0
    partial = (alpha > 0.05) & (alpha < 0.95)
    outline = cv2.dilate(opaque.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~opaque
    fuzz = float((partial & ~outline).mean())
    return {"sharpness": sharp, "noise": noise, "clipping": clipping, "alpha_fuzz": fuzz}


def _ranks(values: list[float], higher_is_better: bool) -> np.ndarray:
    """Rank in [0, 1] per value (1 = best), ties sharing the mean rank."""
    from scipy.stats import rankdata

    v = np.asarray(values, np.float64)
    r = rankdata(v if higher_is_better else -v, method="average")
    return (r - 1) / max(len(v) - 1, 1) if len(v) > 1 else np.ones(1)


def rank_candidates(images: list[Image], *, keep: int, max_hash_distance: int, text_scores: np.ndarray | None = None,
                    text_weight: float = 0.0) -> list[Candidate]:
    """Measure, score, mark near-duplicates (perceptual hash within ``max_hash_distance`` bits of a
    better-scored image) and keep the best ``keep`` of the rest. ``text_scores`` (one per image,
    higher = agrees more with the prompt) enter the score by their rank, weighted ``text_weight``."""
    import imagehash
    from PIL import Image as PILImage

    measures = [measure(im) for im in images]
    score = np.mean([_ranks([m[k] for m in measures], HIGHER_IS_BETTER[k]) for k in MEASURES], axis=0)
    if text_scores is not None:
        score = text_weight * _ranks(list(text_scores), True) + (1.0 - text_weight) * score
    hashes = [imagehash.phash(PILImage.fromarray(im.to_uint8()[:, :, :3] if im.is_opaque else
                                                 _over_white_u8(im))) for im in images]
    order = sorted(range(len(images)), key=lambda i: (-score[i], i))
    dup: dict[int, int] = {}
    kept: list[int] = []
    for i in order:
        better = next((j for j in order[: order.index(i)] if j not in dup and hashes[i] - hashes[j] <= max_hash_distance),
                      None)
        if better is not None:
            dup[i] = better
        elif len(kept) < keep:
            kept.append(i)
    return [Candidate(i, measures[i], float(score[i]), dup.get(i), i in kept,
                      None if text_scores is None else float(text_scores[i])) for i in range(len(images))]


def _over_white_u8(image: Image) -> np.ndarray:
    a = image.alpha[..., None]
    return np.rint((image.rgb * a + (1 - a)) * 255).astype(np.uint8)


@node("image.select", layer="select", version=2, outputs={"images": list[Image], "best": Image, "sheet": Image},
      model="image-text-score")
def select(
    images: list[Image],
    *,
    prompt: Annotated[str, Field(max_length=1000, description="what the images should show; ranks by agreement "
                                                                "with it when a text-image scorer is installed")] = "",
    text_weight: Annotated[float, Field(ge=0.0, le=1.0, description="share of the prompt agreement in the score "
                                                                      "(the rest: technical quality)")] = 0.8,
    keep: Annotated[int, Field(ge=1, le=64, description="how many to keep")] = 1,
    max_hash_distance: Annotated[int, Field(ge=0, le=32, description="near-duplicate: perceptual hashes within "
                                                                     "this many of 64 bits")] = 6,
    sheet_columns: Annotated[int, Field(ge=1, le=16, description="candidates per row of the contact sheet")] = 4,
    model: Annotated[str | None, Field(description="registered text-image scorer id (default: strata's own, "
                                                   "when installed)")] = None,
    loaded_model: Any = None,
) -> dict[str, Any]:
    """Rank candidates by agreement with ``prompt`` and technical quality, drop near-duplicates,
    keep the best ``keep``.

    Args:
        images: the candidates (e.g. ``image.generate`` with count 8).
        prompt: what they should show (default "": rank by technical quality only). Needs a
            text-image scorer (``loaded_model``, injected by the engine when one is installed);
            without one the ranking is technical and a warning says so.
        text_weight: [0, 1] (default 0.8): the prompt agreement's share of the score; at 0.8 a
            candidate one place lower on agreement (of 8) needs a clearly better technical rank
            to win.
        keep: 1..64 (default 1); fewer come out when near-duplicates leave fewer distinct images.
        max_hash_distance: 0..32 bits (default 6) between 64-bit perceptual hashes (pHash) below
            which a lower-scored image counts as a duplicate of a better one.
        sheet_columns: columns of the contact sheet (default 4).
        model: id of a registered scorer (default: the first installed, strata's own).

    Returns:
        images: the kept ones, best first; best: the first of them; sheet: every candidate with
        its score and, with a prompt, its text agreement (kept ones framed in green, duplicates
        marked).
    """
    if not images:
        raise OpError("no candidates: connect a node that makes at least one image", param="images")
    if not 0.0 <= text_weight <= 1.0:  # the engine validates params; direct Python calls land here
        raise OpError(f"text_weight must be in [0, 1], got {text_weight!r}", param="text_weight")
    text_scores = None
    if prompt.strip():
        if loaded_model is None:
            warnings.warn(StrataWarning("image.select: no text-image scorer is installed, so the prompt is not used; "
                                        "ranked by technical quality only (train one with `strata train scorer`)"),
                          stacklevel=2)
        else:
            try:
                text_scores = loaded_model.score([im.pixels for im in images], prompt)
            except ModelError as exc:
                raise OpError(str(exc), param="model") from exc
    ranked = rank_candidates(images, keep=keep, max_hash_distance=max_hash_distance, text_scores=text_scores,
                             text_weight=text_weight)
    best = sorted((c for c in ranked if c.kept), key=lambda c: (-c.score, c.index))
    kept = [images[c.index] for c in best]
    return {"images": kept, "best": kept[0], "sheet": contact_sheet(images, ranked, sheet_columns)}


def contact_sheet(images: list[Image], ranked: list[Candidate], columns: int) -> Image:
    """A grid of the candidates over white with '#i score' under each (and 'text <cosine>' on a
    second line when a scorer ranked them); kept ones framed in green."""
    from PIL import Image as PILImage, ImageDraw

    cell = max(96, max(max(im.width, im.height) for im in images))
    with_text = any(c.text_score is not None for c in ranked)
    label_h, pad = 28 if with_text else 16, 6
    rows = (len(images) + columns - 1) // columns
    sheet = PILImage.new("RGB", (columns * (cell + pad) + pad, rows * (cell + label_h + pad) + pad), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for c, im in zip(ranked, images):
        r, col = divmod(c.index, columns)
        x, y = pad + col * (cell + pad), pad + r * (cell + label_h + pad)
        scale = cell / max(im.width, im.height)
        size = (max(1, round(im.width * scale)), max(1, round(im.height * scale)))
        thumb = PILImage.fromarray(_over_white_u8(im)).resize(size, PILImage.NEAREST if scale >= 1 else PILImage.LANCZOS)
        sheet.paste(thumb, (x + (cell - size[0]) // 2, y + (cell - size[1]) // 2))
        if c.kept:
            draw.rectangle([x - 3, y - 3, x + cell + 2, y + cell + 2], outline=(20, 160, 60), width=3)
        note = f"#{c.index} {c.score:.2f}" + (f" dup of #{c.duplicate_of}" if c.duplicate_of is not None else "")
        draw.text((x, y + cell + 2), note, fill=(30, 30, 30))
        if c.text_score is not None:
            draw.text((x, y + cell + 14), f"text {c.text_score:+.3f}", fill=(30, 30, 30))
    return Image.from_array(np.asarray(sheet))
