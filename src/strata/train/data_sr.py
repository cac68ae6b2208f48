"""Build the super-resolution training set from the emoji packages (build time only).

The emoji dataset keeps every image at 64×64; super-resolution needs the sharpest originals,
so this reads the same cached npm tarballs again through the emoji builder's code
(``fetch_package``, the forbidden-package check, the names table, ``OptOut``) and keeps each
source at its native size:

    hr256.npy      uint8 (N, 256, 256, 4) straight-alpha RGBA: Fluent Emoji 3D (WebP, 256×256)
    hr64.npy       uint8 (M, 64, 64, 4): Noto and Twemoji (their packages hold 64×64 PNG only; the
                   ``sheets-*`` folders are sprite sheets of the same 64 px cells, no sharper)
    manifest.jsonl one row per image, in order (hr256 rows first): source, license, codepoint,
                   group, sha256 of the stored RGBA bytes, and ``heldout`` (never trained on)
    card.md        counts, licenses and obligations, the held-out rule, opt-outs

The held-out set is a fixed set of emoji *groups* (base codepoint, skin tones included): all
their images, in every source, are left out of training, so a held-out Fluent image is not
learned through its Noto or Twemoji drawing either. ``.npy`` (not compressed ``.npz``) so the
trainer memory-maps the 0.9 GB instead of decompressing it.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from strata.errors import StrataError
from strata.train import data_emoji
from strata.train.data_emoji import SOURCES, OptOut, Source, fetch_package

HR_SOURCES = {"fluent3d": 256, "noto": 64, "twemoji": 64}  # source → the native side its package holds
HOLDOUT_GROUPS = 48  # emoji groups kept out of training; ~50 Fluent images to measure PSNR/SSIM on
HOLDOUT_SEED = 0


@dataclass
class SRData:
    """A loaded SR dataset: arrays (memory-mapped) and manifest rows, split into train / held-out."""

    hr256: np.ndarray
    hr64: np.ndarray
    rows: list[dict]

    def split(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(train indices, held-out indices) into the ``size`` px array (256 or 64)."""
        offset = 0 if size == 256 else len(self.hr256)
        n = len(self.hr256) if size == 256 else len(self.hr64)
        held = np.array([bool(self.rows[offset + i]["heldout"]) for i in range(n)], bool)
        return np.flatnonzero(~held), np.flatnonzero(held)


def sr_dir() -> Path:
    """``data_dir()/sr`` (``$STRATA_DATA_DIR/sr`` or ~/.cache/strata/data/sr)."""
    return data_emoji.data_dir() / "sr"


