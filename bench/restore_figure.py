"""The README's restore picture: ``examples/restore.yaml``'s three enlargements side by side.

Run: ``.venv/bin/python bench/restore_figure.py``; writes ``docs/gallery/restore_before_after.jpg``.

The workflow runs in a temporary store (the learned upscaler from ``weights/upscale``); the
panels are its ``before`` (the 100×80 input enlarged ×4 by nearest neighbour), ``lanczos``
(the classical ×4 after denoise and sharpen) and ``big`` (the learned ×4 of the same pixels),
each labelled under the picture (in ASCII: the bundled font has no "×").
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from strata.models.registry import default_registry
from strata.ops.composite import load_font
from strata.store import Store
from strata.workflow.executor import Executor
from strata.workflow.spec import load_workflow

ROOT = Path(__file__).resolve().parents[1]
PANELS = (("before", "input (100x80), nearest x4"), ("lanczos", "denoise + sharpen, Lanczos x4"),
          ("big", "denoise + sharpen, learned x4"))
LABEL_H, GAP = 30, 8


def main() -> None:
    out = ROOT / "docs" / "gallery" / "restore_before_after.jpg"
    with tempfile.TemporaryDirectory(prefix="strata-restore-") as tmp:
        store = Store(Path(tmp))
        result = Executor(store, models=default_registry()).run(load_workflow(ROOT / "examples" / "restore.yaml"))
        if result.status != "ok":
            sys.exit(f"the restore workflow failed: {result.failed}")
        pictures = [store.get_value(next(iter(result.refs[node].values()))).to_uint8()[..., :3] for node, _ in PANELS]
    h = max(p.shape[0] for p in pictures)
    w = sum(p.shape[1] for p in pictures) + GAP * (len(pictures) - 1)
    sheet = Image.new("RGB", (w, h + LABEL_H), (255, 255, 255))
    draw, font, x = ImageDraw.Draw(sheet), load_font(None, 16), 0
    for (_, label), pixels in zip(PANELS, pictures):
        sheet.paste(Image.fromarray(np.ascontiguousarray(pixels)), (x, 0))
        draw.text((x + 6, h + 6), label, fill=(0, 0, 0), font=font)
        x += pixels.shape[1] + GAP
    sheet.save(out, quality=88)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
