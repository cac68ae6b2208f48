"""Emoji dataset builder and captions, on tiny fake npm tarballs (no network)."""

from __future__ import annotations

import hashlib
import io
import json
import random
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from strata.errors import MediaError, StrataError
from strata.train import data_emoji
from strata.train.captions import STYLE_SYNONYMS, caption_for, make_caption
from strata.train.data_emoji import SOURCES, OptOut, Source

TABLE = [
    {"name": "RED APPLE", "unified": "1F34E", "image": "1f34e.png", "short_name": "apple",
     "short_names": ["apple"], "category": "Food & Drink", "subcategory": "food-fruit"},
    {"name": "WAVING HAND SIGN", "unified": "1F44B", "image": "1f44b.png", "short_name": "wave",
     "short_names": ["wave"], "category": "People & Body", "subcategory": "hand-fingers-open",
     "skin_variations": {"1F3FB": {"unified": "1F44B-1F3FB", "image": "1f44b-1f3fb.png"}}},
    {"name": "PILE OF POO", "unified": "1F4A9", "image": "1f4a9.png", "short_name": "poop",
     "short_names": ["hankey", "poop"], "category": "Smileys & Emotion", "subcategory": "face-costume"},
]


def _png(color: tuple[int, int, int, int], size: tuple[int, int] = (64, 64), fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    PILImage.new("RGBA", size, color).save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buf.getvalue()


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture()
def fake_fetch(tmp_path: Path):
    """A fetch() that returns small tarballs shaped like the real packages."""
    table = json.dumps(TABLE).encode()
    stems = ["1f34e", "1f44b", "1f44b-1f3fb", "1f4a9"]
    balls = {
        "noto": {"package/emoji.json": table,
                 **{f"package/img/google/64/{s}.png": _png((200, 20, 20, 255)) for s in stems}},
        "twemoji": {"package/emoji.json": table,
                    **{f"package/img/twitter/64/{s}.png": _png((20, 200, 20, 255)) for s in stems},
                    "package/img/twitter/64/ffff.png": _png((1, 2, 3, 255))},  # no name → excluded
        "fluent3d": {f"package/assets/{s}.webp": _png((20, 20, 200, 255), (256, 264), "WEBP") for s in stems[:2]},
    }

    def fetch(source: Source, cache_dir: Path) -> Path:
        return _tarball(tmp_path / f"{source.key}.tgz", balls[source.key])

    return fetch


def test_build_writes_manifest_images_and_card(tmp_path: Path, fake_fetch) -> None:
    out = tmp_path / "emoji"
    report = data_emoji.build(out_dir=out, fetch=fake_fetch, cache_dir=tmp_path)
    assert report.per_source == {"noto": 4, "twemoji": 4, "fluent3d": 2}
    images, rows = data_emoji.load(out)
    assert images.shape == (10, 64, 64, 4) and images.dtype == np.uint8
    for img, row in zip(images, rows):
        assert row["sha256"] == hashlib.sha256(img.tobytes()).hexdigest()
        assert row["license"] == SOURCES[row["source"]].license and row["version"]
    wave = [r for r in rows if r["source"] == "noto" and r["group"] == "1f44b"]
    assert sorted(r["skin_tone"] or "" for r in wave) == ["", "light skin tone"]
    assert all(r["weight"] == 0.5 for r in wave)  # two variants share one item's weight
    card = (out / "card.md").read_text()
    for needed in ("Apache-2.0", "CC-BY-4.0", "MIT", "emoji-datasource-apple", "no entry in emoji.json"):
        assert needed in card
    # fluent's 256 wide × 264 tall image is padded left and right to a square then box-filtered to 64×64
    fluent = images[[i for i, r in enumerate(rows) if r["source"] == "fluent3d"][0]]
    assert fluent[32, 0, 3] < 255 and fluent[32, 32].tolist() == [20, 20, 200, 255]


def test_optout_by_codepoint_name_and_hash_is_recorded(tmp_path: Path, fake_fetch) -> None:
    apple_hash = hashlib.sha256(np.full((64, 64, 4), [20, 200, 20, 255], np.uint8).tobytes()).hexdigest()
    optfile = tmp_path / "optout.txt"
    optfile.write_text(f"# removals\ncodepoint:1f4a9\nname:wave\n{apple_hash}\n")
    optout = OptOut.load(optfile)
    report = data_emoji.build(out_dir=tmp_path / "e", fetch=fake_fetch, cache_dir=tmp_path, optout=optout)
    _, rows = data_emoji.load(tmp_path / "e")
    assert not any(r["group"] in ("1f4a9", "1f44b") for r in rows)  # skin variants go with their base
    assert not any(r["sha256"] == apple_hash for r in rows)  # twemoji's green apple image
    assert len(report.opted_out) == 10 - len(rows)
    card = (tmp_path / "e" / "card.md").read_text()
    assert "codepoint:1f4a9" in card and "name:wave" in card and f"sha256:{apple_hash}" in card


def test_optout_rejects_unknown_kind_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StrataError, match="unknown kind 'colour'"):
        OptOut().add("colour:red")
    with pytest.raises(StrataError, match="does not exist"):
        OptOut.load(tmp_path / "nope.txt")
    o = OptOut()
    for e in ("1f600", "grinning face", "a" * 64):
        o.add(e)
    assert o.entries() == ["codepoint:1f600", "name:grinning face", "sha256:" + "a" * 64]


