"""The text-image scorer: retrieval on held-out images, and choosing among generated candidates.

    python bench/scorer.py                  # ~5 min: held-out run + shipped scorer + shipped image model
    python bench/scorer.py --keep-retrieval # only (b), e.g. for new image weights; (a) is carried over
    → bench/results/scorer.json

(a) **Retrieval on held-out images.** A scorer trained with one emoji source held out
    (``strata train scorer --holdout-source fluent3d --run-dir RUN``; default RUN below) is
    shown the held-out source's images of bench/quality.py's 100 concepts; for each concept the
    prompt is its plain name ("red apple"), and the images are ranked by score. Top-1/top-5:
    an image of the concept is first / among the first five (chance 1 % / 5 %). The other
    direction (each image's best prompt among the 100) is reported too.
(b) **Choosing among generated candidates.** For 50 of the concepts, 8 candidates from the shipped
    image model (seeds 0–7, 20 steps, the default guidance). bench/quality.py's classifier (trained on real
    images only, cached in ~/.cache/strata/bench) decides whether an image shows its concept
    (top-5 of 100). Compared: the shipped scorer's top pick; ``image.select`` with the prompt
    (text agreement + technical measures) and without it (technical only); a random pick (its
    expected rate: the share of recognized candidates); and the ceiling (any candidate recognized).
    With all 8 candidates: how often a recognized one outscores an unrecognized one of the same
    concept (AUC, 0.5 = no signal).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import carried_over, write_result  # noqa: E402
from quality import N_CONCEPTS, classifiers, concept_images, eval_concepts  # noqa: E402

from strata.models.builtin import image_model_dir, scorer_model_dir  # noqa: E402
from strata.models.image_diffusion import ImageDiffusionModel  # noqa: E402
from strata.models.image_pipeline import generate  # noqa: E402
from strata.models.samplers import DEFAULT_GUIDANCE  # noqa: E402
from strata.models.scorer import PooledTextEncoder, Scorer  # noqa: E402
from strata.ops.select import select  # noqa: E402
from strata.train import data_emoji  # noqa: E402
from strata.train.scorer import load_run  # noqa: E402

HELDOUT_RUN = Path.home() / ".cache" / "strata" / "train" / "scorer-holdout-fluent3d"
CANDIDATES = 8


def retrieval(scorer: Scorer, x: torch.Tensor, y: torch.Tensor, concepts: list[str]) -> dict[str, float]:
    """Text→image and image→text top-1/top-5 among ``concepts`` (every concept has ≥ 1 image)."""
    sims = scorer.embed_prompts(concepts) @ scorer.embed_images(x).T  # (concepts, images)
    ranked = y[sims.argsort(dim=1, descending=True)]
    own = torch.arange(len(concepts))[:, None]
    img_ranked = sims.T.argsort(dim=1, descending=True)
    return {"top1": float((ranked[:, :1] == own).any(1).float().mean()),
            "top5": float((ranked[:, :5] == own).any(1).float().mean()),
            "image_to_text_top1": float((img_ranked[:, 0] == y).float().mean()),
            "image_to_text_top5": float((img_ranked[:, :5] == y[:, None]).any(1).float().mean())}


def within_concept_auc(per: list[dict]) -> float | None:
    """P(cosine of a recognized candidate > cosine of an unrecognized one of the same concept), ties ½."""
    wins, pairs = 0.0, 0
    for p in per:
        cos, rec = np.array(p["cosine"]), np.array(p["recognized"], bool)
        for c in cos[rec]:
            wins += float((c > cos[~rec]).sum()) + 0.5 * float((c == cos[~rec]).sum())
            pairs += int((~rec).sum())
    return wins / pairs if pairs else None


def measure_retrieval(run: Path, text: PooledTextEncoder, x: torch.Tensor, y: torch.Tensor, src: list[str],
                      rows: list[dict], concepts: list[str]) -> dict:
    """(a): the held-out run's scorer on the images of the source it never saw."""
    held_scorer, info = load_run(run)
    held_scorer.text = text
    held = info["data"].get("holdout_source")
    if not held:
        raise SystemExit(f"{run} trained on every source; train one with --holdout-source")
    mask = torch.tensor([s == held for s in src])
    ret = retrieval(held_scorer, x[mask], y[mask], concepts)
    return ret | {"held_out_source": held, "run": str(run), "run_step": int(info["step"]),
                  "concepts": len(concepts), "images": int(mask.sum()),
                  "chance_top1": 1 / len(concepts), "chance_top5": 5 / len(concepts),
                  "trained_on": f"every emoji of the other sources ({len(rows) - sum(r['source'] == held for r in rows)} "
                                f"images, the 100 concepts included); no {held} image",
                  "measured": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--heldout-run", type=Path, default=HELDOUT_RUN, help="run dir of the held-out scorer")
    ap.add_argument("--scorer", type=Path, help="exported scorer dir (default: the shipped weights/scorer)")
    ap.add_argument("--model", type=Path, help="exported image model dir (default: the shipped weights/image)")
    ap.add_argument("--select-concepts", type=int, default=50)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--keep-retrieval", action="store_true",
                    help="carry (a) over from the existing bench/results/scorer.json instead of measuring it: (a) "
                         "depends only on the held-out scorer run (~20 min to retrain on a new machine), not on "
                         "the image model; the result says when (a) was measured")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t0 = time.time()

    images, rows = data_emoji.load(None)
    concepts = eval_concepts(rows)
    x, y, src = concept_images(images, rows, concepts)
    text = PooledTextEncoder()  # MiniLM once, shared by both scorers

    # (a) retrieval on the source the held-out scorer never saw
    if args.keep_retrieval:
        ret = carried_over("scorer", "retrieval")
    else:
        ret = measure_retrieval(args.heldout_run, text, x, y, src, rows, concepts)
    print(f"retrieval: {json.dumps(ret)}", flush=True)

    # (b) selection among generated candidates, judged by bench/quality.py's classifier
    clf, _ = classifiers(x, y, src, len(concepts), 600)
    scorer_dir = args.scorer or scorer_model_dir()
    scorer = Scorer.from_pretrained(scorer_dir, text=text)
    model_dir = args.model or image_model_dir()
    model = ImageDiffusionModel.from_pretrained(model_dir)
    step = max(1, N_CONCEPTS // args.select_concepts)
    chosen = concepts[::step][:args.select_concepts]
    per, t_gen = [], time.time()
    for name in chosen:
        cands = generate(model, name, count=CANDIDATES, seed=0, steps=20, guidance=DEFAULT_GUIDANCE).images
        batch = torch.stack([torch.from_numpy(np.array(c.pixels)).permute(2, 0, 1) for c in cands])
        with torch.no_grad():
            top5 = clf(batch).topk(5, dim=1).indices
        recognized = (top5 == concepts.index(name)).any(1).numpy()
        cos = scorer.score(batch, name)
        with_prompt = select(cands, prompt=name, loaded_model=scorer)["best"]
        technical = select(cands)["best"]
        per.append({"concept": name, "recognized": recognized.astype(int).tolist(),
                    "cosine": [round(float(c), 4) for c in cos], "scorer_pick": int(np.argmax(cos)),
                    "select_with_prompt_pick": cands.index(with_prompt), "select_technical_pick": cands.index(technical)})
    gen_s = time.time() - t_gen

    def rate(key: str) -> float:
        return float(np.mean([p["recognized"][p[key]] for p in per]))

    rec = np.array([p["recognized"] for p in per])
    scorer_hits = np.array([p["recognized"][p["scorer_pick"]] for p in per])
    sel = {"concepts": len(per), "candidates": CANDIDATES, "judge": "bench/quality.py classifier, top-5 of 100",
           "scorer_pick": rate("scorer_pick"), "select_with_prompt": rate("select_with_prompt_pick"),
           "select_technical": rate("select_technical_pick"), "random_pick": float(rec.mean()),
           "any_recognized": float(rec.any(1).mean()),
           # paired: per concept, scorer pick (0/1) minus that concept's random-pick expectation
           "scorer_minus_random_per_concept_mean": float((scorer_hits - rec.mean(1)).mean()),
           "scorer_minus_random_stderr": float((scorer_hits - rec.mean(1)).std(ddof=1) / np.sqrt(len(per))),
           "mean_cosine_recognized": float(np.mean([c for p in per for c, r in zip(p["cosine"], p["recognized"]) if r]))
           if rec.any() else None,
           "mean_cosine_not_recognized": float(np.mean([c for p in per for c, r in zip(p["cosine"], p["recognized"])
                                                        if not r])),
           # within a concept, how often a recognized candidate scores above an unrecognized one
           # (AUC; 0.5 = no signal): uses all 8 candidates, not just the pick
           "within_concept_auc": within_concept_auc(per), "generation_seconds": round(gen_s, 1), "per_concept": per}
    print(json.dumps({k: v for k, v in sel.items() if k != "per_concept"}, indent=1), flush=True)

    result = {
        "scorer": f"{scorer_dir} (trained on {scorer.extra.get('training', {}).get('holdout_source') or 'all sources'}, "
                  f"step {scorer.extra.get('training', {}).get('step')})",
        "image_model": f"{model_dir} (sha256 {model.weights_sha256[:12]})",
        "retrieval": ret,
        "selection": sel,
        "targets": {"retrieval_top5": 0.60},
        "met": {"retrieval_top5": ret["top5"] >= 0.60, "scorer_beats_random": sel["scorer_pick"] > sel["random_pick"]},
        "seconds": round(time.time() - t0, 1),
    }
    path = write_result("scorer", result)
    print(f"→ {path}")


if __name__ == "__main__":
    main()
