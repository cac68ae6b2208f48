"""Quality of the built-in text-to-image model: adherence, novelty, diversity, sweeps, grids.

    python bench/quality.py                          # the shipped weights (weights/image)
    python bench/quality.py --checkpoint RUN_DIR     # a training run's EMA weights, before export
    python bench/quality.py --quick                  # fewer seeds and a smaller sweep (~4× faster)
    → bench/results/quality.json, bench/results/quality_*.png, docs/gallery/generated_grid.png (--readme-grid)

(a) **Adherence.** A small CNN classifier, trained here on *real* dataset images only (never
    used to train the generator), names the concept of each generated image among 100 concepts
    (fruit, vegetables, food, animals, plants, vehicles, objects; chance top-1 1 %, top-5 5 %).
    Its ceiling is measured honestly by leave-one-source-out cross-validation: trained on two
    emoji sets (e.g. Noto + Twemoji), tested on the third (Fluent 3D), rotated over the three.
    The classifier used on generated images is trained on all three sets.
(b) **Novelty.** For each generated image, the nearest training image by SSIM (candidates
    pre-selected by L2 at 16×16); a near-copy is SSIM > 0.9.
(c) **Diversity.** Mean pairwise 1 − SSIM across 8 seeds of one prompt, for 12 prompts.
(d) **Sweeps.** Adherence over guidance 1–12 (20 steps) and steps 10/20/50 (default guidance).
The main adherence, novelty and diversity use the defaults every entry point uses
(20 DPM-Solver++ steps, guidance ``DEFAULT_GUIDANCE``).
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_result  # noqa: E402

from strata.models.builtin import image_model_dir  # noqa: E402
from strata.models.image_diffusion import ImageDiffusionModel  # noqa: E402
from strata.models.image_pipeline import generate  # noqa: E402
from strata.models.samplers import DEFAULT_GUIDANCE  # noqa: E402
from strata.train import data_emoji  # noqa: E402

GALLERY = Path(__file__).resolve().parents[1] / "docs" / "gallery"
CACHE = Path.home() / ".cache" / "strata" / "bench"
SOURCES = ("noto", "twemoji", "fluent3d")
# Subcategories of common, drawable things, in the order concepts are taken from.
SUBCATEGORIES = (
    "food-fruit", "food-vegetable", "animal-mammal", "animal-bird", "animal-marine", "animal-bug",
    "animal-reptile", "animal-amphibian", "plant-flower", "plant-other", "transport-ground", "transport-air",
    "transport-water", "food-prepared", "food-sweet", "food-asian", "drink", "sport", "musical-instrument",
    "household", "tool", "clothing", "sky & weather", "place-other", "place-building",
)
N_CONCEPTS = 100
# The README grid: 32 prompts across the categories the issue names.
GRID_PROMPTS = (
    "red apple", "banana", "grapes", "watermelon", "strawberry", "pineapple", "carrot", "broccoli",
    "dog face", "cat face", "lion", "pig face", "frog", "penguin", "fish", "butterfly",
    "automobile", "bus", "bicycle", "airplane", "rocket", "sailboat",
    "sunflower", "cactus", "evergreen tree", "tulip",
    "pizza", "hamburger", "birthday cake", "doughnut", "hot beverage", "snowman",
)


# ---- concepts and data ----------------------------------------------------------------------


def eval_concepts(rows: list[dict]) -> list[str]:
    """100 concept names present in all three sets, without skin tones, taken round-robin by subcategory."""
    sources: dict[str, set[str]] = {}
    sub: dict[str, str] = {}
    for r in rows:
        if r.get("skin_tone"):
            continue
        sources.setdefault(r["name"], set()).add(r["source"])
        sub.setdefault(r["name"], r.get("subcategory") or "")
    complete = sorted(n for n, s in sources.items() if s >= set(SOURCES) and len(n.split()) <= 3)
    queues = [[n for n in complete if sub[n] == cat] for cat in SUBCATEGORIES]
    # Round-robin over subcategories: a spread of kinds, not 60 mammals.
    ordered = [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]
    if len(ordered) < N_CONCEPTS:
        raise SystemExit(f"only {len(ordered)} eligible concepts in the dataset; expected ≥ {N_CONCEPTS}")
    return ordered[:N_CONCEPTS]


def concept_images(images: np.ndarray, rows: list[dict], concepts: list[str]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Real images of the concepts: (float RGBA (N, 4, 64, 64) in [0, 1], label (N,), source (N,))."""
    index = {n: i for i, n in enumerate(concepts)}
    keep = [i for i, r in enumerate(rows) if r["name"] in index and not r.get("skin_tone")]
    x = torch.from_numpy(images[keep]).permute(0, 3, 1, 2).float() / 255.0
    y = torch.tensor([index[rows[i]["name"]] for i in keep])
    return x, y, [rows[i]["source"] for i in keep]


