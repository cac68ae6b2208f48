"""A tiny emoji-like dataset on disk (images.npz + manifest.jsonl) for trainer tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def shapes(n: int, seed: int = 0) -> np.ndarray:
    """n 64×64 RGBA images: a colored disc (odd i) or square (even i) on transparency."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:64, 0:64]
    out = np.zeros((n, 64, 64, 4), np.uint8)
    for i in range(n):
        cx, cy, r = rng.integers(20, 44), rng.integers(20, 44), rng.integers(8, 18)
        inside = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r if i % 2 else (abs(xx - cx) < r) & (abs(yy - cy) < r)
        out[i][inside] = [*rng.integers(0, 256, 3), 255]
    return out


def write_dataset(directory: Path, n: int = 48) -> Path:
    """Write ``n`` shapes with manifest rows the trainers and caption templates accept."""
    directory.mkdir(parents=True, exist_ok=True)
    np.savez(directory / "images.npz", images=shapes(n))
    rows = [{"source": "noto", "codepoint": f"{i:x}", "sha256": str(i), "name": "red disc" if i % 2 else "blue square",
             "short_names": [], "category": "Symbols", "subcategory": "geometric", "skin_tone": None,
             "group": f"{i:x}", "style": ["noto"], "weight": 1.0} for i in range(n)]
    (directory / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return directory
