"""Timed text: word timings (what a voice said when) and subtitle cues, with SRT/WebVTT text.

``Words`` comes out of ``sound.speech``; ``Subtitles`` groups words into readable cues and
is what files (.srt, .vtt) and caption burn-in use. Both are immutable tuples of frozen
records; the store codec is canonical JSON (times rounded to 0.1 ms, far below a frame).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from strata.errors import MediaError
from strata.media.codec import register_codec


@dataclass(frozen=True)
class TimedText:
    """One word or cue: ``text`` shown/spoken from ``start_s`` to ``end_s``."""

    text: str
    start_s: float
    end_s: float

    def __post_init__(self) -> None:
        if not (0 <= self.start_s <= self.end_s):
            raise MediaError(f"timed text {self.text!r}: need 0 ≤ start ≤ end, got {self.start_s}–{self.end_s} s")
        object.__setattr__(self, "start_s", round(float(self.start_s), 4))
        object.__setattr__(self, "end_s", round(float(self.end_s), 4))


@dataclass(frozen=True)
class Words:
    """Word timings of one narration, in order."""

    items: tuple[TimedText, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "items", tuple(self.items))

    @property
    def end_s(self) -> float:
        return self.items[-1].end_s if self.items else 0.0

    def shifted(self, offset_s: float) -> "Words":
        return Words(tuple(TimedText(w.text, w.start_s + offset_s, w.end_s + offset_s) for w in self.items))

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True)
class Subtitles:
    """Subtitle cues, in order, not overlapping."""

    cues: tuple[TimedText, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "cues", tuple(self.cues))

    def at(self, t_s: float) -> TimedText | None:
        """The cue showing at time ``t_s``, if any."""
        for c in self.cues:
            if c.start_s <= t_s < c.end_s:
                return c
        return None

    def to_srt(self) -> str:
        """SubRip text: numbered cues, ``HH:MM:SS,mmm --> HH:MM:SS,mmm``."""
        blocks = [f"{i}\n{_clock(c.start_s, ',')} --> {_clock(c.end_s, ',')}\n{c.text}\n"
                  for i, c in enumerate(self.cues, 1)]
        return "\n".join(blocks)

    def to_vtt(self) -> str:
        """WebVTT text (W3C): a ``WEBVTT`` header, then ``HH:MM:SS.mmm --> HH:MM:SS.mmm`` cues."""
        blocks = [f"{_clock(c.start_s, '.')} --> {_clock(c.end_s, '.')}\n{c.text}\n" for c in self.cues]
        return "WEBVTT\n\n" + "\n".join(blocks)


def _clock(t_s: float, sep: str) -> str:
    ms = int(round(t_s * 1000))
    h, rem = divmod(ms, 3_600_000)
    m, rem = divmod(rem, 60_000)
    s, ms = divmod(rem, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def parse_srt_or_vtt(text: str) -> Subtitles:
    """Cues from SRT or WebVTT text (timings and text only; styling is ignored)."""
    import re

    pattern = re.compile(r"(\d+):(\d\d):(\d\d)[,.](\d{3})\s*-->\s*(\d+):(\d\d):(\d\d)[,.](\d{3})[^\n]*\n(.*?)(?:\n\s*\n|\Z)",
                         re.S)
    cues = []
    for m in pattern.finditer(text.replace("\r\n", "\n")):
        g = [int(x) for x in m.groups()[:8]]
        start = g[0] * 3600 + g[1] * 60 + g[2] + g[3] / 1000
        end = g[4] * 3600 + g[5] * 60 + g[6] + g[7] / 1000
        cues.append(TimedText(m.group(9).strip(), start, end))
    return Subtitles(tuple(cues))


# ---------------------------------------------------------------- store codecs


def _dump(kind: str, items: tuple[TimedText, ...]) -> bytes:
    rows = [[t.text, t.start_s, t.end_s] for t in items]
    return json.dumps({kind: rows}, ensure_ascii=False, separators=(",", ":")).encode()


def _load(kind: str, data: bytes) -> tuple[TimedText, ...]:
    try:
        rows = json.loads(data)[kind]
        return tuple(TimedText(str(r[0]), float(r[1]), float(r[2])) for r in rows)
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise MediaError(f"stored {kind} are malformed ({e})") from e


register_codec("words", Words, lambda w: _dump("words", w.items), lambda d: Words(_load("words", d)))
register_codec("subtitles", Subtitles, lambda s: _dump("cues", s.cues), lambda d: Subtitles(_load("cues", d)))

__all__ = ["Subtitles", "TimedText", "Words", "parse_srt_or_vtt"]
