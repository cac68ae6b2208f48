"""Build the emoji training set for the built-in text-to-image model (build time only).

The builder fetches openly licensed npm packages with ``npm pack`` into a cache, reads images
and names straight out of the tarballs, and writes to a data directory outside the git tree:

    images.npz     uint8 (N, 64, 64, 4) straight-alpha RGBA, row i = manifest line i
    manifest.jsonl one JSON object per item: source package + version, license, attribution,
                   sha256 of the 64×64 RGBA bytes, and the caption fields (name, short names,
                   category, subcategory, skin tone, style)
    card.md        dataset card: counts, licenses and their obligations, exclusions, opt-outs

Nothing here runs when a user generates an image; only ``strata data build`` calls it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image as PILImage

from strata.errors import MediaError, StrataError

SIZE = 64  # training resolution in pixels; every source is brought to SIZE×SIZE RGBA

# Sets whose licenses do not allow redistribution or training: refused by name, always.
FORBIDDEN_PACKAGES = ("emoji-datasource-apple", "emoji-datasource-facebook")


@dataclass(frozen=True)
class Source:
    """One npm package that contributes images.

    Args:
        key: short id used in manifests and captions ("noto", "twemoji", "fluent3d").
        package: npm package name.
        version: exact npm version (pinned so a rebuild gives the same data).
        license: SPDX id of the *images'* license.
        attribution: the notice the license asks users to keep.
        obligations: what a user of the data or model must do under that license.
        image_dir: folder inside the tarball holding one image per emoji, named by codepoint.
        style: words describing the art style, used in captions.
    """

    key: str
    package: str
    version: str
    license: str
    attribution: str
    obligations: str
    image_dir: str
    style: tuple[str, ...]


def _read_sources() -> dict[str, Source]:
    """The packages in ``emoji_sources.yaml`` (a data file, so licenses and pins read as a table)."""
    table = yaml.safe_load((Path(__file__).parent / "emoji_sources.yaml").read_text(encoding="utf-8"))
    return {key: Source(key=key, **{k: tuple(v) if k == "style" else str(v) for k, v in row.items()})
            for key, row in table.items()}


SOURCES: dict[str, Source] = _read_sources()
DEFAULT_SOURCES = ("noto", "twemoji", "fluent3d")
# Names and categories come from this package's emoji.json (MIT, iamcal/emoji-data).
NAMES_SOURCE = "noto"

_SKIN_TONES = {
    "1F3FB": "light skin tone",
    "1F3FC": "medium-light skin tone",
    "1F3FD": "medium skin tone",
    "1F3FE": "medium-dark skin tone",
    "1F3FF": "dark skin tone",
}


@dataclass
class Item:
    """One training image and everything its captions and card need."""

    source: str
    package: str
    version: str
    license: str
    attribution: str
    codepoint: str
    name: str
    short_names: list[str]
    category: str
    subcategory: str
    skin_tone: str | None
    group: str  # codepoint of the base emoji: skin-tone variants share it (used for sampling weights)
    style: list[str]
    sha256: str = ""
    weight: float = 1.0


@dataclass
class OptOut:
    """Items to remove, by codepoint (e.g. ``1f600``), name (case-insensitive) or sha256.

    The file format is one entry per line, ``codepoint:1f600``, ``name:grinning face`` or
    ``sha256:<64 hex>``; ``#`` starts a comment. A bare 64-hex line is a sha256, a bare
    hex/dash line a codepoint, anything else a name.
    """

    codepoints: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    sha256s: set[str] = field(default_factory=set)

    @classmethod
    def load(cls, path: Path | None) -> "OptOut":
        """Read an opt-out file; a missing ``path`` (None) gives an empty list."""
        out = cls()
        if path is None:
            return out
        if not Path(path).is_file():
            raise StrataError(f"opt-out file {path} does not exist; create it or omit --optout")
        for raw in Path(path).read_text(encoding="utf-8").splitlines():
            line = raw.split("#", 1)[0].strip()
            if line:
                out.add(line)
        return out

    def add(self, entry: str) -> None:
        """Add one entry in the file syntax (see class docstring)."""
        kind, _, value = entry.partition(":")
        if not value:
            value, kind = entry, _guess_kind(entry)
        kind, value = kind.strip().lower(), value.strip()
        if kind == "codepoint":
            self.codepoints.add(value.lower())
        elif kind == "name":
            self.names.add(value.lower())
        elif kind == "sha256":
            self.sha256s.add(value.lower())
        else:
            raise StrataError(f"opt-out entry {entry!r}: unknown kind {kind!r}; use codepoint:, name: or sha256:")

    def matches(self, item: Item) -> str | None:
        """The reason ``item`` is opted out ("codepoint 1f600", ...), or None if it is kept."""
        if item.codepoint.lower() in self.codepoints or item.group.lower() in self.codepoints:
            return f"codepoint {item.codepoint.lower()}"
        if item.name.lower() in self.names or any(s.lower() in self.names for s in item.short_names):
            return f"name {item.name}"
        if item.sha256 in self.sha256s:
            return f"sha256 {item.sha256}"
        return None

    def entries(self) -> list[str]:
        """All entries in file syntax, sorted (recorded in the card)."""
        return sorted(
            [f"codepoint:{c}" for c in self.codepoints]
            + [f"name:{n}" for n in self.names]
            + [f"sha256:{s}" for s in self.sha256s]
        )


def _guess_kind(value: str) -> str:
    v = value.strip().lower()
    if re.fullmatch(r"[0-9a-f]{64}", v):
        return "sha256"
    if re.fullmatch(r"[0-9a-f]{4,6}(-[0-9a-f]{4,6})*", v):
        return "codepoint"
    return "name"


def data_dir() -> Path:
    """Where built datasets live: ``$STRATA_DATA_DIR`` or ``~/.cache/strata/data``."""
    return Path(os.environ.get("STRATA_DATA_DIR", Path.home() / ".cache" / "strata" / "data"))


def fetch_package(source: Source, cache_dir: Path) -> Path:
    """Download ``source`` with ``npm pack`` into ``cache_dir`` (reused if already there).

    Raises:
        StrataError: the package is on the forbidden list, or npm failed (message has npm's output).
    """
    if source.package in FORBIDDEN_PACKAGES:
        raise StrataError(f"{source.package} is not openly licensed and must never be used")
    cache_dir.mkdir(parents=True, exist_ok=True)
    tgz = cache_dir / (source.package.lstrip("@").replace("/", "-") + f"-{source.version}.tgz")
    if tgz.is_file():
        return tgz
    proc = subprocess.run(
        ["npm", "pack", f"{source.package}@{source.version}", "--pack-destination", str(cache_dir)],
        capture_output=True, text=True, check=False,
    )
    if proc.returncode != 0 or not tgz.is_file():
        raise StrataError(
            f"npm pack {source.package}@{source.version} failed (exit {proc.returncode}); "
            f"check network access to the npm registry. npm said: {proc.stderr.strip()[-500:]}"
        )
    return tgz


def _decode_rgba(data: bytes, what: str, size: int = SIZE) -> np.ndarray:
    """Decode an image file to ``size``×``size`` (default SIZE) uint8 straight-alpha RGBA.

    Non-square images are padded (transparent, centered) to a square first. Larger images are
    reduced with a box filter on premultiplied color (Pillow's "RGBa" mode), so colors of
    transparent pixels do not bleed into edges.
    """
    try:
        with PILImage.open(io.BytesIO(data)) as im:
            im = im.convert("RGBA")
            w, h = im.size
            if w != h:
                side = max(w, h)
                canvas = PILImage.new("RGBA", (side, side), (0, 0, 0, 0))
                canvas.paste(im, ((side - w) // 2, (side - h) // 2))
                im = canvas
            if im.size != (size, size):
                im = im.convert("RGBa").resize((size, size), PILImage.Resampling.BOX).convert("RGBA")
            return np.asarray(im, dtype=np.uint8).copy()
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise MediaError(f"{what}: cannot decode image ({exc})") from exc


def read_emoji_table(tgz: Path) -> list[dict]:
    """The ``emoji.json`` table of an emoji-datasource tarball."""
    with tarfile.open(tgz, "r:gz") as tar:
        member = tar.extractfile("package/emoji.json")
        if member is None:
            raise StrataError(f"{tgz} has no package/emoji.json; is it an emoji-datasource package?")
        return json.load(member)


def _name_index(table: list[dict]) -> dict[str, dict]:
    """Map image file stem (lower-case codepoints) → caption fields, skin-tone variants included."""
    index: dict[str, dict] = {}
    for e in table:
        base = {
            "codepoint": e["unified"].lower(),
            "name": (e.get("name") or e["short_name"].replace("_", " ")).lower(),
            "short_names": [s.replace("_", " ") for s in e.get("short_names", [])],
            "category": e.get("category", ""),
            "subcategory": e.get("subcategory", ""),
            "skin_tone": None,
            "group": e["unified"].lower(),
        }
        index[Path(e["image"]).stem.lower()] = base
        for key, var in (e.get("skin_variations") or {}).items():
            tones = [_SKIN_TONES[t] for t in key.split("-") if t in _SKIN_TONES]
            index[Path(var["image"]).stem.lower()] = {
                **base,
                "codepoint": var["unified"].lower(),
                "skin_tone": " and ".join(dict.fromkeys(tones)) or None,
            }
    return index


def iter_items(source: Source, tgz: Path, names: dict[str, dict], *, size: int = SIZE) -> Iterator[tuple[Item, np.ndarray]]:
    """Yield (item, uint8 RGBA image at ``size``×``size``) for every image of ``source`` that has a known name."""
    prefix = source.image_dir.rstrip("/") + "/"
    with tarfile.open(tgz, "r:gz") as tar:
        for member in tar:
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            stem = Path(member.name).stem.lower()
            fields = names.get(stem)
            if fields is None:
                continue  # counted as "no name" in the card by the caller
            fobj = tar.extractfile(member)
            assert fobj is not None  # isfile() checked above
            pixels = _decode_rgba(fobj.read(), f"{source.package}:{member.name}", size)
            item = Item(
                source=source.key, package=source.package, version=source.version,
                license=source.license, attribution=source.attribution,
                style=list(source.style), **fields,
            )
            item.sha256 = hashlib.sha256(pixels.tobytes()).hexdigest()
            yield item, pixels


def _count_images(source: Source, tgz: Path) -> int:
    prefix = source.image_dir.rstrip("/") + "/"
    with tarfile.open(tgz, "r:gz") as tar:
        return sum(1 for m in tar if m.isfile() and m.name.startswith(prefix))


@dataclass
class BuildReport:
    """What a build produced: paths and counts."""

    out_dir: Path
    n_items: int
    per_source: dict[str, int]
    opted_out: list[dict]
    excluded: dict[str, int]


def build(
    *,
    out_dir: Path | None = None,
    sources: tuple[str, ...] = DEFAULT_SOURCES,
    optout: OptOut | None = None,
    cache_dir: Path | None = None,
    fetch: Callable[[Source, Path], Path] = fetch_package,
    include_skin_tones: bool = True,
) -> BuildReport:
    """Fetch the sources, extract images and names, write images.npz, manifest.jsonl and card.md.

    Args:
        out_dir: output folder; default ``data_dir()/emoji``.
        sources: keys of ``SOURCES`` to use (default noto, twemoji, fluent3d).
        optout: items to remove (recorded in the card); default none.
        cache_dir: where npm tarballs are kept; default ``data_dir()/npm``.
        fetch: downloads one source and returns its tarball (tests pass a fake).
        include_skin_tones: keep skin-tone variants (they get sampling weight 1/group size,
            so a gesture with 6 variants counts as much as one apple).
    """
    out_dir = Path(out_dir) if out_dir else data_dir() / "emoji"
    cache_dir = Path(cache_dir) if cache_dir else data_dir() / "npm"
    optout = optout or OptOut()
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise StrataError(f"unknown emoji source(s) {unknown}; choose from {sorted(SOURCES)}")
    # Names come from emoji-datasource's table; fetch it even if that set's images are not used.
    names = _name_index(read_emoji_table(fetch(SOURCES[NAMES_SOURCE], cache_dir)))

    items: list[Item] = []
    images: list[np.ndarray] = []
    opted_out: list[dict] = []
    excluded: Counter[str] = Counter()
    for key in sources:
        src = SOURCES[key]
        tgz = fetch(src, cache_dir)
        n_found = 0
        for item, pixels in iter_items(src, tgz, names):
            n_found += 1
            if item.skin_tone and not include_skin_tones:
                excluded["skin-tone variant (include_skin_tones=False)"] += 1
                continue
            if float(pixels[..., 3].max()) == 0:
                excluded["fully transparent image"] += 1
                continue
            reason = optout.matches(item)
            if reason:
                opted_out.append({"source": key, "codepoint": item.codepoint, "name": item.name, "reason": reason})
                continue
            items.append(item)
            images.append(pixels)
        no_name = _count_images(src, tgz) - n_found
        if no_name:
            excluded[f"{key}: image with no entry in emoji.json (no caption possible)"] += no_name
    if not items:
        raise StrataError("the build produced no items; check the sources and the opt-out list")

    group_sizes = Counter((it.source, it.group) for it in items)
    for it in items:
        it.weight = 1.0 / group_sizes[(it.source, it.group)]

    out_dir.mkdir(parents=True, exist_ok=True)
    _atomic_write(out_dir / "images.npz", lambda f: np.savez_compressed(f, images=np.stack(images)))
    _atomic_write(
        out_dir / "manifest.jsonl",
        lambda f: f.write("".join(json.dumps(asdict(it), ensure_ascii=False) + "\n" for it in items).encode()),
    )
    per_source = dict(Counter(it.source for it in items))
    report = BuildReport(out_dir, len(items), per_source, opted_out, dict(excluded))
    card = dataset_card(items, report, optout, sources)
    _atomic_write(out_dir / "card.md", lambda f: f.write(card.encode()))
    return report


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], object]) -> None:
    """Write via a temp file + rename so an interrupted build never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def dataset_card(items: list[Item], report: BuildReport, optout: OptOut, sources: tuple[str, ...]) -> str:
    """Markdown dataset card: counts, licenses and obligations, exclusions and opt-outs."""
    lines = [
        "# strata emoji dataset",
        "",
        f"{len(items)} images at {SIZE}×{SIZE} RGBA (straight alpha), built by `strata data build` "
        "from npm packages. Used only to train strata's built-in text-to-image model.",
        "",
        "## Sources and licenses",
        "",
        "| source | package | images | license | obligations |",
        "|---|---|---|---|---|",
    ]
    for key in sources:
        s = SOURCES[key]
        lines.append(
            f"| {key} | `{s.package}@{s.version}` | {report.per_source.get(key, 0)} | {s.license} | {s.obligations} |"
        )
    lines += ["", "Attribution notices to keep:", ""]
    lines += [f"- {SOURCES[k].attribution}" for k in sources]
    lines += [
        "",
        "Names, short names and categories come from `emoji.json` of emoji-datasource (iamcal/emoji-data, MIT).",
        "",
        "## Categories",
        "",
    ]
    for cat, n in Counter(it.category for it in items).most_common():
        lines.append(f"- {cat or '(none)'}: {n}")
    lines += [
        "",
        "## Excluded and why",
        "",
        "- `emoji-datasource-apple` and `emoji-datasource-facebook`: not openly licensed; never fetched.",
        "- OpenMoji: CC-BY-SA-4.0 share-alike would bind the model weights; not used.",
    ]
    lines += [f"- {reason}: {n}" for reason, n in sorted(report.excluded.items())]
    lines += ["", "## Opt-out", ""]
    if optout.entries():
        lines.append("Opt-out list applied: " + ", ".join(f"`{e}`" for e in optout.entries()))
        lines.append(f"Removed {len(report.opted_out)} items:")
        lines += [f"- {o['source']} {o['codepoint']} ({o['name']}): {o['reason']}" for o in report.opted_out]
    else:
        lines.append("No opt-out entries. Ask for removal by codepoint, name or sha256; rebuild with `--optout FILE`.")
    lines += [
        "",
        "## Sampling",
        "",
        "Skin-tone variants share one sampling weight with their base emoji (weight = 1/group size),",
        "so people and gestures do not outweigh objects.",
        "",
    ]
    return "\n".join(lines)


def load(out_dir: Path | None = None) -> tuple[np.ndarray, list[dict]]:
    """Load a built dataset: (uint8 images (N, 64, 64, 4), manifest rows).

    Raises:
        StrataError: the dataset is missing; the message says how to build it.
    """
    out_dir = Path(out_dir) if out_dir else data_dir() / "emoji"
    npz, manifest = out_dir / "images.npz", out_dir / "manifest.jsonl"
    if not npz.is_file() or not manifest.is_file():
        raise StrataError(f"no emoji dataset in {out_dir}; run `strata data build` (or set STRATA_DATA_DIR)")
    with np.load(npz) as z:
        images = z["images"]
    rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
    if len(rows) != len(images):
        raise StrataError(f"{out_dir}: manifest has {len(rows)} rows but images.npz {len(images)}; rebuild it")
    return images, rows
