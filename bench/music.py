"""How musical and how original the built-in music model is, and how fast it composes.

    python bench/music.py [--pieces 12] [--bars 16] [--temperature 0.9] [--top-p 0.95]   → bench/results/music.json

Generates ``pieces`` pieces (seeds 0…, keys around the circle of fifths, major and minor
alternating) with the shipped weights and compares them in the same run with two references:
the held-out chorales (Bach, never trained on) and *random notes* (the generated rhythm and
voices with pitches drawn uniformly from each voice's range in the training set).

- **in key**: share of notes whose pitch class is in the requested key's scale (minor counts
  natural, harmonic and melodic forms) — target ≥ 95 %;
- **pitch-class distance**: total variation (½ L1, in [0, 1]) between key-relative pitch-class
  histograms (per mode, then averaged) of the generated notes and of the held-out chorales;
- **interval distance**: the same for melodic intervals within each voice (−12…+12 semitones,
  larger leaps in two overflow bins);
- **copying**: the longest run of whole bars (all four voices: onsets, durations, pitches up to
  transposition) that also occurs somewhere in the training chorales — target ≤ 2; the held-out
  chorales' own longest overlap with the training set is reported beside it (Bach reuses
  cadence formulas and tunes);
- **speed**: seconds of wall time per minute of music for ``sound.music`` end to end (tokens,
  MIDI, SoundFont rendering), median of ``repeats`` after a warm-up, and the model's share.

The model card quotes these numbers when they measured its weights: run this, then
``strata train music --export`` again.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import timed, write_result  # noqa: E402

from strata.models.builtin import music_model_dir  # noqa: E402
from strata.models.music_generate import generate_tokens, in_key_fraction  # noqa: E402
from strata.models.music_model import WEIGHTS_NAME, MusicModel  # noqa: E402
from strata.models.music_tokens import STEPS_PER_BAR, Note, decode  # noqa: E402
from strata.store.blobs import sha256_file  # noqa: E402
from strata.train.music import MusicTrainConfig, load_split  # noqa: E402

INTERVAL_RANGE = 12


def pitch_class_hist(pieces: list[tuple[list[Note], int]]) -> np.ndarray:
    """Key-relative pitch-class histogram (12 bins, sums to 1) of (notes, tonic) pieces."""
    h = np.zeros(12)
    for notes, tonic in pieces:
        for n in notes:
            h[(n.pitch - tonic) % 12] += 1
    return h / max(h.sum(), 1)


def interval_hist(pieces: list[tuple[list[Note], int]]) -> np.ndarray:
    """Melodic intervals within each voice: bins −12…+12 plus one overflow bin each side."""
    h = np.zeros(2 * INTERVAL_RANGE + 3)
    for notes, _ in pieces:
        for v in range(4):
            line = [n.pitch for n in sorted(notes) if n.voice == v]
            for a, b in zip(line, line[1:]):
                h[int(np.clip(b - a, -INTERVAL_RANGE - 1, INTERVAL_RANGE + 1)) + INTERVAL_RANGE + 1] += 1
    return h / max(h.sum(), 1)


def tv(p: np.ndarray, q: np.ndarray) -> float:
    """Total variation distance: ½ Σ|p − q| (0 = same histogram, 1 = disjoint)."""
    return 0.5 * float(np.abs(p - q).sum())


def by_mode_tv(gen: dict[str, list], ref: dict[str, list], hist) -> float:
    """Histogram distance per mode, averaged over the modes present in both."""
    modes = [m for m in ("maj", "min") if gen.get(m) and ref.get(m)]
    return float(np.mean([tv(hist(gen[m]), hist(ref[m])) for m in modes]))


def bar_windows(notes: list[Note], k: int) -> set[tuple]:
    """Transposition-free signatures of every run of ``k`` whole bars: (onset in run, voice,
    pitch − the run's lowest pitch, duration) for each note starting in the run."""
    n_bars = max(n.start for n in notes) // STEPS_PER_BAR + 1
    bars: list[list[Note]] = [[] for _ in range(n_bars)]
    for n in notes:
        bars[n.start // STEPS_PER_BAR].append(n)
    out = set()
    for b in range(n_bars - k + 1):
        run = [n for bar in bars[b:b + k] for n in bar]
        if not run:
            continue
        low, t0 = min(n.pitch for n in run), b * STEPS_PER_BAR
        out.add(tuple(sorted((n.start - t0, n.voice, n.pitch - low, n.dur) for n in run)))
    return out


def longest_copy(notes: list[Note], train_windows: dict[int, set], max_k: int) -> int:
    """Most consecutive bars of ``notes`` found verbatim (up to transposition) in the training set."""
    best = 0
    for k in range(1, max_k + 1):
        if not bar_windows(notes, k) & train_windows[k]:
            break
        best = k
    return best


def random_notes(notes: list[Note], ranges: dict[int, tuple[int, int]], rng: np.random.Generator) -> list[Note]:
    """The same rhythm and voices with uniformly random pitches in each voice's range."""
    return [Note(n.start, n.voice, int(rng.integers(ranges[n.voice][0], ranges[n.voice][1] + 1)), n.dur) for n in notes]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pieces", type=int, default=12)
    parser.add_argument("--bars", type=int, default=16)
    parser.add_argument("--temperature", type=float, default=0.9)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--model-dir", type=Path, default=None, help="default: weights/music (or $STRATA_MUSIC_MODEL)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    directory = args.model_dir or music_model_dir()
    model = MusicModel.from_pretrained(directory)
    data = model.info.get("training", {}).get("data") or MusicTrainConfig.load().data
    train_set, held_set = load_split(data)

    # 1. generate
    gen: dict[str, list] = {"maj": [], "min": []}
    generated: list[tuple[list[Note], int, str]] = []
    t = time.perf_counter()
    for i in range(args.pieces):
        tonic, mode = (7 * i) % 12, ("maj", "min")[i % 2]
        notes, _ = decode(generate_tokens(model, tonic=tonic, mode=mode, n_bars=args.bars, seed=i,
                                          temperature=args.temperature, top_p=args.top_p))
        generated.append((notes, tonic, mode))
        gen[mode].append((notes, tonic))
    gen_s = time.perf_counter() - t
    print(f"generated {args.pieces} × {args.bars} bars in {gen_s:.1f} s", flush=True)

    # 2. references: held-out Bach and random pitches on the generated rhythm
    held: dict[str, list] = {"maj": [], "min": []}
    for c in held_set:
        held[c.mode].append((list(c.notes), c.tonic))
    voices = {v: [n.pitch for c in train_set for n in c.notes if n.voice == v] for v in range(4)}
    ranges = {v: (min(p), max(p)) for v, p in voices.items()}
    rng = np.random.default_rng(0)
    rand: dict[str, list] = {"maj": [], "min": []}
    for notes, tonic, mode in generated:
        rand[mode].append((random_notes(notes, ranges, rng), tonic))

    def in_key(pieces: dict[str, list]) -> float:
        total = [(in_key_fraction(n, t, m), len(n)) for m in pieces for n, t in pieces[m]]
        return sum(f * k for f, k in total) / sum(k for _, k in total)

    # 3. copying: transposition-free bar-run signatures of the training chorales
    max_k = args.bars
    train_windows = {k: set().union(*(bar_windows(list(c.notes), k) for c in train_set)) for k in range(1, max_k + 1)}
    copies = [longest_copy(n, train_windows, max_k) for n, _, _ in generated]
    held_copies = [longest_copy(list(c.notes), train_windows, max_k) for c in held_set]

    # 4. speed: sound.music end to end for one minute of music, and the model's share
    from strata.ops.sound import music

    def one_minute() -> None:
        music(duration_s=60.0, tempo_bpm=90, seed=0, loaded_model=model)

    end_to_end = timed(one_minute, repeats=args.repeats)
    # the tokens alone for the same 22 bars (fit_bars(60, 90) chooses 22)
    model_only = timed(lambda: generate_tokens(model, tonic=0, mode="maj", n_bars=22, seed=0), repeats=args.repeats)

    metrics = {
        "in_key": {"generated": in_key(gen), "heldout": in_key(held), "random": in_key(rand), "target": 0.95},
        "pitch_class_tv": {"generated": by_mode_tv(gen, held, pitch_class_hist),
                           "random": by_mode_tv(rand, held, pitch_class_hist)},
        "interval_tv": {"generated": by_mode_tv(gen, held, interval_hist),
                        "random": by_mode_tv(rand, held, interval_hist)},
        "copy_bars": {"generated_max": max(copies), "generated": copies, "heldout_max": max(held_copies),
                      "heldout_mean": float(np.mean(held_copies)), "target_max": 2},
        "speed": {"seconds_per_minute": end_to_end["median_s"], "end_to_end": end_to_end,
                  "model_seconds_per_minute": model_only["median_s"] * 60 / (22 * 240 / 90),  # 22 bars at 90 bpm
                  "model_only_22_bars": model_only},
    }
    result = {
        "model": {"dir": str(directory), "weights_sha256": sha256_file(directory / WEIGHTS_NAME),
                  "training": {k: v for k, v in model.info.get("training", {}).items() if k not in ("data", "train")}},
        "settings": {"pieces": args.pieces, "bars": args.bars, "temperature": args.temperature, "top_p": args.top_p,
                     "heldout_chorales": len(held_set), "train_chorales": len(train_set), "threads": args.threads,
                     "load_average": round(os.getloadavg()[0], 1)},  # other jobs slow the timings down
        "metrics": metrics,
    }
    path = write_result("music", result)
    print(json.dumps(metrics, indent=2, default=str))
    print(f"→ {path}")


if __name__ == "__main__":
    main()
