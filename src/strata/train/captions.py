"""Captions that teach the text-to-image model language, not just labels.

Each training image has fields (name, short names, category, subcategory, skin tone, style
words). A caption is drawn by a random template that mixes them, so the model sees "apple",
"a red apple", "a glossy red apple, 3d", "red apple emoji, food and drink" for the same kind of
image and learns which words carry what. Randomness comes only from the generator passed in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

# Extra words that describe each source's look; a caption uses at most one or two of them.
STYLE_SYNONYMS: dict[str, tuple[str, ...]] = {
    "noto": ("emoji", "cartoon", "cute", "noto style", "rounded"),
    "twemoji": ("flat", "vector", "simple", "flat icon", "twemoji style"),
    "fluent3d": ("3d", "glossy", "shiny", "3d render", "clay"),
}

# {name} is the full name, {short} a short name, {style} a style word, {topic} the category or
# subcategory in words. Plain names appear often so a one-word prompt works on its own.
TEMPLATES: tuple[str, ...] = (
    "{name}",
    "{name}",
    "{short}",
    "{a_name}",
    "{name}, {style}",
    "{a_name}, {style}",
    "{a_style} {name}",
    "{name} emoji",
    "{name}, {style} emoji",
    "{a_name}, {topic}",
    "{style} {name} icon",
    "{a_style} {name}, {topic}",
    "{name} ({topic})",
    "an emoji of {a_name}",
    "{name}, {style}, {style2}",
    "{a_style} {name}, {style2}",
)


def _article(phrase: str) -> str:
    """'a apple' → 'an apple'; skips phrases that already start with an article or number."""
    first = phrase.split(" ", 1)[0].lower()
    if first in {"a", "an", "the"} or first[:1].isdigit() or first.endswith("s") and first != "bus":
        return phrase
    return ("an " if first[:1] in "aeiou" else "a ") + phrase


def _words(text: str) -> str:
    """'Food & Drink' → 'food and drink'; 'animal-mammal' → 'animal mammal'."""
    return text.replace("&", "and").replace("-", " ").replace("_", " ").strip().lower()


def style_words(source: str, base: Sequence[str] = ()) -> tuple[str, ...]:
    """All style words for ``source``: its manifest words plus the synonyms above."""
    return tuple(dict.fromkeys([*base, *STYLE_SYNONYMS.get(source, ())]))


def make_caption(fields: Mapping[str, object], rng: random.Random) -> str:
    """Draw one caption for a manifest row.

    Args:
        fields: a manifest row with ``name``, ``short_names``, ``category``, ``subcategory``,
            ``skin_tone`` (or None), ``source`` and ``style``.
        rng: the only source of randomness (seed it for reproducible captions).

    Returns:
        A lower-case caption such as "a glossy red apple, food and drink".
    """
    name = str(fields["name"]).lower()
    if fields.get("skin_tone"):
        name = f"{name}, {fields['skin_tone']}"
    shorts = [str(s).lower() for s in fields.get("short_names") or []] or [name]  # type: ignore[union-attr]
    styles = style_words(str(fields.get("source", "")), list(fields.get("style") or []))  # type: ignore[arg-type]
    topics = [t for t in (_words(str(fields.get("category", ""))), _words(str(fields.get("subcategory", "")))) if t]
    style = rng.choice(styles) if styles else "emoji"
    style2 = rng.choice([s for s in styles if s != style] or [style])
    template = rng.choice(TEMPLATES)
    return template.format(
        name=name,
        a_name=_article(name),
        short=rng.choice(shorts),
        style=style,
        style2=style2,
        a_style=_article(style),
        topic=rng.choice(topics) if topics else "emoji",
    )


def caption_for(fields: Mapping[str, object], *, seed: int, index: int, variant: int) -> str:
    """The ``variant``-th caption of item ``index`` under ``seed`` (pure: same args → same text).

    Training draws a variant per sample; deriving each caption from (seed, index, variant)
    lets the trainer cache text encodings and still resume bit-for-bit.
    """
    return make_caption(fields, random.Random(f"{seed}:{index}:{variant}"))