# ---- the classifier -------------------------------------------------------------------------


class Classifier(nn.Module):
    """A small CNN on premultiplied RGBA at 32×32 (emoji stay recognizable; 4× cheaper than 64²):
    32 → 16 → 8 → 4, global average pool, linear."""

    def __init__(self, n_classes: int):
        super().__init__()

        def block(i: int, o: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(),
                                 nn.Conv2d(o, o, 3, padding=1), nn.BatchNorm2d(o), nn.ReLU(), nn.MaxPool2d(2))

        # Narrow on purpose: it trains four times (three folds + the final one) on a busy CPU.
        self.features = nn.Sequential(block(4, 16), block(16, 32), block(32, 64))
        self.head = nn.Linear(64, n_classes)

    def forward(self, rgba: torch.Tensor) -> torch.Tensor:
        x = F.avg_pool2d(torch.cat([rgba[:, :3] * rgba[:, 3:], rgba[:, 3:]], 1) * 2 - 1, 2)
        return self.head(self.features(x).mean(dim=(2, 3)))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Random scale, rotation, shift, flip and brightness: style-independent features from few images."""
    b = len(x)
    scale = 0.8 + 0.35 * torch.rand(b, generator=g)
    angle = (torch.rand(b, generator=g) - 0.5) * 0.5
    shift = (torch.rand(b, 2, generator=g) - 0.5) * 0.3
    flip = torch.where(torch.rand(b, generator=g) < 0.5, -1.0, 1.0)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1), torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    gain = 0.8 + 0.4 * torch.rand(b, 1, 1, 1, generator=g)
    return torch.cat([(out[:, :3] * gain).clamp(0, 1), out[:, 3:]], 1)


def train_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int, *, steps: int, seed: int = 0) -> Classifier:
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    clf = Classifier(n_classes)
    opt = torch.optim.AdamW(clf.parameters(), lr=2e-3, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps)
    clf.train()
    for step in range(steps):
        if step % 100 == 0:
            print(f"    step {step}/{steps}", flush=True)
        idx = torch.randint(0, len(x), (64,), generator=g)
        loss = F.cross_entropy(clf(augment(x[idx], g)), y[idx], label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return clf.eval()


@torch.no_grad()
def topk(clf: Classifier, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    logits = torch.cat([clf(x[i:i + 256]) for i in range(0, len(x), 256)])
    ranks = logits.argsort(dim=1, descending=True)
    return {"top1": float((ranks[:, 0] == y).float().mean()), "top5": float((ranks[:, :5] == y[:, None]).any(1).float().mean())}


def classifiers(x: torch.Tensor, y: torch.Tensor, src: list[str], n: int, steps: int) -> tuple[Classifier, dict]:
    """The all-sources classifier (cached on disk) and the leave-one-source-out ceiling."""
    key = hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes() + str(steps).encode()).hexdigest()[:16]
    path = CACHE / f"classifier-{key}.pt"
    if path.is_file():
        saved = torch.load(path, weights_only=True)
        clf = Classifier(n)
        clf.load_state_dict(saved["state"])
        return clf.eval(), saved["ceiling"]
    folds = {}
    for held in SOURCES:
        tr = torch.tensor([s != held for s in src])
        t0 = time.time()
        clf = train_classifier(x[tr], y[tr], n, steps=steps)
        print(f"  trained on {int(tr.sum())} images in {time.time() - t0:.0f} s", flush=True)
        folds[held] = topk(clf, x[~tr], y[~tr])
        print(f"  ceiling fold (test on {held}): {folds[held]}", flush=True)
    ceiling = {k: float(np.mean([f[k] for f in folds.values()])) for k in ("top1", "top5")} | {"folds": folds}
    clf = train_classifier(x, y, n, steps=steps)
    CACHE.mkdir(parents=True, exist_ok=True)
    torch.save({"state": clf.state_dict(), "ceiling": ceiling}, path)
    return clf, ceiling


# ---- generation and measures ----------------------------------------------------------------


def load_model(args: argparse.Namespace) -> tuple[ImageDiffusionModel, str]:
    if args.checkpoint:
        from strata.train.image import CHECKPOINT, TrainConfig, load_autoencoder, load_checkpoint
        from strata.models.image_diffusion import ImageDiffusionConfig, build_unet

        state = load_checkpoint(Path(args.checkpoint) / CHECKPOINT)
        cfg = ImageDiffusionConfig.from_dict(state["model_config"])
        unet = build_unet(cfg)
        unet.load_state_dict(state["ema"])
        ae = load_autoencoder(TrainConfig(cfg, state["data"], state["train"], state["run"]))
        return ImageDiffusionModel(cfg=cfg, unet=unet.eval(), autoencoder=ae), f"checkpoint step {state['step']} (EMA)"
    directory = Path(args.model) if args.model else image_model_dir()
    model = ImageDiffusionModel.from_pretrained(directory)
    return model, f"{directory} (sha256 {model.weights_sha256[:12]}, step {model.extra.get('training', {}).get('step')})"


def make(model: ImageDiffusionModel, prompts: list[str], seeds: int, **kw) -> torch.Tensor:
    """Images (len(prompts)·seeds, 4, 64, 64), prompt-major; seed s of every prompt is s."""
    out = []
    for p in prompts:
        res = generate(model, p, count=seeds, seed=0, **kw)
        out += [torch.from_numpy(np.ascontiguousarray(im.pixels)).permute(2, 0, 1) for im in res.images]
    return torch.stack(out)


def on_white(x: torch.Tensor) -> np.ndarray:
    """(N, 4, H, W) RGBA → (N, H, W, 3) float RGB over white."""
    return (x[:, :3] * x[:, 3:] + (1 - x[:, 3:])).permute(0, 2, 3, 1).numpy()


def nearest_ssim(gen: torch.Tensor, train: np.ndarray, k: int = 16) -> np.ndarray:
    """Per generated image, the highest SSIM to any training image (top-k by L2 at 16×16 checked)."""
    from skimage.metrics import structural_similarity

    tr = on_white(torch.from_numpy(train).permute(0, 3, 1, 2).float() / 255.0)
    small = lambda a: F.avg_pool2d(torch.from_numpy(a).permute(0, 3, 1, 2), 4).flatten(1)  # noqa: E731
    g_rgb = on_white(gen)
    d = torch.cdist(small(g_rgb), small(tr))
    cand = d.topk(k, largest=False).indices.numpy()
    return np.array([max(structural_similarity(g_rgb[i], tr[j], channel_axis=2, data_range=1.0) for j in cand[i])
                     for i in range(len(g_rgb))])


def diversity(gen: torch.Tensor, per: int) -> float:
    from skimage.metrics import structural_similarity

    rgb = on_white(gen)
    vals = []
    for start in range(0, len(rgb), per):
        group = rgb[start:start + per]
        vals += [1 - structural_similarity(a, b, channel_axis=2, data_range=1.0) for a, b in itertools.combinations(group, 2)]
    return float(np.mean(vals))


def save_grid(x: torch.Tensor, cols: int, out: Path, labels: list[str] | None = None, scale: int = 2) -> Path:
    """Images on a light checker, ``cols`` per row, optional row labels at the left; PNG."""
    from PIL import Image as PILImage, ImageDraw

    s = x.shape[-1]
    yy, xx = np.mgrid[0:s, 0:s]
    checker = np.where(((yy // 8 + xx // 8) % 2)[..., None] == 0, 0.94, 0.84)
    rows = (len(x) + cols - 1) // cols
    lw = 110 if labels else 0
    canvas = np.ones((rows * s, cols * s, 3))
    for i, im in enumerate(x):
        r, c = divmod(i, cols)
        a = im[3:].permute(1, 2, 0).numpy()
        canvas[r * s:(r + 1) * s, c * s:(c + 1) * s] = im[:3].permute(1, 2, 0).numpy() * a + checker * (1 - a)
    pic = PILImage.fromarray(np.clip(np.rint(canvas * 255), 0, 255).astype(np.uint8)).resize(
        (cols * s * scale, rows * s * scale), PILImage.NEAREST)
    if labels:
        full = PILImage.new("RGB", (pic.width + lw, pic.height), "white")
        full.paste(pic, (lw, 0))
        draw = ImageDraw.Draw(full)
        for r, text in enumerate(labels):
            draw.text((4, r * s * scale + s * scale // 2 - 6), text[:18], fill=(30, 30, 30))
        pic = full
    out.parent.mkdir(parents=True, exist_ok=True)
    pic.save(out, optimize=True)
    return out


# ---- main -----------------------------------------------------------------------------------


def eval_parser(doc: str) -> argparse.ArgumentParser:
    """The options every image-model evaluation takes (which weights, classifier, threads)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--model", help="exported model dir (default: the shipped weights)")
    ap.add_argument("--checkpoint", help="training run dir: evaluate its EMA weights")
    ap.add_argument("--classifier-steps", type=int, default=600)
    ap.add_argument("--threads", type=int, default=2)
    return ap