def build(*, out_dir: Path | None = None, optout: OptOut | None = None, cache_dir: Path | None = None,
          fetch: Callable[[Source, Path], Path] = fetch_package,
          holdout_groups: int = HOLDOUT_GROUPS) -> dict:
    """Extract the native-resolution images, write the arrays, manifest and card; returns counts.

    Args:
        out_dir: default :func:`sr_dir`.
        optout: items to remove (as in ``strata data build``); default none.
        cache_dir: npm tarball cache; default ``data_dir()/npm`` (shared with the emoji builder).
        fetch: downloads one source (tests pass a fake).
        holdout_groups: number of emoji groups held out (drawn with a fixed seed from the
            groups that have a 256 px image).
    """
    out_dir = Path(out_dir) if out_dir else sr_dir()
    cache_dir = Path(cache_dir) if cache_dir else data_emoji.data_dir() / "npm"
    optout = optout or OptOut()
    names = data_emoji._name_index(data_emoji.read_emoji_table(fetch(SOURCES[data_emoji.NAMES_SOURCE], cache_dir)))
    arrays: dict[int, list[np.ndarray]] = {256: [], 64: []}
    rows: dict[int, list[dict]] = {256: [], 64: []}
    opted_out = 0
    for key, side in HR_SOURCES.items():
        src = SOURCES[key]
        for item, pixels in data_emoji.iter_items(src, fetch(src, cache_dir), names, size=side):
            if float(pixels[..., 3].max()) == 0:
                continue
            if optout.matches(item):
                opted_out += 1
                continue
            arrays[side].append(pixels)
            rows[side].append({"source": key, "package": f"{src.package}@{src.version}", "license": src.license,
                               "codepoint": item.codepoint, "name": item.name, "group": item.group,
                               "sha256": item.sha256})
    if not arrays[256]:
        raise StrataError("no 256 px images were extracted; the fluent3d package is needed for super-resolution")
    groups = sorted({r["group"] for r in rows[256]})
    if len(groups) < 2:
        raise StrataError(f"only {len(groups)} emoji group(s) at 256 px: too few to hold any out for evaluation")
    rng = np.random.default_rng(HOLDOUT_SEED)
    n_held = min(holdout_groups, max(1, len(groups) // 4))  # at most a quarter of the groups
    held = {groups[i] for i in rng.choice(len(groups), size=n_held, replace=False)}
    all_rows = rows[256] + rows[64]
    for r in all_rows:
        r["heldout"] = r["group"] in held

    out_dir.mkdir(parents=True, exist_ok=True)
    for side in (256, 64):
        stacked = np.stack(arrays[side]) if arrays[side] else np.zeros((0, side, side, 4), np.uint8)
        data_emoji._atomic_write(out_dir / f"hr{side}.npy", lambda f, a=stacked: np.save(f, a))
    data_emoji._atomic_write(out_dir / "manifest.jsonl", lambda f: f.write(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in all_rows).encode()))
    counts = {"hr256": len(rows[256]), "hr64": len(rows[64]), "opted_out": opted_out,
              "heldout_images": sum(r["heldout"] for r in all_rows), "heldout_groups": len(held)}
    data_emoji._atomic_write(out_dir / "card.md", lambda f: f.write(_card(counts, all_rows, optout).encode()))
    return counts


def _card(counts: dict, rows: list[dict], optout: OptOut) -> str:
    per_source = Counter(r["source"] for r in rows)
    lines = ["# strata super-resolution dataset", "",
             f"{counts['hr256']} images at 256×256 and {counts['hr64']} at 64×64 (RGBA, straight alpha), built by "
             "`strata train upscale` from the emoji builder's npm packages. Used only to train the upscaler.", "",
             "| source | package | images | license | obligations |", "|---|---|---|---|---|"]
    for key in HR_SOURCES:
        s = SOURCES[key]
        lines.append(f"| {key} | `{s.package}@{s.version}` | {per_source.get(key, 0)} | {s.license} | {s.obligations} |")
    lines += ["", "Attribution notices to keep:", ""] + [f"- {SOURCES[k].attribution}" for k in HR_SOURCES]
    lines += ["", "## Held out", "",
              f"{counts['heldout_groups']} emoji groups (seed {HOLDOUT_SEED}), {counts['heldout_images']} images in "
              "all sources: never trained on; the 256 px ones measure PSNR/SSIM.", "", "## Opt-out", ""]
    lines.append(f"Entries applied: {', '.join(optout.entries())}; removed {counts['opted_out']} images."
                 if optout.entries() else "No opt-out entries (same syntax as `strata data optout`).")
    return "\n".join(lines) + "\n"


def load(out_dir: Path | None = None) -> SRData:
    """Memory-map a built SR dataset.

    Raises:
        StrataError: it is missing (the message says how to build it) or inconsistent.
    """
    out_dir = Path(out_dir) if out_dir else sr_dir()
    paths = [out_dir / "hr256.npy", out_dir / "hr64.npy", out_dir / "manifest.jsonl"]
    if not all(p.is_file() for p in paths):
        raise StrataError(f"no super-resolution dataset in {out_dir}; `strata train upscale` builds it from the "
                          "cached emoji packages (or call strata.train.data_sr.build())")
    hr256, hr64 = (np.load(p, mmap_mode="r") for p in paths[:2])
    rows = [json.loads(line) for line in paths[2].read_text(encoding="utf-8").splitlines() if line]
    if len(rows) != len(hr256) + len(hr64):
        raise StrataError(f"{out_dir}: manifest has {len(rows)} rows but the arrays {len(hr256) + len(hr64)}; rebuild")
    return SRData(hr256, hr64, rows)