def test_forbidden_and_unknown_sources_are_refused(tmp_path: Path, fake_fetch) -> None:
    apple = Source("apple", "emoji-datasource-apple", "16.0.0", "proprietary", "", "", "package/img", ())
    with pytest.raises(StrataError, match="not openly licensed"):
        data_emoji.fetch_package(apple, tmp_path)
    with pytest.raises(StrataError, match="unknown emoji source"):
        data_emoji.build(out_dir=tmp_path, sources=("apple",), fetch=fake_fetch)


def test_decode_keeps_transparent_color_out_of_edges() -> None:
    # left half opaque blue, right half transparent *red*: the red must not bleed into the average
    a = np.zeros((128, 128, 4), np.uint8)
    a[:, :64] = [0, 0, 255, 255]
    a[:, 64:] = [255, 0, 0, 0]
    buf = io.BytesIO()
    PILImage.fromarray(a, "RGBA").save(buf, format="PNG")
    out = data_emoji._decode_rgba(buf.getvalue(), "test")
    assert out.shape == (64, 64, 4)
    assert out[:, :32, 0].max() == 0 and out[:, 32:, 3].max() == 0
    with pytest.raises(MediaError, match="cannot decode"):
        data_emoji._decode_rgba(b"not an image", "broken.png")


def test_load_explains_how_to_build(tmp_path: Path) -> None:
    with pytest.raises(StrataError, match="strata data build"):
        data_emoji.load(tmp_path)


ROW = {"name": "red apple", "short_names": ["apple"], "category": "Food & Drink", "subcategory": "food-fruit",
       "skin_tone": None, "source": "fluent3d", "style": ["3d", "glossy", "fluent"]}


def test_captions_are_deterministic_and_mix_fields() -> None:
    caps = {caption_for(ROW, seed=0, index=7, variant=v) for v in range(200)}
    assert caption_for(ROW, seed=0, index=7, variant=3) == caption_for(ROW, seed=0, index=7, variant=3)
    assert "red apple" in caps and "apple" in caps  # bare names teach one-word prompts
    assert any("glossy" in c or "shiny" in c for c in caps) and any("3d" in c for c in caps)
    assert any("food and drink" in c or "food fruit" in c for c in caps)
    assert any(c.startswith("a red apple") for c in caps)
    assert all(c == c.lower() for c in caps)


def test_caption_style_words_follow_source_and_articles() -> None:
    rng = random.Random(0)
    flat = {make_caption({**ROW, "source": "twemoji", "style": []}, rng) for _ in range(300)}
    styles = set(STYLE_SYNONYMS["twemoji"])
    assert any(any(s in c for s in styles) for c in flat)
    assert not any("glossy" in c for c in flat)
    owl = {make_caption({**ROW, "name": "owl", "short_names": ["owl"]}, rng) for _ in range(300)}
    assert "an owl" in owl or any(c.startswith("an owl") for c in owl)
    toned = make_caption({**ROW, "skin_tone": "dark skin tone"}, random.Random(1))
    assert "dark skin tone" in toned or "apple" in toned  # short-name templates may omit the tone
