"""Regenerate the shipped .cube LUTs: ``python src/strata/assets/luts/make_luts.py``.

Each grade is a closed-form function of an sRGB color in [0, 1], sampled on a 33³ grid
(the common size for grading LUTs) and written with :func:`strata.ops.enhance.write_cube`.
Deterministic: running it again reproduces the files byte for byte.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from strata.ops.enhance import identity_table, write_cube

SIZE = 33
LUMA = np.array([0.2126, 0.7152, 0.0722])


def s_curve(x: np.ndarray, strength: float) -> np.ndarray:
    """Smoothstep mixed with identity: more midtone contrast, endpoints fixed."""
    return (1 - strength) * x + strength * x * x * (3 - 2 * x)


def film_warm(rgb: np.ndarray) -> np.ndarray:
    """Faded warm print: soft S-curve, lifted blacks, slightly muted color, warm highlights."""
    out = s_curve(rgb, 0.35)
    luma = out @ LUMA
    out = luma[..., None] + 0.85 * (out - luma[..., None])  # 15% less saturation
    out = out * np.array([1.06, 1.0, 0.90]) ** luma[..., None]  # warmth grows with brightness
    return 0.035 + 0.94 * np.clip(out, 0, 1)  # black point lifted to ~9/255, white to ~249/255


def teal_orange(rgb: np.ndarray) -> np.ndarray:
    """Split tone: shadows toward teal, highlights and skin tones toward orange; a bit more punch."""
    out = s_curve(rgb, 0.5)
    luma = (out @ LUMA)[..., None]
    teal, orange = np.array([0.0, 0.55, 0.6]), np.array([1.0, 0.62, 0.3])
    out = out + 0.18 * (1 - luma) ** 2 * (teal - out) + 0.16 * luma**2 * (orange - out)
    luma = (out @ LUMA)[..., None]
    return np.clip(luma + 1.15 * (out - luma), 0, 1)  # 15% more saturation


if __name__ == "__main__":
    here = Path(__file__).resolve().parent
    grid = identity_table(SIZE).astype(np.float64)  # grid[b, g, r] = (r, g, b)
    for grade in (film_warm, teal_orange):
        write_cube(here / f"{grade.__name__}.cube", grade(grid), title=f"strata {grade.__name__}")
        print("wrote", here / f"{grade.__name__}.cube")
