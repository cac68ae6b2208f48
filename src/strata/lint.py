"""Prompt lint: warn, before generating, about what text-to-image models are known to get wrong.

Each rule finds a pattern that diffusion models handle badly and names the workflow that works
instead, in strata's layers (generate parts → composite; inpaint; negative prompt):

=================  =====================================================  ===========================
code               what it finds                                          why it fails
=================  =====================================================  ===========================
exact-count        an exact count above 3 ("five apples", "12 birds")     models do not count
rendered-text      text to draw ("a sign reading ...", quoted words)      letters come out garbled
hands              hands, fingers, fists, waving, handshakes              anatomy of hands fails
spatial-relation   left/right placement, several relations or objects     layout is not followed
negation           "no X", "without X", "not X"                           the words put X *in*
=================  =====================================================  ===========================

Rules are regular expressions with explicit exceptions (tested against false positives such as
"a knight", "notebook", "handbag", "palm tree", "4k", "35mm", "1990s").
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

__all__ = ["LintWarning", "RULES", "lint_prompt"]


@dataclass(frozen=True)
class LintWarning:
    """One problem found in a prompt.

    Attributes:
        code: the rule ("exact-count", "rendered-text", "hands", "spatial-relation", "negation").
        span: the words that triggered it.
        start, end: their character offsets in the prompt.
        message: what goes wrong.
        suggestion: the workflow that works instead.
    """

    code: str
    span: str
    start: int
    end: int
    message: str
    suggestion: str

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


_NUMBER_WORDS = {
    "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12,
    "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "hundred": 100, "dozen": 12,
}
# What may follow a number without it being a count of things: units, sizes, ages, times.
_UNITS = (r"(?:mm|cm|m|km|k|px|p|fps|mp|megapixels?|percent|%|degrees?|°|x|inch(?:es)?|in|ft|feet|foot|meters?|"
          r"metres?|kg|g|lbs?|am|pm|o'clock|th|st|nd|rd|s|years?[- ]old|year|years|yo|hours?|minutes?|seconds?|"
          r"times|stars?[- ]rated|bit|bits|am\b|pm\b)")
_COUNT = re.compile(
    r"\b(?P<num>\d+|(?:" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b)(?P<after>(?:[-–][a-z]+)?)\s*(?P<next>[a-z%°'][\w'-]*)?",
    re.IGNORECASE,
)
_TEXT_CUES = re.compile(
    r"\b(?:(?:that|which|it)\s+(?:says|reads|read|spells?)|saying|spelling(?:\s+out)?|"
    r"(?:sign|banner|poster|label|plaque|shirt|t-shirt|billboard|card|cover|headline|placard|sticker|tattoo|"
    r"logo|graffiti|note|menu|title)\s+(?:reading|that\s+reads|with\s+the\s+(?:text|words?))|"
    r"with\s+the\s+(?:text|words?|caption|slogan|title|letters?|inscription)|"
    r"(?:the\s+)?words?\s*[:\"“']|text\s*:|lettering|inscription|typography|written\s+(?:on|in|across)|"
    r"caption(?:ed)?\s*[:\"“])",
    re.IGNORECASE,
)
_QUOTED = re.compile(r"\"[^\"]{1,80}\"|“[^”]{1,80}”|(?<![\w])'[^']{2,80}'(?![\w])")
_HANDS = re.compile(
    r"\b(?:hands?(?![-\s](?:drawn|painted|made|crafted|lettered|written|tinted|colou?red|knit|sewn|stitched|"
    r"carved|picked|held\b))|fingers?|fingertips?|fists?|knuckles?|thumbs?(?:[- ]up)?|"
    r"palms?(?![-\s](?:trees?|leaf|leaves|fronds?|oil|beach|springs|sunday|reading))|"
    r"handshake|shaking\s+hands|holding\s+hands|waving|clapping|pointing(?:\s+at)?|sign\s+language|"
    r"manicure|gloved?\s+hands?)\b",
    re.IGNORECASE,
)
_LEFT_RIGHT = re.compile(r"\b(?:to\s+the\s+)?(?:left|right)\s+of\b|\bon\s+the\s+(?:left|right)\b|"
                         r"\b(?:left|right)(?:-hand)?\s+side\b", re.IGNORECASE)
_RELATION = re.compile(
    r"\b(?:behind|in\s+front\s+of|on\s+top\s+of|atop|above|below|under(?:neath)?|beneath|next\s+to|beside|"
    r"between|inside|on\s+(?:the\s+)?(?:left|right)|(?:to\s+the\s+)?(?:left|right)\s+of|stacked\s+on|"
    r"leaning\s+(?:on|against))\b",
    re.IGNORECASE,
)
_OBJECT = re.compile(r"\b(?:a|an|the|two|three|one|some|his|her|their|its)\s+(?:[a-z-]+\s+){0,2}?[a-z-]+", re.IGNORECASE)
_NEGATION = re.compile(
    r"\b(?P<neg>no|without|not|never|nor|none\s+of|free\s+of|devoid\s+of|lacking|don'?t\s+(?:show|include|add|draw)|"
    r"do\s+not\s+(?:show|include|add|draw)|avoid|exclude)\s+(?P<what>(?:any\s+|the\s+|a\s+|an\s+)?[a-z][\w-]*)",
    re.IGNORECASE,
)
# "no" and "not" in idioms that negate nothing visible
_NEGATION_IDIOMS = re.compile(r"\b(?:no\s+(?:one|longer|doubt|matter|way)|not\s+only|nothing\s+but)\b", re.IGNORECASE)


def _count_rule(prompt: str) -> Iterator[LintWarning]:
    for m in _COUNT.finditer(prompt):
        raw = m.group("num").lower()
        n = int(raw) if raw.isdigit() else _NUMBER_WORDS[raw]
        nxt = (m.group("next") or "").lower()
        if n <= 3 or m.group("after") or not nxt:  # "five-pointed", "4-door", a trailing number
            continue
        if raw.isdigit() and (len(raw) == 4 and 1000 <= n <= 2100):  # a year
            continue
        if re.fullmatch(_UNITS, nxt, re.IGNORECASE) or re.match(r"(?:years?[- ]old|year-old)", prompt[m.end("num"):].strip(), re.I):
            continue
        if raw == "dozen" and not re.search(r"\ba\s+$", prompt[: m.start()], re.I):
            continue  # "dozens of" is not exact
        if prompt[m.start("num") - 1: m.start("num")] in (":", "/", ".", "#"):  # 5:30, f/1.8, No.5
            continue
        yield LintWarning(
            "exact-count", prompt[m.start(): m.end()].strip(), m.start(), m.end(),
            f"an exact count of {n}: text-to-image models do not count, and rarely draw exactly {n} of anything",
            "generate one (or a few) of the object per image, then place the copies in the composite layer "
            "(composite.layers); or generate a batch and select the image with the right count",
        )


def _text_rule(prompt: str) -> Iterator[LintWarning]:
    spans = [(m.start(), m.end()) for m in _TEXT_CUES.finditer(prompt)]
    spans += [(m.start(), m.end()) for m in _QUOTED.finditer(prompt)]
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):  # 'a sign reading "OPEN"' is one piece of text, not two
        if merged and start <= merged[-1][1] + 2:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    for start, end in merged:
        yield LintWarning(
            "rendered-text", prompt[start:end].strip(), start, end,
            "text to be drawn in the image: diffusion models garble letters and spelling",
            "generate the image without the text (describe the blank sign, shirt or poster), then add the words "
            "with composite.text in the composite layer, where font, size and spelling are exact",
        )


def _hands_rule(prompt: str) -> Iterator[LintWarning]:
    found = list(_HANDS.finditer(prompt))
    if found:  # one warning, however many hand words
        m = found[0]
        words = ", ".join(dict.fromkeys(f.group(0).lower() for f in found))
        yield LintWarning(
            "hands", m.group(0), m.start(), m.end(),
            f"hands ({words}): hands and fingers are a known weak spot; extra, missing or fused fingers are common",
            "frame the subject so hands are hidden or simple (in pockets, out of frame), generate a batch and select "
            "the best, then repair the hands with inpainting (mask the hand, inpaint at strength 0.5-0.8)",
        )


def _spatial_rule(prompt: str) -> Iterator[LintWarning]:
    relations = list(_RELATION.finditer(prompt))
    left_right = list(_LEFT_RIGHT.finditer(prompt))
    objects = len(_OBJECT.findall(prompt))
    if not left_right and not (len(relations) >= 2 or (relations and objects >= 3)):
        return
    first = (left_right or relations)[0]
    why = ("left/right placement" if left_right else
           f"{len(relations)} spatial relations" if len(relations) >= 2 else f"a spatial relation between {objects} objects")
    yield LintWarning(
        "spatial-relation", first.group(0), first.start(), first.end(),
        f"{why}: models follow layout words loosely and often swap, merge or drop the objects",
        "generate each object on its own (one subject per prompt) and arrange them in the composite layer "
        "(composite.layers with positions and scale); or generate the scene and fix one region at a time with inpainting",
    )


def _negation_rule(prompt: str) -> Iterator[LintWarning]:
    idioms = [(m.start(), m.end()) for m in _NEGATION_IDIOMS.finditer(prompt)]
    for m in _NEGATION.finditer(prompt):
        if any(s <= m.start() < e for s, e in idioms):
            continue
        what = re.sub(r"^(?:any|the|a|an)\s+", "", m.group("what"), flags=re.I)
        yield LintWarning(
            "negation", m.group(0), m.start(), m.end(),
            f"'{m.group(0)}': prompts are read word by word, so naming '{what}' tends to put {what} *into* the image",
            f"leave '{what}' out of the prompt and put it in the negative prompt (negative: \"{what}\"); "
            "if it still appears, mask it and inpaint it away",
        )


RULES: dict[str, Callable[[str], Iterator[LintWarning]]] = {
    "exact-count": _count_rule,
    "rendered-text": _text_rule,
    "hands": _hands_rule,
    "spatial-relation": _spatial_rule,
    "negation": _negation_rule,
}


def lint_prompt(prompt: str) -> list[LintWarning]:
    """Warnings for a text-to-image prompt, in the order they appear in it.

    A pure function: no model, no I/O. An empty list means no known failure mode was found,
    not that the prompt will work.

    Args:
        prompt: the prompt text (any length; case does not matter).
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be a string, got {type(prompt).__name__}")
    found = [w for rule in RULES.values() for w in rule(prompt)]
    return sorted(found, key=lambda w: (w.start, w.code))
