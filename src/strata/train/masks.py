"""Random inpainting masks for training (1 = repaint), one kind per image.

The kinds cover what users paint (LaMa, Suvorov et al. 2022, and SD-inpainting train on the
same mix): "full" (repaint everything — text-to-image, so one model does both), "box" (a
rectangle), "strokes" (thick brush lines), "border" (one or more sides: outpainting) and
"object" (the item's own silhouette, dilated: replace the object, keep its surroundings).
Masks are a pure function of the torch generator's state, so a resumed run draws the same ones.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from strata.errors import StrataError

KINDS = ("full", "box", "strokes", "border", "object")


def check_mix(mix: dict[str, float]) -> dict[str, float]:
    """Validate ``{kind: weight}`` from the training config; returns it normalized to sum 1."""
    unknown = set(mix) - set(KINDS)
    if unknown:
        raise StrataError(f"data.inpaint_masks has unknown kinds {sorted(unknown)}; known: {', '.join(KINDS)}")
    if any(float(w) < 0 for w in mix.values()) or sum(float(w) for w in mix.values()) <= 0:
        raise StrataError("data.inpaint_masks weights must be ≥ 0 and not all 0")
    total = sum(float(w) for w in mix.values())
    return {k: float(w) / total for k, w in mix.items()}


def random_masks(alpha: torch.Tensor, mix: dict[str, float], g: torch.Generator) -> torch.Tensor:
    """One mask per image.

    Args:
        alpha: (B, H, W) alpha of the batch's images in [0, 1] (for "object" masks).
        mix: normalized ``{kind: probability}`` (:func:`check_mix`).
        g: the run's generator.

    Returns:
        (B, 1, H, W) float32, 1 = repaint.
    """
    b, h, w = alpha.shape
    kinds, probs = list(mix), torch.tensor([mix[k] for k in mix], dtype=torch.float64)
    picks = torch.multinomial(probs, b, replacement=True, generator=g).tolist()
    seeds = torch.randint(0, 2**31 - 1, (b,), generator=g).tolist()
    out = np.zeros((b, 1, h, w), np.float32)
    for i, (k, s) in enumerate(zip(picks, seeds)):
        out[i, 0] = _draw(kinds[k], alpha[i].numpy(), np.random.default_rng(s))
    return torch.from_numpy(out)


def _draw(kind: str, alpha: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = alpha.shape
    m = np.zeros((h, w), np.uint8)
    if kind == "full":
        m[:] = 1
    elif kind == "box":
        bw, bh = rng.integers(w // 5, w * 3 // 4 + 1), rng.integers(h // 5, h * 3 // 4 + 1)
        x, y = rng.integers(0, w - bw + 1), rng.integers(0, h - bh + 1)
        m[y:y + bh, x:x + bw] = 1
    elif kind == "strokes":
        for _ in range(rng.integers(1, 4)):
            pts = np.cumsum(rng.normal(0, w / 6, (rng.integers(2, 6), 2)), axis=0) + rng.uniform(0, w, 2)
            cv2.polylines(m, [np.clip(pts, 0, w - 1).astype(np.int32)], False, 1, int(rng.integers(w // 16, w // 5)))
    elif kind == "border":
        sides = rng.permutation(4)[: rng.integers(1, 5)]
        for side in sides:
            d = int(rng.integers(h // 8, h // 2))
            if side == 0:
                m[:d] = 1
            elif side == 1:
                m[-d:] = 1
            elif side == 2:
                m[:, :d] = 1
            else:
                m[:, -d:] = 1
    elif kind == "object":
        obj = (alpha > 0.5).astype(np.uint8)
        if obj.sum() < 16:  # an (almost) empty image has no object: repaint a box instead
            return _draw("box", alpha, rng)
        r = int(rng.integers(1, 5))
        m = cv2.dilate(obj, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    else:
        raise StrataError(f"unknown mask kind {kind!r}")
    return m.astype(np.float32)
