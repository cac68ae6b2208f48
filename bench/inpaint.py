"""Inpainting and outpainting with the built-in model: seams and prompt adherence, against pasting.

    python bench/inpaint.py [--checkpoint RUN_DIR | --model DIR] [--quick] [--gallery]
    → bench/results/inpaint.json (+ docs/gallery/inpaint.png with --gallery)

For 100 dataset concepts (one Noto image each; bench/quality.py's concepts), two kinds of hole:
a centered 32×32 box ("inpaint", prompt = *another* concept: replace the middle) and the right
half ("outpaint", prompt = the image's own concept: continue it). Each hole is filled two ways,
with the same seed, prompt and compositing (feathered paste at the model's size):

* **inpaint** — :func:`strata.models.image_pipeline.variation` with a mask (the model sees the kept pixels);
* **paste** — the baseline the issue names: the unconditional (text-to-image) generation for
  the same prompt and seed, pasted into the hole.

Measures:
* **Seam error** — mean absolute RGB difference (on white, 0–255) between pixel pairs that
  straddle the hole's boundary (4-neighbours, one inside, one outside). The original image's
  own value over the same pairs is reported as the floor (a natural edge costs something).
* **Adherence** — bench/quality.py's classifier (trained on real dataset images only) on the
  result: top-5 rate for the prompt's concept; for the box, compared with the original image
  (which shows the other concept) and with the paste.

The dataset images were seen in training as whole pictures (the masks are new draws); the
photos in ``--photos`` (scikit-image's samples, never trained on) measure seams on images the
model did not make.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_result  # noqa: E402
from quality import GALLERY, eval_data, eval_parser, load_model, save_grid, topk  # noqa: E402

from strata.media.image import Image  # noqa: E402
from strata.models.image_pipeline import feather_weight, generate, paste_back, variation  # noqa: E402
from strata.models.samplers import DEFAULT_GUIDANCE  # noqa: E402


def box_mask(side: int = 64, box: int = 32) -> np.ndarray:
    m = np.zeros((side, side), np.float32)
    a = (side - box) // 2
    m[a:a + box, a:a + box] = 1
    return m


def half_mask(side: int = 64) -> np.ndarray:
    m = np.zeros((side, side), np.float32)
    m[:, side // 2:] = 1
    return m


def on_white(pixels: np.ndarray) -> np.ndarray:
    return (pixels[..., :3] * pixels[..., 3:] + (1 - pixels[..., 3:])) * 255


def seam_error(pixels: np.ndarray, hole: np.ndarray) -> float:
    """Mean |RGB difference| (0–255, on white) over 4-neighbour pairs with one pixel in the hole."""
    rgb, h = on_white(pixels), hole > 0.5
    diffs = []
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(None, -1), slice(1, None)
        straddle = h[tuple(a)] != h[tuple(b)]
        diffs.append(np.abs(rgb[tuple(a)] - rgb[tuple(b)])[straddle].mean(axis=1))
    return float(np.concatenate(diffs).mean())


def to_tensor(images: list[Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.ascontiguousarray(im.pixels)).permute(2, 0, 1) for im in images])


def fill_both(model, image: Image, mask: np.ndarray, prompt: str, seed: int, steps: int,
              guidance: float) -> tuple[Image, Image]:
    """(inpainted, pasted unconditional generation) for one hole; same seed, prompt and compositing."""
    filled = variation(model, image, prompt, mask=mask, strength=1.0, seed=seed, steps=steps,
                       guidance=guidance).images[0]
    fresh = generate(model, prompt, seed=seed, steps=steps, guidance=guidance).images[0]
    pasted = paste_back(image, fresh, feather_weight(mask, sigma=0.75))
    return filled, pasted


def photos(model, n_seeds: int, steps: int, guidance: float) -> dict:
    """Seams on scikit-image photos (never trained on), a box in the middle of each, at full size."""
    import skimage.data

    from strata.ops.edit import resample

    names = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry")
    rows = {"inpaint": [], "paste": [], "original": []}
    for name in names:
        rgb = getattr(skimage.data, name)()[..., :3].astype(np.float32) / 255
        rgb = resample(np.dstack([rgb, np.ones(rgb.shape[:2], np.float32)]), (256, int(256 * rgb.shape[0] / rgb.shape[1])),
                       "lanczos")
        img = Image(rgb)
        mask = np.zeros(rgb.shape[:2], np.float32)
        h, w = mask.shape
        mask[h // 3: 2 * h // 3, w // 3: 2 * w // 3] = 1
        for s in range(n_seeds):
            filled = variation(model, img, "", mask=mask, strength=1.0, seed=s, steps=steps, guidance=1.0).images[0]
            fresh = generate(model, "", seed=s, steps=steps, guidance=1.0).images[0]
            sigma = max(0.75, 0.75 * max(img.width, img.height) / model.cfg.image_size)
            pasted = paste_back(img, fresh, feather_weight(mask, sigma=sigma))
            rows["inpaint"].append(seam_error(filled.pixels, mask))
            rows["paste"].append(seam_error(pasted.pixels, mask))
        rows["original"].append(seam_error(img.pixels, mask))
    return {"images": list(names), "seeds": n_seeds, "size": "256 px wide, middle third masked, empty prompt",
            **{f"seam_{k}": round(float(np.mean(v)), 2) for k, v in rows.items()}}


def main() -> None:
    ap = eval_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="25 concepts, 1 photo seed")
    ap.add_argument("--gallery", action="store_true", help="also write docs/gallery/inpaint.png")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()
    data = eval_data(args.classifier_steps)
    concepts, x, y, src, clf = data.concepts, data.x, data.y, data.src, data.clf
    model, model_desc = load_model(args)
    if not model.cfg.inpaint:
        raise SystemExit(f"{model_desc} has no mask input (config inpaint: false); nothing to measure")
    model.unet.eval()
    steps, guidance = 20, DEFAULT_GUIDANCE
    n = 25 if args.quick else len(concepts)
    # One Noto image per concept (the first): the same picture style for every concept.
    first = {}
    for i, (label, source) in enumerate(zip(y.tolist(), src)):
        if source == "noto" and label not in first:
            first[label] = i
    picks = [first[c] for c in range(n)]
    seams = {k: {"inpaint": [], "paste": [], "original": []} for k in ("box", "outpaint")}
    outs = {k: {"inpaint": [], "paste": []} for k in ("box", "outpaint")}
    gallery_rows = []
    for j, idx in enumerate(picks):
        img = Image(x[idx].permute(1, 2, 0).numpy().copy())
        own = y[idx].item()
        other = (own + 37) % len(concepts)  # a fixed, unrelated concept to put in the middle
        for kind, mask, target in (("box", box_mask(), other), ("outpaint", half_mask(), own)):
            filled, pasted = fill_both(model, img, mask, concepts[target], seed=j, steps=steps, guidance=guidance)
            seams[kind]["inpaint"].append(seam_error(filled.pixels, mask))
            seams[kind]["paste"].append(seam_error(pasted.pixels, mask))
            seams[kind]["original"].append(seam_error(img.pixels, mask))
            outs[kind]["inpaint"].append((filled, target))
            outs[kind]["paste"].append((pasted, target))
            if j < 6:
                shown = Image(np.dstack([np.repeat(1 - 0.5 * mask[..., None], 3, 2), np.ones((64, 64, 1), np.float32)]))
                gallery_rows.append([img, shown, filled, pasted])
        if (j + 1) % 10 == 0:
            print(f"  {j + 1}/{n} images ({time.time() - t0:.0f} s)", flush=True)

    def adherence(pairs: list[tuple[Image, int]]) -> dict:
        return topk(clf, to_tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs]))

    originals = [(Image(x[i].permute(1, 2, 0).numpy().copy()), (y[i].item() + 37) % len(concepts)) for i in picks]
    result = {
        "model": model_desc,
        "settings": {"steps": steps, "guidance": guidance, "sampler": "dpmpp", "concepts": n,
                     "box": "32×32 centered, prompt = another concept", "outpaint": "right half, prompt = own concept"},
        "seam_error_0_255": {k: {m: round(float(np.mean(v)), 2) for m, v in d.items()} for k, d in seams.items()},
        "inpaint_beats_paste_seam": {k: float(np.mean(np.array(d["inpaint"]) < np.array(d["paste"])))
                                     for k, d in seams.items()},
        "adherence_top5": {
            "box_inpaint": adherence(outs["box"]["inpaint"]),
            "box_paste": adherence(outs["box"]["paste"]),
            "box_original_image": adherence(originals),
            "outpaint_inpaint": adherence(outs["outpaint"]["inpaint"]),
            "outpaint_paste": adherence(outs["outpaint"]["paste"]),
        },
        "photos_not_trained_on": photos(model, 1 if args.quick else 3, steps, guidance),
        "seconds": round(time.time() - t0, 1),
    }
    for k, d in result["seam_error_0_255"].items():
        print(f"{k}: seam inpaint {d['inpaint']:.1f} vs paste {d['paste']:.1f} (original {d['original']:.1f})")
    print("adherence:", {k: v["top5"] for k, v in result["adherence_top5"].items()})
    print("photos:", result["photos_not_trained_on"])
    if args.gallery:
        path = save_grid(to_tensor([im for row in gallery_rows for im in row]), 8, GALLERY / "inpaint.png",
                         labels=[concepts[y[i].item()] for i in picks[:6]])
        print(f"wrote {path}")
    print(f"wrote {write_result('inpaint', result)}")


if __name__ == "__main__":
    main()