@dataclass
class EvalData:
    """The dataset's evaluation concepts, their real images and the classifier trained on them."""

    images: np.ndarray
    concepts: list[str]
    x: torch.Tensor
    y: torch.Tensor
    src: list[str]
    clf: "Classifier"
    ceiling: dict


def eval_data(classifier_steps: int) -> EvalData:
    images, rows = data_emoji.load(None)
    concepts = eval_concepts(rows)
    x, y, src = concept_images(images, rows, concepts)
    print(f"{len(concepts)} concepts, {len(x)} real images; training the classifier …", flush=True)
    clf, ceiling = classifiers(x, y, src, len(concepts), classifier_steps)
    return EvalData(images, concepts, x, y, src, clf, ceiling)


def main() -> None:
    ap = eval_parser(__doc__)
    ap.add_argument("--quick", action="store_true", help="2 seeds per concept and a 20-concept sweep")
    ap.add_argument("--readme-grid", action="store_true", help="also write docs/gallery/generated_grid.png")
    ap.add_argument("--classifier-only", action="store_true", help="train (and cache) the classifier, report its ceiling, stop")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    data = eval_data(args.classifier_steps)
    images, concepts, clf, ceiling = data.images, data.concepts, data.clf, data.ceiling
    print(f"real-image ceiling (leave one source out): {ceiling['top1']:.3f} top-1, {ceiling['top5']:.3f} top-5", flush=True)
    if args.classifier_only:
        return

    model, model_desc = load_model(args)
    model.unet.eval()
    seeds = 2 if args.quick else 4
    steps, guidance = 20, DEFAULT_GUIDANCE
    t_gen = time.time()
    gen = make(model, concepts, seeds, steps=steps, guidance=guidance)
    gen_s = time.time() - t_gen
    labels = torch.arange(len(concepts)).repeat_interleave(seeds)
    adherence = topk(clf, gen, labels)
    print(f"adherence: {adherence} ({len(gen)} images in {gen_s:.0f} s)", flush=True)
    near = nearest_ssim(gen, images)
    div_prompts = concepts[::9][:12]
    div = diversity(make(model, div_prompts, 8, steps=steps, guidance=guidance), 8)

    sweep_concepts = concepts[::5] if args.quick else concepts[::2]
    sweep_labels = torch.tensor([concepts.index(c) for c in sweep_concepts]).repeat_interleave(2)
    sweeps = {"guidance": {}, "steps": {}}
    for gval in (1.0, 2.0, 4.0, 6.0, 8.0, 12.0):
        sweeps["guidance"][str(gval)] = topk(clf, make(model, sweep_concepts, 2, steps=20, guidance=gval), sweep_labels)
        print(f"  guidance {gval}: {sweeps['guidance'][str(gval)]}", flush=True)
    for sval in (10, 20, 50):
        sweeps["steps"][str(sval)] = topk(clf, make(model, sweep_concepts, 2, steps=sval, guidance=guidance), sweep_labels)
        print(f"  steps {sval}: {sweeps['steps'][str(sval)]}", flush=True)

    grid = make(model, list(GRID_PROMPTS), 4, steps=steps, guidance=guidance)
    grid_path = save_grid(grid, 8, RESULTS / "quality_grid.png",
                          labels=[f"{a} | {b}" for a, b in zip(GRID_PROMPTS[::2], GRID_PROMPTS[1::2])])
    if args.readme_grid:
        save_grid(grid, 8, GALLERY / "generated_grid.png",
                  labels=[f"{a} | {b}" for a, b in zip(GRID_PROMPTS[::2], GRID_PROMPTS[1::2])])
    concept_grid = save_grid(gen[: 40 * seeds], seeds * 4, RESULTS / "quality_concepts.png",
                             labels=[" | ".join(concepts[i:i + 4]) for i in range(0, 40, 4)])

    result = {
        "model": model_desc,
        "settings": {"steps": steps, "guidance": guidance, "sampler": "dpmpp", "seeds_per_concept": seeds},
        "concepts": concepts,
        "adherence": adherence | {"chance_top1": 1 / len(concepts), "chance_top5": 5 / len(concepts), "images": len(gen)},
        "real_image_ceiling": ceiling,
        "novelty": {"near_copy_fraction": float((near > 0.9).mean()), "threshold_ssim": 0.9,
                    "nearest_ssim_median": float(np.median(near)), "nearest_ssim_max": float(near.max())},
        "diversity": {"mean_pairwise_1_minus_ssim": div, "prompts": div_prompts, "seeds": 8},
        "sweeps": sweeps,
        "grids": {"readme": str(grid_path), "concepts": str(concept_grid)},
        "targets": {"adherence_top5": 0.40, "near_copy_fraction_max": 0.05},
        "met": {"adherence_top5": adherence["top5"] >= 0.40, "near_copies": float((near > 0.9).mean()) < 0.05},
        "seconds": round(time.time() - t0, 1),
    }
    path = write_result("quality", result)
    print(json.dumps({k: result[k] for k in ("adherence", "novelty", "diversity", "met")}, indent=1))
    print(f"→ {path}")


if __name__ == "__main__":
    main()
